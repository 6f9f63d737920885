"""Intake cannot be flooded: chats count from the moment they start opening; limits per address.

Gateways here run in the test process against the session's real homeserver and bot, with their
own limits; the client's address comes from ``X-Real-IP`` as a trusted proxy (loopback) passes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from dotenv import dotenv_values

from hotline.devstack import DevStack, free_port
from testkit.clients import Survivor, alerted_refs, all_prepared, eventually, until
from webchat.app import create_app
from webchat.limits import AddressLimits, client_key, parse_networks
from webchat.settings import GatewaySettings

LOOPBACK = parse_networks("127.0.0.0/8, ::1")
READY = GatewaySettings.model_fields["ready_chats"].default  # chats a gateway prepares ahead, as shipped


# --------------------------------------------------------------------------- pure: whose address


@pytest.mark.parametrize("peer, header, key", [
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # from the proxy: its header
    ("127.0.0.1", None, None),  # from the proxy, no header: the proxy's limits apply
    ("127.0.0.1", "not an address", None),
    ("127.0.0.1", " 203.0.113.7 ", "203.0.113.7"),
    ("198.51.100.2", "203.0.113.7", "198.51.100.2"),  # not the proxy: the header is ignored
    ("198.51.100.2", None, "198.51.100.2"),
    ("::1", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # IPv6 counts by /64
    ("::1", "2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::1", "2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:127.0.0.1", "::ffff:203.0.113.9", "203.0.113.9"),  # IPv4-mapped
    ("2001:db8::5", None, "2001:db8::/64"),
    (None, "203.0.113.7", None),  # a Unix socket: nothing known
])
def test_client_key(peer, header, key):
    assert client_key(peer, header, LOOPBACK) == key


@pytest.mark.parametrize("value, ok", [
    ("127.0.0.1, ::1", True), ("10.0.0.0/8,fc00::/7", True), ("", True), ("localhost", False), ("10.0.0.0/33", False),
])
def test_trusted_proxies_setting(value, ok):
    base = dict(homeserver_url="http://127.0.0.1:1", bot_user_id="@hotline:hotline.localhost",
                bot_master_key="A" * 43, as_token="x")
    if ok:
        GatewaySettings(**base, trusted_proxies=value)
    else:
        with pytest.raises(ValueError, match="trusted_proxies"):
            GatewaySettings(**base, trusted_proxies=value)


async def test_address_limits_at_and_past_each_limit():
    limits = AddressLimits(LOOPBACK, max_sockets=2, max_starts=3, max_answers=1, period=600)
    assert limits.open_socket("a") and limits.open_socket("a")
    assert not limits.open_socket("a")  # past the limit
    assert limits.open_socket("b")  # another address is not affected
    limits.close_socket("a")
    assert limits.open_socket("a")  # a closed socket frees its place
    assert [await limits.take_start("a") for _ in range(4)] == [True, True, True, False]
    assert await limits.take_start("b")
    assert [await limits.take_answers("a") for _ in range(2)] == [True, False]
    assert await limits.take_start(None) and limits.open_socket(None)  # unknown address: not limited here


async def test_address_table_forgets_drained_addresses():
    limits = AddressLimits(LOOPBACK, max_sockets=2, max_starts=3, max_answers=1, period=600)
    assert limits.open_socket("a")
    limits.close_socket("a")
    assert len(limits) == 0  # nothing kept about an address with nothing counted
    await limits.take_start("a")
    assert len(limits) == 1  # its bucket has not drained yet (it drains over the period)


# --------------------------------------------------------------------------- against the real stack


@asynccontextmanager
async def gateway_app(stack: DevStack, **overrides: Any) -> AsyncIterator[tuple[str, web.Application]]:
    """A second gateway in this process, with the stack's settings and ``overrides``; yields its
    page URL and its application."""
    env = {k.removeprefix("HOTLINE_").lower(): v for k, v in dotenv_values(stack.root / "webchat.env").items()}
    port = free_port()
    settings = GatewaySettings(**(env | {"listen_port": port, "public_url": None} | overrides))
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        await runner.cleanup()


@asynccontextmanager
async def gateway(stack: DevStack, **overrides: Any) -> AsyncIterator[str]:
    """``gateway_app``'s page URL only."""
    async with gateway_app(stack, **overrides) as (url, _):
        yield url


