"""The production path for real: `hotline init` → Synapse on PostgreSQL → `hotline admin setup` →
bot and gateway from the generated env files → nginx in front (TLS, WebSocket) → staff added with
`hotline admin` → a chat claimed by the new advocate → erased; then `sweep` after a killed bot.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from bot.routing_view import RoutingView
from hotline import proxy
from hotline.devstack import free_port
from hotline.homeserver import EmbeddedHomeserver, HomeserverProcess
from hotline.postgres import ThrowawayPostgres, synapse_database
from hotline.production import InitOptions, init
from testkit.clients import Advocate, Survivor, until
from tests.test_production_init import nginx_wrapper, self_signed

DOMAIN = "hotline.test"
ORIGIN = f"https://{DOMAIN}"
PHONE = "555 0100"

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))),
    reason="needs nginx and PostgreSQL (.ci/run installs them)")


@dataclass
class Production:
    root: Path
    config: Path
    state: Path
    homeserver: EmbeddedHomeserver
    gateway_port: int
    https_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def proxy_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}/"

    def env(self, name: str) -> dict[str, str]:
        from dotenv import dotenv_values

        return {k: v or "" for k, v in dotenv_values(self.config / f"{name}.env").items()}

    def spawn(self, name: str, argv: list[str], extra: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "ab")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")} | (extra or {})
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                                env=environment)
        log.close()

    def start_bot(self) -> None:
        self.spawn("bot", [sys.executable, "-m", "bot", "--config", str(self.config / "bot.env")])

    def start_webchat(self) -> None:
        self.spawn("webchat", [sys.executable, "-m", "webchat", "--config", str(self.config / "webchat.env")],
                   {"HOTLINE_BOT_JOIN_TIMEOUT_SECONDS": "4"})

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hotline", "admin", "--dir", str(self.config), *args],
                              capture_output=True, text=True, timeout=120)

    def bot_token(self) -> str | None:
        database = self.state / "bot" / "routing.db"
        if not database.exists():
            return None
        try:
            with RoutingView(database) as view:
                return view.meta("access_token")
        except sqlite3.Error:
            return None

    def open_chats(self) -> int:
        with RoutingView.of(self.state / "bot") as view:
            return view.chat_count()

    def rows_naming(self, rooms: list[str]) -> dict[str, int]:
        marks = ",".join("?" for _ in rooms)
        return {table: self.homeserver.query(f"SELECT COUNT(*) FROM {table} WHERE room_id IN ({marks})", rooms)[0][0]
                for table in ("events", "event_json", "room_memberships", "rooms")}

    def deactivated(self, user_id: str) -> bool:
        rows = self.homeserver.query("SELECT deactivated FROM users WHERE name = ?", [user_id])
        return bool(rows and rows[0][0])


async def _wait_http(url: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            try:
                async with http.get(url, ssl=False) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Production:
    root = tmp_path_factory.mktemp("production")
    postgres = ThrowawayPostgres(free_port(), user="synapse")
    synapse_port, gateway_port, https_port, http_port = free_port(), free_port(), free_port(), free_port()
    synapse = None
    nginx = None
    www = Path(tempfile.mkdtemp(prefix="hotline-www-"))
    try:
        asyncio.run(postgres.start())
        config, state = root / "etc", root / "state"
        init(InitOptions(DOMAIN, config, target="systemd", state_dir=state, synapse_port=synapse_port,
                         gateway_port=gateway_port, db_port=postgres.port, program_name="Test program",
                         hotline_phone=PHONE))
        (state / "synapse").mkdir(parents=True)
        homeserver = EmbeddedHomeserver(config / "synapse", DOMAIN, synapse_port,
                                        database=synapse_database(postgres.port, user="synapse", name="synapse"))
        synapse = HomeserverProcess(homeserver)
        asyncio.run(synapse.start())
        stack = Production(root, config, state, homeserver, gateway_port, https_port)
        setup = stack.admin("setup")
        assert setup.returncode == 0, setup.stderr
        stack.start_bot()
        stack.start_webchat()
        cert, key = self_signed(root, DOMAIN)
        # What NEXT-STEPS.md does: the page for when the gateway is down, where nginx's workers
        # (another user when the test runs as root) can read it.
        www.chmod(0o755)
        shutil.copy(config / "proxy" / proxy.ERROR_PAGE, www / proxy.ERROR_PAGE)
        (www / proxy.ERROR_PAGE).chmod(0o644)
        site = proxy.nginx_site(DOMAIN, f"127.0.0.1:{synapse_port}", f"127.0.0.1:{gateway_port}", certificate=str(cert),
                                key=str(key), http_port=http_port, https_port=https_port, error_root=str(www))
        conf = nginx_wrapper(root, site.replace("/var/log/nginx/hotline-error.log", str(root / "nginx/error.log")))
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root / "nginx"), "-g", "daemon off;"],
                                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asyncio.run(_wait_http(f"http://127.0.0.1:{gateway_port}/"))
        asyncio.run(_wait_http(stack.proxy_url))

        async def bot_ready() -> None:
            await until(stack.bot_token, 60, "the bot's first login")

        asyncio.run(bot_ready())
        yield stack
        stack.kill("webchat")
        stack.kill("bot")
    finally:
        if nginx is not None:
            os.killpg(nginx.pid, signal.SIGTERM)
            nginx.wait(timeout=20)
        if synapse is not None:
            synapse.stop()
        postgres.stop()
        shutil.rmtree(www, ignore_errors=True)


class ProxiedSurvivor(Survivor):
    """The page's side, through nginx over TLS (self-signed), with the production origin."""

    async def connect(self) -> None:
        self.http = self.http or aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.page_url + "ws", headers={"Origin": ORIGIN}, ssl=False)
        self._reader = asyncio.create_task(self._read(self.ws))


