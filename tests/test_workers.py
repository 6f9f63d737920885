"""Synapse's worker layout (`hotline init --workers N`, docs/scaling.md): the generated files, the
proxy's routes to each process (real nginx and Caddy in front of recording upstreams), and the
whole chat path on the layout itself: PostgreSQL, a throwaway Redis, the main process, the event
persister and two generic workers, nginx as the entrance, the bot, and two gateways behind nginx
with the generated proxy's routes (`--gateways 2`; tests/test_gateways.py has their files and
routes): each chat pinned to the gateway that started it."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from hotline import proxy
from hotline.admin import CheckResult, check_homeserver_config
from hotline.devstack import DevStack, free_port
from hotline.homeserver import EVENT_PERSISTER, privacy_settings
from hotline.production import MAX_WORKERS, InitOptions, init
from hotline.throwaway import LoopbackEntrance, LoopbackFront
from tests.conftest import GRACE_SECONDS, running
from testkit.clients import Survivor, assert_erased, claim_new_chat, login, open_chat, remember, until

WORKERS = ("generic_worker1", "generic_worker2")


def make(tmp_path: Path, target: str, workers: int = 2) -> Path:
    directory = tmp_path / target
    init(InitOptions("chat.example.org", directory, target=target, state_dir=tmp_path / "state", workers=workers))
    return directory


# --------------------------------------------------------------------------- the generated files

@pytest.mark.parametrize("target", ["systemd", "compose"])
def test_init_with_workers_writes_synapse_s_worker_layout(tmp_path, target):
    directory = make(tmp_path, target)
    config = yaml.safe_load((directory / "synapse/homeserver.yaml").read_text())
    secrets = yaml.safe_load((directory / "secrets.yaml").read_text())
    for key, value in privacy_settings().items():  # every process reads this file
        assert config[key] == value, key
    client, replication = config["listeners"]
    assert [r["names"] for r in client["resources"]] == [["client"]] and client["port"] == 8100
    assert [r["names"] for r in replication["resources"]] == [["replication"]]
    main_host = "127.0.0.1" if target == "systemd" else "synapse"
    assert config["instance_map"]["main"] == {"host": main_host, "port": replication["port"]}
    assert set(config["instance_map"]) == {"main", EVENT_PERSISTER}
    assert config["stream_writers"] == {"events": [EVENT_PERSISTER]}
    assert config["redis"]["enabled"] is True and config["redis"]["password"] == secrets["redis_password"]
    assert config["worker_replication_secret"] == secrets["worker_replication_secret"]
    assert config["database"]["name"] == "psycopg2"  # Synapse's workers need PostgreSQL
    workers = {path.stem: yaml.safe_load(path.read_text()) for path in (directory / "synapse/workers").glob("*.yaml")}
    assert set(workers) == {EVENT_PERSISTER, *WORKERS}
    persister = workers[EVENT_PERSISTER]
    assert persister["worker_app"] == "synapse.app.generic_worker" and persister["worker_name"] == EVENT_PERSISTER
    assert [r["names"] for r in persister["worker_listeners"][0]["resources"]] == [["replication"]]
    assert persister["worker_listeners"][0]["port"] == config["instance_map"][EVENT_PERSISTER]["port"]
    for name in WORKERS:
        listeners = workers[name]["worker_listeners"]
        assert [r["names"] for l in listeners for r in l["resources"]] == [["client"]]  # no federation
        assert workers[name]["worker_log_config"] == config["log_config"]  # no access log either
    redis = (directory / "redis/redis.conf").read_text()
    assert f"requirepass {secrets['redis_password']}" in redis and 'save ""' in redis and "appendonly no" in redis
    assert (directory / "redis/redis.conf").stat().st_mode & 0o077 == 0
    # The bot and the gateway reach the processes through the proxy's entrance.
    entrance = "http://127.0.0.1:8008" if target == "systemd" else "http://caddy:8008"
    for name in ("bot.env", "webchat.env"):
        assert f"HOTLINE_HOMESERVER_URL={entrance}" in (directory / name).read_text()
    good = CheckResult()
    check_homeserver_config(directory / "synapse/homeserver.yaml", good)
    assert not good.failed, good.lines


def test_check_refuses_a_replication_listener_without_the_shared_secret(tmp_path):
    directory = make(tmp_path, "systemd")
    path = directory / "synapse/homeserver.yaml"
    config = yaml.safe_load(path.read_text())
    del config["worker_replication_secret"]
    path.write_text(yaml.safe_dump(config))
    bad = CheckResult()
    check_homeserver_config(path, bad)
    assert any("replication" in text for kind, text in bad.lines if kind == "FAIL")


def test_check_refuses_a_worker_with_federation_or_its_own_log_config(tmp_path):
    directory = make(tmp_path, "systemd")
    path = directory / "synapse/workers/generic_worker1.yaml"
    worker = yaml.safe_load(path.read_text())
    worker["worker_listeners"][0]["resources"][0]["names"].append("federation")
    worker["worker_log_config"] = str(tmp_path / "chatty-log.yaml")
    path.write_text(yaml.safe_dump(worker))
    bad = CheckResult()
    check_homeserver_config(directory / "synapse/homeserver.yaml", bad)
    failures = "\n".join(text for kind, text in bad.lines if kind == "FAIL")
    assert "generic_worker1.yaml: listener on port 8101 serves ['client', 'federation']" in failures
    assert "generic_worker1.yaml: worker_log_config must be" in failures
    assert "generic_worker2.yaml" not in failures


def test_workers_count_is_bounded(tmp_path):
    make(tmp_path / "at", "systemd", workers=MAX_WORKERS)
    assert len(list((tmp_path / "at/systemd/synapse/workers").glob("generic_worker*.yaml"))) == MAX_WORKERS
    result = subprocess.run([sys.executable, "-m", "hotline", "init", "chat.example.org", "--dir", str(tmp_path / "past"),
                             "--workers", str(MAX_WORKERS + 1)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and result.stderr.startswith("hotline init: --workers")
    assert not (tmp_path / "past").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_worker_units_verify(tmp_path):
    directory = make(tmp_path, "systemd")
    units = directory / "systemd"
    template = (units / "hotline-synapse-worker@.service").read_text()
    assert "--config-path" in template and "synapse/workers/%i.yaml" in template and "PartOf=hotline-synapse.service" in template
    # systemd-analyze verifies an instance of the template.
    check = tmp_path / "check"
    check.mkdir()
    for unit in units.glob("*.service"):
        shutil.copy(unit, check / unit.name)
    shutil.copy(units / "hotline-synapse-worker@.service", check / "hotline-synapse-worker@generic_worker1.service")
    result = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, check.glob("*@?*.service"))),
                             str(check / "hotline-redis.service"), str(check / "hotline-synapse.service")],
                            capture_output=True, text=True, timeout=60)
    assert "hotline-" not in result.stderr, result.stderr
    redis = (units / "hotline-redis.service").read_text()
    assert "User=hotline-synapse" in redis and "RuntimeDirectory=hotline-redis" in redis
    steps = (directory / "NEXT-STEPS.md").read_text()
    for piece in ("apt-get install -y postgresql nginx certbot redis-server", "systemctl enable --now hotline-redis",
                  "hotline-synapse-worker@event_persister1 hotline-synapse-worker@generic_worker1 "
                  "hotline-synapse-worker@generic_worker2", "hotline-internal.conf"):
        assert piece in steps, piece
    # The entrance comes before `hotline admin setup`, which uses it.
    assert steps.index("hotline-internal.conf") < steps.index(" setup\n")


def test_compose_workers_file_mounts_only_what_each_needs(tmp_path):
    directory = make(tmp_path, "compose")
    services = yaml.safe_load((directory / "compose.workers.yml").read_text())["services"]
    assert set(services) == {"redis", "synapse", "synapse-event-persister1", "synapse-generic-worker1",
                             "synapse-generic-worker2"}
    assert services["redis"]["volumes"] == ["${HOTLINE_CONFIG:-/etc/hotline}/redis/redis.conf:/etc/hotline/redis/redis.conf:ro"]
    assert services["redis"]["read_only"] is True and not any(s.get("ports") for s in services.values())
    config = yaml.safe_load((directory / "synapse/homeserver.yaml").read_text())
    for name in ("event_persister1", "generic_worker1"):
        service = services["synapse-" + name.replace("_", "-")]
        assert service["entrypoint"][-1] == f"/etc/hotline/synapse/workers/{name}.yaml"
        assert config["instance_map"].get(name, {"host": "synapse-" + name.replace("_", "-")})["host"] == \
            "synapse-" + name.replace("_", "-")
        assert not any("redis.conf" in v or v.startswith("${HOTLINE_CONFIG:-/etc/hotline}:") for v in service["volumes"])
    steps = (directory / "NEXT-STEPS.md").read_text()
    assert f"-f {directory.resolve()}/compose.workers.yml" in steps


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")
def test_caddyfile_with_workers_validates(tmp_path):
    directory = make(tmp_path, "compose")
    from tests.test_production_init import caddy_validate

    result = caddy_validate(directory)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None, reason="nginx not installed")
def test_nginx_configs_with_workers_pass_nginx_t(tmp_path):
    from tests.test_production_init import nginx_wrapper, self_signed

    cert, key = self_signed(tmp_path, "chat.example.org")
    public = proxy.nginx_site("chat.example.org", "127.0.0.1:8100", "127.0.0.1:8080", certificate=str(cert), key=str(key),
                              http_port=18080, https_port=18443, workers=("127.0.0.1:8101", "127.0.0.1:8102"))
    internal = proxy.nginx_internal_site("127.0.0.1:8100", ("127.0.0.1:8101", "127.0.0.1:8102"), listen="127.0.0.1:18008")
    assert public.count("access_log off;") == 2 and internal.count("access_log off;") == 1
    site = (public + internal).replace("/var/log/nginx/hotline-error.log", str(tmp_path / "nginx/error.log"))
    conf = nginx_wrapper(tmp_path, site)  # both in one nginx, as on the host: no name clashes
    result = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path / "nginx")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- the routes

# (method, path, where it must go). The bot's erase (hotline_runtime/synapse_admin.py: room delete
# with purge, its status, deactivate) and everything else that writes go to the main process.
ROUTES = [
    ("GET", "/_matrix/client/v3/sync?since=s1&timeout=30000", "worker"),
    ("GET", "/_matrix/client/r0/sync", "worker"),
    ("GET", "/_matrix/client/v3/events", "worker"),
    ("GET", "/_matrix/client/v3/rooms/!a%3Ahs/initialSync", "worker"),
    ("POST", "/_matrix/client/v3/keys/query", "worker"),
    ("GET", "/_matrix/client/v3/keys/changes?from=a&to=b", "worker"),
    ("GET", "/_matrix/client/v3/joined_rooms", "worker"),
    ("GET", "/_matrix/client/v3/rooms/!a%3Ahs/joined_members", "worker"),
    ("GET", "/_matrix/client/v3/rooms/!a%3Ahs/members", "worker"),
    ("GET", "/_matrix/client/v3/rooms/!a%3Ahs/state", "worker"),
    ("GET", "/_matrix/client/v3/rooms/!a%3Ahs/event/$e", "worker"),
    ("GET", "/_matrix/client/v3/account/whoami", "worker"),
    ("GET", "/_matrix/client/versions", "worker"),
    ("DELETE", "/_synapse/admin/v2/rooms/!a%3Ahs", "main"),
    ("GET", "/_synapse/admin/v2/rooms/delete_status/abc", "main"),
    ("DELETE", "/_synapse/admin/v1/rooms/!a%3Ahs", "main"),
    ("POST", "/_synapse/admin/v1/deactivate/@chat_x%3Ahs", "main"),
    ("POST", "/_synapse/admin/v1/register", "main"),
    ("POST", "/_synapse/admin/v1/users/@hotline%3Ahs/override_ratelimit", "main"),
    ("POST", "/_synapse/admin/v1/purge_history/!a%3Ahs", "main"),
    ("PUT", "/_matrix/client/v3/rooms/!a%3Ahs/send/m.room.encrypted/t1", "main"),
    ("PUT", "/_matrix/client/v3/rooms/!a%3Ahs/state/m.room.encryption/", "main"),
    ("POST", "/_matrix/client/v3/createRoom", "main"),
    ("POST", "/_matrix/client/v3/join/!a%3Ahs", "main"),
    ("POST", "/_matrix/client/v3/rooms/!a%3Ahs/redact/$e/t2", "main"),
    ("GET", "/_matrix/client/v3/rooms/!a%3Ahs/messages?dir=b", "main"),  # pagination: never while purging
    ("POST", "/_matrix/client/v3/login", "main"),
    ("POST", "/_matrix/client/v3/keys/upload", "main"),
    ("PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/t3", "main"),
    ("GET", "/_matrix/media/v3/download/hs/abc", "main"),
    ("GET", "/health", "main"),
]


class Recorders:
    """One aiohttp server per Synapse process, each recording (method, path) of what it got."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.ports = {name: free_port() for name in names}
        self.seen: dict[str, list[tuple[str, str, str]]] = {name: [] for name in names}
        self.runners: list[web.AppRunner] = []

    async def __aenter__(self) -> Recorders:
        for name in self.names:
            async def record(request: web.Request, name: str = name) -> web.Response:
                self.seen[name].append((request.method, request.path_qs, request.headers.get("Authorization", "")))
                return web.json_response({"process": name})

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", record)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.ports[name]).start()
            self.runners.append(runner)
        return self

    async def __aexit__(self, *_: object) -> None:
        for runner in self.runners:
            await runner.cleanup()

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"