class From(Survivor):
    """A survivor whose proxy says they connect from ``address``."""

    def __init__(self, page_url: str, address: str | None = None) -> None:
        super().__init__(page_url)
        self.address = address

    async def connect(self) -> None:
        self.http = self.http or aiohttp.ClientSession()
        headers = {"Origin": self.page_url.rstrip("/")}
        if self.address:
            headers["X-Real-IP"] = self.address
        self.ws = await self.http.ws_connect(self.page_url + "ws", headers=headers)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def close(self) -> None:
        await super().close()
        if self.http is not None:
            await self.http.close()


def survivor_accounts(stack: DevStack) -> int:
    """Survivor accounts Synapse has ever made (erased ones stay as deactivated rows)."""
    return stack.homeserver.query("SELECT COUNT(*) FROM users WHERE name LIKE '@chat!_%' ESCAPE '!'")[0][0]


def outcome(page: Survivor) -> str | None:
    if page.first("started"):
        return "started"
    error = next((f for f in page.frames if f.get("type") == "error"), None)
    return error["code"] if error else None


async def end_all(pages: list[Survivor]) -> None:
    for page in pages:
        if page.first("started") and page.ws is not None and not page.ws.closed:
            await page.send({"type": "end"})
    await asyncio.gather(*(until(lambda p=p: p.first("ended"), 30, "ended") for p in pages if p.first("started")))
    await asyncio.gather(*(p.close() for p in pages))


async def test_simultaneous_starts_never_pass_the_open_chat_limit(stack):
    """50 starts at once against a limit of 5: five chats and five accounts, the rest told at once.
    (No chats prepared ahead here, so that every account counted is a chat's; with them, each
    start makes at most one account as well: tests/test_ready_chats.py.)"""
    await all_prepared(stack)
    before = survivor_accounts(stack)
    async with gateway(stack, max_open_chats=5, ready_chats=0) as url:
        pages = [From(url) for _ in range(50)]
        await asyncio.gather(*(p.connect() for p in pages))
        await asyncio.gather(*(p.send({"type": "start"}) for p in pages))
        await until(lambda: all(outcome(p) for p in pages), 90, "every start answered")
        results = [outcome(p) for p in pages]
        try:
            assert results.count("started") == 5, results
            assert results.count("unavailable") == 45, results
            assert survivor_accounts(stack) - before == 5  # no account for a refused start
            # At the limit nothing more opens; once one chat ends, one more can.
            late = From(url)
            await late.connect()
            await late.send({"type": "start"})
            await until(lambda: outcome(late), 30, "the late start answered")
            assert outcome(late) == "unavailable"
            await late.close()
            first = next(p for p in pages if p.first("started"))
            await first.send({"type": "end"})
            await until(lambda: first.first("ended"), 30, "ended")
            again = From(url)
            await asyncio.sleep(0.5)  # the gateway lets go of the ended chat
            await again.start()
            pages.append(again)
        finally:
            await end_all(pages)


async def test_chat_starts_per_address_at_and_past_the_limit(stack, caplog):
    caplog.set_level("DEBUG")
    async with gateway(stack, max_starts_per_address=2) as url:
        pages = [From(url, "203.0.113.7") for _ in range(3)]
        try:
            for page in pages[:2]:
                await page.start()  # at the limit
            await pages[2].connect()
            await pages[2].send({"type": "start"})
            await until(lambda: outcome(pages[2]), 30, "the third start answered")
            assert outcome(pages[2]) == "unavailable"  # past it
            # The same network over IPv6 / another network is not affected.
            other = From(url, "198.51.100.20")
            pages.append(other)
            await other.start()
        finally:
            await end_all(pages)
    assert "203.0.113" not in caplog.text and "198.51.100" not in caplog.text  # memory only, never logged


async def test_sockets_per_address_at_and_past_the_limit(stack):
    async with gateway(stack, max_sockets_per_address=2) as url:
        pages = [From(url, "203.0.113.8") for _ in range(3)]
        try:
            await pages[0].connect()
            await pages[1].connect()  # at the limit
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await pages[2].connect()  # past it
            assert refused.value.status == 429
            other = From(url, "198.51.100.21")
            pages.append(other)
            await other.connect()
            await pages[0].close()
            await asyncio.sleep(0.5)  # the gateway sees the close
            await pages[2].connect()  # a closed socket frees its place
        finally:
            await asyncio.gather(*(p.close() for p in pages))