async def test_generated_configuration_runs_on_postgres_and_check_passes(production):
    result = production.admin("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed" in result.stdout
    assert "the bot is logged in and is a server admin" in result.stdout
    assert production.homeserver.query("SELECT COUNT(*) FROM users WHERE name = ?", [f"@hotline:{DOMAIN}"])[0][0] == 1
    async with aiohttp.ClientSession() as http:
        base = production.proxy_url.rstrip("/")

        async def status(path: str) -> tuple[int, dict[str, str]]:
            async with http.get(base + path, ssl=False, headers={"Host": DOMAIN}) as response:
                await response.read()
                return response.status, dict(response.headers)

        assert (await status("/_matrix/client/versions"))[0] == 200
        for hidden in ("/_synapse/admin/v1/server_version", "/_matrix/federation/v1/version",
                       "/_matrix/key/v2/server", "/_synapse/client/"):
            assert (await status(hidden))[0] == 404, hidden
        code, headers = await status("/")
        assert code == 200
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers.get("Server", "nginx") == "nginx"  # server_tokens off: no version
        code, _ = await status("/.well-known/matrix/client")
        assert code == 200
    assert not list((production.root / "nginx").glob("**/access*")), "nginx wrote an access log"


async def test_new_advocate_added_by_admin_claims_a_chat_through_the_proxy(production):
    bad = production.admin("staff", "add", "sam", "--role", "advocate")
    assert bad.returncode != 0 and "not a Matrix user ID" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    added = production.admin("staff", "add", f"@sam:{DOMAIN}", "--role", "advocate")
    assert added.returncode == 0, added.stderr
    password = re.search(r"One-time password \(shown only now\): (\S+)", added.stdout).group(1)
    again = production.admin("staff", "add", f"@sam:{DOMAIN}", "--role", "advocate")
    assert again.returncode != 0 and "already exists" in again.stderr

    dispatch = production.env("bot")["HOTLINE_DISPATCH_ROOM"]
    advocate = Advocate(production.homeserver.url, f"@sam:{DOMAIN}", password)
    survivor = ProxiedSurvivor(production.proxy_url)
    try:
        await advocate.login()
        await until(lambda: dispatch in advocate.client.rooms, 30, "the new advocate in the dispatch room")
        listed = production.admin("staff", "list")
        assert listed.returncode == 0, listed.stderr
        assert f"@sam:{DOMAIN}  advocate" in listed.stdout and "device " in listed.stdout
        assert "127.0.0.1" not in listed.stdout  # no addresses

        await survivor.start()
        alert = await until(lambda: [b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")], 30, "alert")
        ref = re.search(r"ref (\w{4})", alert[-1]).group(1)
        await advocate.say(dispatch, f"!claim {ref}")
        case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "the case room")
        await survivor.say("through the proxy 6f1a")
        await until(lambda: "Survivor: through the proxy 6f1a" in advocate.bodies(case_room), 30, "relay to case")
        await advocate.say(case_room, "answer from sam 2c9d")
        await until(lambda: "answer from sam 2c9d" in survivor.texts("advocate"), 30, "relay to page")
        with RoutingView.of(production.state / "bot") as view:
            chat = view.chat(ref)
            survivor_room, survivor_account = chat.survivor_room, chat.survivor
        rooms = [case_room, survivor_room]
        await advocate.say(case_room, "!close")
        await until(lambda: survivor.first("ended"), 30, "the ended frame")
        await until(lambda: production.open_chats() == 0, 60, "the bot to erase the chat")
        assert production.rows_naming(rooms) == {"events": 0, "event_json": 0, "room_memberships": 0, "rooms": 0}
        assert production.deactivated(survivor_account)
        # Every other survivor account still active is one of a chat prepared ahead, not started.
        def strays() -> set[str]:
            active = {name for name, deactivated in production.homeserver.query(
                "SELECT name, deactivated FROM users WHERE name LIKE ?", ["@chat\\_%"]) if not deactivated}
            with RoutingView.of(production.state / "bot") as view:
                return active - set(view.ready_chats().values())
        await until(lambda: not strays(), 30, "no survivor account but those of chats prepared ahead")
    finally:
        await survivor.close()
        await advocate.close()
    for log in production.root.glob("*.log"):
        text = log.read_text(errors="replace")
        assert "through the proxy 6f1a" not in text and "answer from sam" not in text and password not in text


async def test_service_close_and_open_set_the_service_state(production):
    service_room = production.env("bot")["HOTLINE_SERVICE_ROOM"]
    assert production.admin("service", "close").returncode != 0  # a message is required
    closed = production.admin("service", "close", "Closed for a staff meeting; call the hotline.")
    assert closed.returncode == 0, closed.stderr

    def state() -> str:
        rows = production.homeserver.query(
            "SELECT ej.json FROM current_state_events c JOIN event_json ej ON ej.event_id = c.event_id "
            "WHERE c.room_id = ? AND c.type = ?", [service_room, "org.matrix_hotline.service"])
        return rows[0][0] if rows else ""

    assert '"closed":true' in state().replace(" ", "") and "staff meeting" in state()
    assert production.admin("service", "open").returncode == 0
    assert '"closed":false' in state().replace(" ", "")
    # The gateway polls the state: wait until it takes chats again, so the next test starts open.
    async with aiohttp.ClientSession() as http:
        async def gateway_closed() -> bool:
            async with http.get(production.proxy_url + "status", ssl=False) as response:
                return (await response.json())["closed"]

        for _ in range(300):
            if not await gateway_closed():
                break
            await asyncio.sleep(0.1)
        assert not await gateway_closed(), "the gateway never saw the service open again"


async def test_staff_remove_takes_the_account_out(production):
    added = production.admin("staff", "add", f"@lee:{DOMAIN}", "--role", "admin")
    assert added.returncode == 0, added.stderr
    removed = production.admin("staff", "remove", f"@lee:{DOMAIN}")
    assert removed.returncode == 0, removed.stderr
    assert production.deactivated(f"@lee:{DOMAIN}")
    assert f"@lee:{DOMAIN}" not in production.admin("staff", "list").stdout
    assert production.admin("staff", "remove", f"@lee:{DOMAIN}").returncode != 0
    stats = production.admin("stats", "export")
    assert stats.returncode == 0 and stats.stdout.startswith("day") or "not available" in stats.stderr


async def test_sweep_erases_what_a_killed_bot_left_behind(production):
    production.kill("bot", signal.SIGKILL)
    before = {r for (r,) in production.homeserver.query("SELECT room_id FROM rooms")}
    survivor = ProxiedSurvivor(production.proxy_url)
    try:
        await survivor.connect()
        await survivor.send({"type": "start"})
        # The survivor takes a chat prepared ahead (and is told chat is unavailable when the bot
        # does not answer); the gateway prepares the next one: an account and a room that invites
        # the bot, which never comes.
        room = await until(lambda: {r for (r,) in production.homeserver.query("SELECT room_id FROM rooms")} - before,
                           30, "the survivor room")
        room = next(iter(room))
        account = production.homeserver.query("SELECT creator FROM rooms WHERE room_id = ?", [room])[0][0]
        assert account.startswith("@chat_")
        await until(lambda: any(f.get("type") not in ("ack",) for f in survivor.frames), 30, "the page is told")
    finally:
        await survivor.close()
    listed = production.admin("sweep", "--min-age", "0")
    assert listed.returncode == 0, listed.stderr
    assert f"room {room}" in listed.stdout and f"account {account}" in listed.stdout and "--yes" in listed.stdout
    assert production.rows_naming([room])["rooms"] == 1  # a dry run changes nothing
    swept = production.admin("sweep", "--min-age", "0", "--yes")
    assert swept.returncode == 0, swept.stderr
    assert production.rows_naming([room]) == {"events": 0, "event_json": 0, "room_memberships": 0, "rooms": 0}
    assert production.deactivated(account)
    dispatch = production.env("bot")["HOTLINE_DISPATCH_ROOM"]
    assert production.rows_naming([dispatch])["rooms"] == 1  # staff rooms are never swept
    assert "Nothing to sweep" in production.admin("sweep", "--min-age", "0").stdout
    production.start_bot()


async def test_supervisors_and_interpreters_and_held_back_devices(production):
    """Every role has its room (made by setup); staff list shows roles and the devices held back."""
    bot = production.env("bot")
    for role, room_key in (("supervisor", "HOTLINE_SUPERVISORS_ROOM"), ("interpreter", "HOTLINE_INTERPRETERS_ROOM")):
        user = f"@{role}1:{DOMAIN}"
        added = production.admin("staff", "add", user, "--role", role)
        assert added.returncode == 0, added.stderr
        assert f"added them to the {role}s room" in added.stdout
        rows = production.homeserver.query("SELECT membership FROM room_memberships WHERE room_id = ? AND user_id = ?",
                                           [bot[room_key], user])
        assert ("join",) in rows, role
    refused = production.admin("staff", "add", f"@chief:{DOMAIN}", "--role", "boss")
    assert refused.returncode != 0 and "invalid choice" in refused.stderr
    listed = production.admin("staff", "list")
    assert f"@supervisor1:{DOMAIN}  supervisor" in listed.stdout
    assert f"@interpreter1:{DOMAIN}  interpreter" in listed.stdout

    # An advocate signs in on a second session that is not cross-signed: the bot holds it back.
    added = production.admin("staff", "add", f"@kim:{DOMAIN}", "--role", "advocate")
    password = re.search(r"One-time password \(shown only now\): (\S+)", added.stdout).group(1)
    dispatch = bot["HOTLINE_DISPATCH_ROOM"]
    first = Advocate(production.homeserver.url, f"@kim:{DOMAIN}", password)
    second = Advocate(production.homeserver.url, f"@kim:{DOMAIN}", password, cross_signed=False)  # unverified
    survivors = [ProxiedSurvivor(production.proxy_url), ProxiedSurvivor(production.proxy_url)]
    try:
        await first.login()
        await until(lambda: dispatch in first.client.rooms, 30, "kim in the dispatch room")
        await survivors[0].start()
        await until(lambda: [b for b in first.bodies(dispatch) if b.startswith("Chat waiting")], 30, "first alert")
        await second.login()
        await until(lambda: dispatch in second.client.rooms, 30, "kim's second device in the dispatch room")
        await survivors[1].start()
        await until(lambda: len([b for b in first.bodies(dispatch) if b.startswith("Chat waiting")]) >= 2, 30,
                    "second alert")

        def held_line() -> str | None:
            lines = production.admin("staff", "list").stdout.splitlines()
            return next((line for line in lines if f"device {second.client.device_id}" in line and "HELD BACK" in line),
                        None)

        line = await until(held_line, 30, "the second device marked as held back")
        assert f"!approve @kim:{DOMAIN} {second.client.device_id}" in line
        kim_first = next(line for line in production.admin("staff", "list").stdout.splitlines()
                         if f"device {first.client.device_id}" in line)
        assert "HELD BACK" not in kim_first
    finally:
        for survivor in survivors:
            if survivor.ws is not None:
                await survivor.send({"type": "end"})
            await survivor.close()
        await first.close()
        await second.close()
    await until(lambda: production.open_chats() == 0, 60, "the bot to erase both chats")


async def test_gateway_down_is_not_a_dead_end(production):
    """The gateway stopped behind nginx: the survivor who follows the link gets the page of
    proxy/unavailable.html, not "502 Bad Gateway": 503, the chat page's headers, the hotline
    number, the hours and the other ways to get help, in the words of the page's catalog."""
    from webchat.i18n import load_catalogs

    english = load_catalogs()["en"]
    production.kill("webchat")
    try:
        async with aiohttp.ClientSession() as http:
            async def fetch(path: str) -> tuple[int, dict[str, str], str]:
                async with http.get(production.proxy_url.rstrip("/") + path, ssl=False) as response:
                    return response.status, dict(response.headers), await response.text()

            status, headers, body = await fetch("/")
            assert status == 503, body[:500]
            for name, value in proxy.page_headers().items():
                assert headers.get(name) == value, name
            assert headers["Strict-Transport-Security"] == proxy.HSTS
            assert headers["Content-Type"].startswith("text/html") and "utf-8" in headers["Content-Type"].lower()
            assert f'href="tel:5550100"' in body and f">{PHONE}</a>" in body and "Test program" in body
            for key in ("unavailable_title", "down", "hours_title", "hours_always", "other_help_title", "other_help",
                        "leave"):
                assert html.escape(english[key]) in body, key
            assert "Bad Gateway" not in body and "nginx" not in body
            # Every path of the page gets it (the socket and the status too); only by error_page.
            assert (await fetch("/ws"))[0] == 503 and (await fetch("/status"))[0] == 503
            assert "Bad Gateway" not in (await fetch("/chat.js"))[2]
            # The staff's Matrix API is not the gateway's: still up.
            assert (await fetch("/_matrix/client/versions"))[0] == 200
    finally:
        production.start_webchat()
        await _wait_http(production.proxy_url, 60)
    async with aiohttp.ClientSession() as http, http.get(production.proxy_url, ssl=False) as response:
        assert response.status == 200 and "hotline-config" in await response.text()
