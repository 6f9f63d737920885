"""The generated nginx configuration limits each client address and passes it to the gateway only
in X-Real-IP. A real nginx in front of a small backend that records what it receives."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess

import aiohttp
import pytest
from aiohttp import web

from hotline import proxy
from hotline.devstack import free_port
from testkit.clients import until
from tests.test_production_init import nginx_wrapper, self_signed

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                                reason="nginx not installed")
DOMAIN = "chat.example.org"


@pytest.fixture
async def proxied(tmp_path):
    """(https base URL, the headers each backend request carried)."""
    seen: list[dict[str, str]] = []
    held = asyncio.Event()

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.path == "/hold":
            await held.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    backend = free_port()
    await web.TCPSite(runner, "127.0.0.1", backend).start()
    cert, key = self_signed(tmp_path, DOMAIN)
    https = free_port()
    site = proxy.nginx_site(DOMAIN, "127.0.0.1:9", f"127.0.0.1:{backend}", certificate=str(cert), key=str(key),
                            http_port=free_port(), https_port=https)
    error_log = tmp_path / "nginx/error.log"
    conf = nginx_wrapper(tmp_path, site.replace("/var/log/nginx/hotline-error.log", str(error_log)))
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path / "nginx"), "-g", "daemon off;"],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"https://127.0.0.1:{https}"
    try:
        async with aiohttp.ClientSession() as http:
            async def up() -> bool:
                try:
                    async with http.get(base + "/", ssl=False) as response:
                        return response.status == 204
                except aiohttp.ClientError:
                    return False

            for _ in range(100):
                if await up():
                    break
                await asyncio.sleep(0.1)
        seen.clear()
        yield base, seen, held
    finally:
        held.set()
        os.killpg(nginx.pid, signal.SIGTERM)
        nginx.wait(timeout=20)
        await runner.cleanup()
    assert "127.0.0.1" not in (error_log.read_text() if error_log.exists() else "")  # rejections are not logged


async def statuses(base: str, path: str, n: int, method: str = "GET") -> list[int]:
    async with aiohttp.ClientSession() as http:
        result = []
        for _ in range(n):
            headers = {"X-Real-IP": "6.6.6.6", "X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6"}
            async with http.request(method, base + path, ssl=False, headers=headers) as response:
                result.append(response.status)
        return result


async def test_the_gateway_gets_the_address_only_in_x_real_ip_which_a_client_cannot_set(proxied):
    base, seen, _ = proxied
    assert await statuses(base, "/", 1) == [204]
    headers = seen[0]
    assert headers["X-Real-IP"] == "127.0.0.1"  # nginx's own view, not the client's claim
    assert "6.6.6.6" not in str(headers)
    assert headers.get("X-Forwarded-For", "") == "" and headers.get("Forwarded", "") == ""


async def test_answers_per_address_at_and_past_the_burst(proxied):
    base, seen, _ = proxied
    result = await statuses(base, "/answers", proxy.ANSWERS_BURST + 2, "POST")
    # The first request and the burst pass; past it, 429 without reaching the gateway.
    assert result[:proxy.ANSWERS_BURST + 1] == [204] * (proxy.ANSWERS_BURST + 1), result
    assert result[-1] == 429, result
    assert len(seen) == proxy.ANSWERS_BURST + 1


async def test_new_chat_sockets_per_address_at_and_past_the_burst(proxied):
    base, seen, _ = proxied
    result = await statuses(base, "/ws", proxy.SOCKET_BURST + 2)
    assert result[:proxy.SOCKET_BURST + 1] == [204] * (proxy.SOCKET_BURST + 1), result
    assert result[-1] == 429, result
    # The page itself is limited separately: it still loads.
    assert await statuses(base, "/", 1) == [204]


async def test_connections_per_address_at_and_past_the_limit(proxied):
    base, seen, held = proxied
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def hold() -> int:
            async with http.get(base + "/hold", ssl=False) as response:
                return response.status

        waiting = [asyncio.ensure_future(hold()) for _ in range(proxy.MAX_CONNECTIONS + 3)]
        await until(lambda: len(seen) >= proxy.MAX_CONNECTIONS and sum(t.done() for t in waiting) >= 3, 20,
                    "the requests past the limit refused")
        held.set()
        results = await asyncio.gather(*waiting)
    assert sorted(results) == [204] * proxy.MAX_CONNECTIONS + [429] * 3, results  # at the limit, past it