async def test_answers_per_address_at_and_past_the_limit(stack):
    async with gateway(stack, max_answers_per_address=2) as url, aiohttp.ClientSession() as http:
        async def post(address: str) -> int:
            headers = {"Origin": url.rstrip("/"), "X-Real-IP": address}
            async with http.post(url + "answers", json={"answers": {"age": "prefer_not"}}, headers=headers) as response:
                return response.status

        statuses = [await post("203.0.113.9") for _ in range(3)]
        assert statuses[:2] == [204, 204] and statuses[2] == 429, statuses
        assert await post("198.51.100.22") == 204


# --------------------------------------------------------------------------- a scripted flood

FLOOD_ADDRESSES = ("203.0.113.50", "203.0.113.51", "2001:db8:bad:1::7")
FLOOD_WAVES, FLOOD_WAVE = 6, 50  # 300 sockets, each: connect, start, drop at once


def active_survivor_accounts(stack: DevStack) -> int:
    return stack.homeserver.query(
        "SELECT COUNT(*) FROM users WHERE name LIKE '@chat!_%' ESCAPE '!' AND deactivated = 0")[0][0]


async def flood_once(url: str, address: str) -> str:
    """One flooding socket: start a chat and drop the connection without waiting."""
    page = From(url, address)
    try:
        await page.connect()
    except aiohttp.WSServerHandshakeError as refused:
        await page.close()
        return f"http {refused.status}"
    try:
        await page.send({"type": "start"})
        await asyncio.sleep(0.05)
        return "dropped"
    finally:
        await page.close()


async def test_a_flood_leaves_room_for_real_survivors_and_the_dispatch_room_readable(stack, advocate):
    """300 sockets from three networks start and drop chats; a real survivor then starts a chat,
    its alert stands out in the dispatch room and is claimed by its ref, and Synapse made no more
    survivor accounts than the per-address limits allow, all erased afterwards."""
    dispatch = stack.accounts.dispatch_room
    starts_per_address = 5
    await all_prepared(stack)
    accounts_before, active_before = survivor_accounts(stack), active_survivor_accounts(stack)
    bodies_before = len(advocate.bodies(dispatch))
    async with gateway(stack, max_starts_per_address=starts_per_address) as url:
        async with asyncio.timeout(180):
            outcomes: list[str] = []
            for wave in range(FLOOD_WAVES):
                outcomes += await asyncio.gather(*(flood_once(url, FLOOD_ADDRESSES[i % len(FLOOD_ADDRESSES)])
                                                   for i in range(FLOOD_WAVE)))
            assert len(outcomes) == FLOOD_WAVES * FLOOD_WAVE
            # Synapse's survivor accounts: bounded by the limits, not by the flood. Each start the
            # limits let through makes at most one account (its own, or the one prepared to
            # replace the prepared chat it took), besides the gateway's chats prepared ahead.
            made = survivor_accounts(stack) - accounts_before
            assert made <= starts_per_address * len(FLOOD_ADDRESSES) + READY, made
            # A real survivor, from another network, starts a chat and is announced.
            real = From(url, "198.51.100.77")

            def new_bodies() -> list[str]:
                return advocate.bodies(dispatch)[bodies_before:]

            try:
                await asyncio.sleep(2)  # the flood's last drops reach the bot
                announced = alerted_refs(new_bodies())
                await real.start()
                await until(lambda: len(real.texts("hotline")) >= 2, 60, "the notices")
                # The chats the flood left are not ahead of a survivor who is here.
                assert "you are number 1 in line" in real.texts("hotline")[1]
                ref = (await until(lambda: alerted_refs(new_bodies())[len(announced):], 60,
                                   "the real survivor's alert"))[0]
                await advocate.say(dispatch, f"!claim {ref}")
                case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 60, "case room")
                await real.say("a real survivor writes 7c1e")
                await until(lambda: "Survivor: a real survivor writes 7c1e" in advocate.bodies(case_room), 30, "relay")
                # The dispatch room stayed readable: a handful of lines, not one per flooding socket.
                flood_lines = [b for b in new_bodies() if f"ref {ref}" not in b and ref not in alerted_refs([b])]
                assert len(flood_lines) <= 5, flood_lines
                await real.send({"type": "end"})
                await until(lambda: real.first("ended"), 30, "ended")
            finally:
                await real.close()
    # Every flood account is erased once its chat's grace period is over; the chats the gateway
    # had prepared ahead, once it has stopped.
    await eventually(lambda: _settled(stack, active_before), 120, "the flood's accounts erased")


async def _settled(stack: DevStack, active_before: int) -> bool:
    return active_survivor_accounts(stack) <= active_before