async def routed(http: aiohttp.ClientSession, base: str, method: str, path: str, token: str = "") -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, base + path, headers=headers, json={} if method != "GET" else None) as response:
        assert response.status == 200, (method, path, response.status)
        return (await response.json())["process"]


async def check_routes(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path, where in ROUTES:
            process = await routed(http, base, method, path, "syt_YWxpY2U_abc_def")
            assert (process == "main") == (where == "main"), f"{method} {path} went to {process}"
        # One user's /sync always goes to the same worker, whichever of their tokens (Synapse's
        # are `syt_<unpadded base64 of the localpart>_<random>_<check>`); users spread over both.
        chosen = {}
        for user in [f"chat_{i:02d}" for i in range(16)]:
            encoded = base64.b64encode(user.encode()).decode().rstrip("=")
            workers = {await routed(http, base, "GET", "/_matrix/client/v3/sync?since=s",
                                    f"syt_{encoded}_{token}_c") for token in ("aaa", "bbb", "ccc")}
            assert len(workers) == 1, (user, workers)
            chosen[user] = workers.pop()
        assert set(chosen.values()) == set(WORKERS)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
async def test_nginx_entrance_routes_sync_and_reads_to_workers_and_the_admin_api_to_main(tmp_path):
    async with Recorders(["main", *WORKERS]) as upstreams:
        entrance = LoopbackEntrance(tmp_path / "entrance", free_port(), upstreams.address("main"),
                                    tuple(upstreams.address(name) for name in WORKERS))
        await entrance.start()
        try:
            await check_routes(entrance.url)
        finally:
            entrance.stop()


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")
async def test_caddy_entrance_routes_like_nginx(tmp_path):
    async with Recorders(["main", *WORKERS]) as upstreams:
        port = free_port()
        (tmp_path / "Caddyfile").write_text("{\n\tadmin off\n\tauto_https off\n}\n" + proxy.caddy_internal_site(
            upstreams.address("main"), tuple(upstreams.address(name) for name in WORKERS), port=port))
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
               "XDG_CONFIG_HOME": str(tmp_path / "config")}
        caddy = subprocess.Popen(["caddy", "run", "--adapter", "caddyfile", "--config", str(tmp_path / "Caddyfile")],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            async with aiohttp.ClientSession() as http:
                async def up() -> bool:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/health"):
                            return True
                    except aiohttp.ClientError:
                        return False

                for _ in range(300):
                    if await up():
                        break
                    assert caddy.poll() is None, caddy.stderr.read().decode()[-2000:] if caddy.stderr else ""
                    await asyncio.sleep(0.1)
            await check_routes(f"http://127.0.0.1:{port}")
        finally:
            caddy.terminate()
            caddy.wait(timeout=20)


# --------------------------------------------------------------------------- the chat path on workers

@pytest.fixture(scope="module")
def workers_stack() -> Iterator[DevStack]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (Debian's redis-server package; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="hotline-workers-"))
    hotline = DevStack(root / "stack", workers=len(WORKERS), gateways=2,
                       settings={"reconnect_grace_seconds": str(GRACE_SECONDS)})
    yield from running(hotline)
    shutil.rmtree(root, ignore_errors=True)


async def test_whole_chat_path_on_synapse_workers(workers_stack, canaries):
    """Start, claim, relay both ways, close, erase: everyone reaches Synapse through the entrance,
    events are persisted by the event persister, and the erase leaves nothing."""
    stack = workers_stack
    assert stack.homeserver.uses_postgres and stack.homeserver.url != stack.homeserver.main_url
    canaries += ["on workers, from the page 6b1d", "on workers, from the advocate 0c7e"]
    advocate = await login(stack, stack.accounts.advocates[0])
    survivor = Survivor(stack.page_url)
    try:
        dispatch = stack.accounts.dispatch_room
        await survivor.start()
        alert = await until(lambda: [b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")], 60, "alert")
        ref = re.search(r"ref (\w{4})", alert[-1]).group(1)
        remember(stack, ref)
        await advocate.say(dispatch, f"!claim {ref}")
        case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 60, "the case room")
        await until(lambda: "An advocate has joined the chat." in survivor.texts("hotline"), 30, "joined notice")
        await survivor.say("on workers, from the page 6b1d")
        await until(lambda: "Survivor: on workers, from the page 6b1d" in advocate.bodies(case_room), 30, "relay to case")
        await advocate.say(case_room, "on workers, from the advocate 0c7e")
        await until(lambda: "on workers, from the advocate 0c7e" in survivor.texts("advocate"), 30, "relay to page")
        # The event persister wrote the chat's events (stream_writers: events), not the main process.
        survivor_room, _ = open_chat(stack, ref)
        writers = stack.homeserver.query("SELECT DISTINCT instance_name FROM events WHERE room_id IN (?, ?)",
                                         [survivor_room, case_room])
        assert writers == [(EVENT_PERSISTER,)]
        await advocate.say(case_room, "!close")
        await until(lambda: survivor.first("ended"), 30, "the ended frame")
        await assert_erased(stack, ref, case_room)
    finally:
        await survivor.close()
        await advocate.close()
    # Every one of Synapse's processes is still up.
    assert all(process.poll() is None for process in stack.synapse.all().values())
    assert set(stack.synapse.all()) == {"homeserver", EVENT_PERSISTER, *WORKERS}


async def test_two_gateways_pin_each_chat_to_the_gateway_that_started_it(workers_stack, canaries):
    """Two chats through the proxy, one on each gateway; each page reconnects and lands on its own
    gateway every time (any other would refuse it); claim, relay both ways, close, erase. A socket
    sent to the wrong gateway is refused there (``wrong_gateway``), never told the chat ended, and
    the chat carries on."""
    stack = workers_stack
    advocate = await login(stack, stack.accounts.advocates[0])
    pages = [Survivor(stack.page_url), Survivor(stack.page_url)]
    try:
        # The proxy sends new chats to each gateway in turn.
        chats = [await claim_new_chat(stack, advocate, page) for page in pages]
        assert sorted(page.gateway for page in pages) == ["g1", "g2"]
        for page in pages:
            assert page.chat.startswith(f"{page.gateway}.")
        for page, (ref, case_room) in zip(pages, chats):
            canaries.append(f"pinned to {page.gateway}, from the page")
            await until(lambda: "An advocate has joined the chat." in page.texts("hotline"), 30, "joined notice")
            for attempt in range(3):  # unpinned, the proxy's round robin would miss at least once
                await page.drop()
                await page.reconnect()
                await until(lambda: sum(f["type"] == "resumed" for f in page.frames) == attempt + 1, 20, "resumed")
            assert not page.first("ended") and not page.first("error")
            await page.say(f"pinned to {page.gateway}, from the page")
            await until(lambda: f"Survivor: pinned to {page.gateway}, from the page" in advocate.bodies(case_room),
                        30, "relay to case")
        # The wrong gateway, through the proxy: refused, the chat untouched.
        owner, (ref, case_room) = pages[0], chats[0]
        other = "g2" if owner.gateway == "g1" else "g1"
        stray = Survivor(stack.page_url)
        stray.chat, stray.secret, stray.gateway = owner.chat, owner.secret, other
        try:
            await stray.resume()
            await until(lambda: stray.first("error"), 20, "the refusal")
            assert stray.first("error")["code"] == "wrong_gateway"
            await until(lambda: stray.ws.closed, 20, "the stray socket closed")
            assert not stray.first("ended") and not stray.first("resumed")
        finally:
            await stray.close()
        assert not owner.first("displaced")
        for page, (ref, case_room) in zip(pages, chats):
            canaries.append(f"to the page on {page.gateway}")
            await advocate.say(case_room, f"to the page on {page.gateway}")
            await until(lambda: f"to the page on {page.gateway}" in page.texts("advocate"), 30, "relay to page")
            await advocate.say(case_room, "!close")
            await until(lambda: page.first("ended"), 30, "the ended frame")
        for ref, case_room in chats:
            await assert_erased(stack, ref, case_room)
    finally:
        for page in pages:
            await page.close()
        await advocate.close()


async def test_the_page_in_a_browser_reconnects_to_its_own_gateway(workers_stack):
    """The real page: after ``started`` it opens every later socket with ?gateway=NAME, so when
    the proxy restarts (every socket dropped) it is back in the same chat on its own gateway.
    Behind a proxy that sends each name to the other gateway, the page is refused there
    (``wrong_gateway``), never told its chat ended, and after three refusals says chat is not
    available, with the hotline number."""
    from playwright.async_api import expect

    from tests.test_page import assert_nothing_stored, open_browser, start_chat

    stack = workers_stack
    async with open_browser() as (page, problems):
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(stack.page_url)
        await start_chat(page)
        assert sockets == [stack.page_url.replace("http:", "ws:") + "ws"]  # a new chat: any gateway
        assert stack.front is not None
        stack.front.stop()
        await stack.front.start()
        status = page.get_by_role("status").first
        await expect(status).to_have_text("Reconnected. You are back in the same chat.", timeout=30_000)
        assert len(sockets) >= 2 and re.fullmatch(r".*/ws\?gateway=g[12]", sockets[-1]), sockets
        assert len(set(sockets[1:])) == 1  # every reconnect to the same gateway
        await page.get_by_role("button", name="End chat").click()
        await page.get_by_role("group").get_by_role("button", name="End chat").click()
        await expect(page.get_by_role("heading", name="Chat ended")).to_be_visible(timeout=20_000)
        await assert_nothing_stored(page)
        # A second chat, then a proxy that swaps the gateways' names.
        await start_chat(page)
        front = stack.front
        swapped = LoopbackFront(front.directory, front.port, tuple(
            (name, address) for (name, _), (_, address) in zip(front.gateways, reversed(front.gateways))))
        front.stop()
        await swapped.start()
        try:
            await expect(page.get_by_role("heading", name="Chat not available")).to_be_visible(timeout=40_000)
            await expect(page.get_by_role("link", name="+1 555 0100").first).to_be_visible()
            assert await page.get_by_role("heading", name="Chat ended").count() == 0
        finally:
            swapped.stop()
            await front.start()
        assert problems == []
