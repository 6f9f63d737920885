"""Several web chat gateways behind the proxy (`hotline init --gateways N`, docs/scaling.md): the
generated files, and the proxy's routes (real nginx and Caddy in front of recording gateways):
a chat's sockets (``?gateway=NAME``) to its own gateway only, a new chat to each in turn, the optional
answers to the first. The whole chat path on two gateways is in tests/test_workers.py, on the
worker layout's stack."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from hotline import proxy
from hotline.devstack import free_port
from hotline.production import MAX_GATEWAYS, InitOptions, init
from hotline.throwaway import LoopbackFront
from tests.test_workers import Recorders
from webchat.protocol import chat_gateway, new_chat_id
from webchat.settings import GatewaySettings

NAMES = ["g1", "g2"]


def make(tmp_path: Path, target: str, gateways: int = 2, **extra: object) -> Path:
    directory = tmp_path / target
    init(InitOptions("chat.example.org", directory, target=target, state_dir=tmp_path / "state", gateways=gateways,
                     **extra))  # type: ignore[arg-type]
    return directory


@pytest.mark.parametrize(("gateway", "random_part", "chat_id", "owner"), [
    ("", "abc_-1", "abc_-1", ""),  # the one gateway: ids as before
    ("g2", "abc_-1", "g2.abc_-1", "g2"),
    ("g10", "x", "g10.x", "g10"),
])
def test_a_chat_id_names_its_gateway(gateway, random_part, chat_id, owner):
    assert new_chat_id(gateway, random_part) == chat_id
    assert chat_gateway(chat_id) == owner


@pytest.mark.parametrize("name", ["G1", "1g", "g-1", "g" * 17, "g.1"])
def test_a_gateway_name_that_cannot_be_routed_is_refused(name):
    with pytest.raises(ValueError):
        GatewaySettings(homeserver_url="http://127.0.0.1:8008", bot_user_id="@b:hs", bot_master_key="k",
                        as_token="t", gateway_name=name)


def test_init_systemd_with_gateways_writes_an_instance_each(tmp_path):
    directory = make(tmp_path, "systemd")
    assert (directory / "gateways/g1.env").read_text().endswith("HOTLINE_GATEWAY_NAME=g1\nHOTLINE_LISTEN_PORT=8080\n")
    assert (directory / "gateways/g2.env").read_text().endswith("HOTLINE_GATEWAY_NAME=g2\nHOTLINE_LISTEN_PORT=8081\n")
    template = (directory / "systemd/hotline-webchat@.service").read_text()
    assert f"EnvironmentFile={directory.resolve()}/gateways/%i.env" in template
    assert "User=hotline-webchat" in template and "--config" in template
    steps = (directory / "NEXT-STEPS.md").read_text()
    assert "systemctl enable --now hotline-bot hotline-webchat@g1 hotline-webchat@g2" in steps
    assert "hotline-webchat@.service /etc/systemd/system/" in steps
    nginx = (directory / "proxy/nginx.conf").read_text()
    for name, port in (("g1", 8080), ("g2", 8081)):
        assert f"upstream hotline_gateway_{name} {{\n    server 127.0.0.1:{port};\n}}" in nginx
        assert f"    {name} hotline_gateway_{name};" in nginx
    assert "proxy_pass http://$hotline_gateway;" in nginx and "proxy_pass http://hotline_answers;" in nginx
    caddy = (directory / "proxy/Caddyfile").read_text()
    assert "@gateway_g2 query gateway=g2" in caddy and "lb_policy round_robin" in caddy


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_gateway_template_verifies_as_an_instance(tmp_path):
    """systemd-analyze verifies an instance of the template (hotline-webchat@g2), beside the units it
    names; a unit it finds fault with is named in its output."""
    directory = make(tmp_path, "systemd")
    check = tmp_path / "check"
    check.mkdir()
    for unit in (directory / "systemd").glob("*.service"):
        shutil.copy(unit, check / unit.name)
    shutil.copy(check / "hotline-webchat@.service", check / "hotline-webchat@g2.service")
    result = subprocess.run(["systemd-analyze", "verify", str(check / "hotline-webchat@g2.service"),
                             str(check / "hotline-bot.service"), str(check / "hotline-synapse.service")],
                            capture_output=True, text=True, timeout=60)
    assert "hotline-" not in result.stderr, result.stderr
    instance = (check / "hotline-webchat@g2.service").read_text()
    assert "Description=matrix-hotline web chat gateway %i" in instance and "ProtectSystem=strict" in instance


def test_init_compose_with_gateways_adds_the_services(tmp_path):
    directory = make(tmp_path, "compose", workers=2)
    services = yaml.safe_load((directory / "compose.gateways.yml").read_text())["services"]
    assert services["webchat"] == {"environment": {"HOTLINE_GATEWAY_NAME": "g1"}}
    twin = services["webchat-g2"]
    assert twin["environment"] == {"HOTLINE_GATEWAY_NAME": "g2"} and twin["read_only"] is True
    assert twin["volumes"] == ["${HOTLINE_CONFIG:-/etc/hotline}/webchat.env:/etc/hotline/webchat.env:ro"]
    assert not twin.get("ports")
    caddy = (directory / "proxy/Caddyfile").read_text()
    assert "reverse_proxy webchat:8080 webchat-g2:8080 {" in caddy
    steps = (directory / "NEXT-STEPS.md").read_text()
    assert f"-f {directory.resolve()}/compose.workers.yml -f {directory.resolve()}/compose.gateways.yml" in steps


def test_one_gateway_is_still_the_default(tmp_path):
    directory = tmp_path / "default"
    init(InitOptions("chat.example.org", directory, target="systemd", state_dir=tmp_path / "state"))
    assert not (directory / "gateways").exists() and not (directory / "systemd/hotline-webchat@.service").exists()
    assert "hotline_gateway" not in (directory / "proxy/nginx.conf").read_text()
    assert "query gateway" not in (directory / "proxy/Caddyfile").read_text()


def test_gateways_count_is_bounded(tmp_path):
    make(tmp_path / "at", "systemd", gateways=MAX_GATEWAYS)
    assert len(list((tmp_path / "at/systemd/gateways").glob("g*.env"))) == MAX_GATEWAYS
    for count in (0, MAX_GATEWAYS + 1):
        result = subprocess.run([sys.executable, "-m", "hotline", "init", "chat.example.org",
                                 "--dir", str(tmp_path / f"past{count}"), "--gateways", str(count)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode != 0 and result.stderr.startswith("hotline init: --gateways")
        assert not (tmp_path / f"past{count}").exists()


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")
def test_caddyfile_with_gateways_validates(tmp_path):
    directory = make(tmp_path, "compose", workers=2)
    from tests.test_production_init import caddy_validate

    result = caddy_validate(directory)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None, reason="nginx not installed")
def test_nginx_config_with_gateways_and_workers_passes_nginx_t(tmp_path):
    from tests.test_production_init import nginx_wrapper, self_signed

    cert, key = self_signed(tmp_path, "chat.example.org")
    site = proxy.nginx_site("chat.example.org", "127.0.0.1:8100", "unused:1", certificate=str(cert), key=str(key),
                            http_port=18080, https_port=18443, workers=("127.0.0.1:8101",),
                            gateways=(("g1", "127.0.0.1:8080"), ("g2", "127.0.0.1:8081")))
    conf = nginx_wrapper(tmp_path, site.replace("/var/log/nginx/hotline-error.log", str(tmp_path / "nginx/error.log")))
    result = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path / "nginx")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- the routes

async def check_gateway_routes(base: str) -> None:
    """Each chat's socket to its gateway, every time; new chats to both; answers to g1; an
    unknown name like a new chat (the gateway itself refuses another's chat)."""
    async with aiohttp.ClientSession() as http:
        async def where(path: str, method: str = "GET") -> str:
            async with http.request(method, base + path) as response:
                assert response.status == 200, (path, response.status)
                return (await response.json())["process"]

        for name in NAMES:
            assert {await where(f"/ws?gateway={name}") for _ in range(6)} == {name}
            assert {await where(f"/chat/ws?gateway={name}") for _ in range(3)} == {name}
        new_chats = set()
        for _ in range(4):  # a new chat: each gateway in turn, whatever the page asked before
            await where("/")
            new_chats.add(await where("/ws"))
        assert new_chats == set(NAMES)
        assert {await where("/answers", "POST") for _ in range(4)} == {"g1"}
        assert await where("/ws?gateway=g9") in NAMES


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
async def test_nginx_pins_each_chat_to_its_gateway(tmp_path):
    async with Recorders(NAMES) as gateways:
        front = LoopbackFront(tmp_path / "front", free_port(), tuple((n, gateways.address(n)) for n in NAMES))
        await front.start()
        try:
            await check_gateway_routes(f"http://127.0.0.1:{front.port}")
        finally:
            front.stop()


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")
async def test_caddy_pins_each_chat_to_its_gateway(tmp_path):
    async with Recorders(NAMES) as gateways:
        port = free_port()
        routes = proxy._caddy_gateway_routes("", tuple((n, gateways.address(n)) for n in NAMES))
        (tmp_path / "Caddyfile").write_text(f"{{\n\tadmin off\n\tauto_https off\n}}\nhttp://:{port} {{\n\thandle {{\n{routes}\t}}\n}}\n")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
               "XDG_CONFIG_HOME": str(tmp_path / "config")}
        caddy = subprocess.Popen(["caddy", "run", "--adapter", "caddyfile", "--config", str(tmp_path / "Caddyfile")],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(300):
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    assert caddy.poll() is None, caddy.stderr.read().decode()[-2000:] if caddy.stderr else ""
                    await asyncio.sleep(0.1)
            await check_gateway_routes(f"http://127.0.0.1:{port}")
        finally:
            caddy.terminate()
            caddy.wait(timeout=20)
