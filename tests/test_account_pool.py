"""Survivor accounts opened ahead (webchat/account_pool.py): they carry nothing, each serves one
chat only, and those nobody took are erased when they expire and when the gateway stops.

Gateways here run in the test process against the session's real homeserver and bot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from dotenv import dotenv_values

from hotline.devstack import DevStack, free_port
from testkit.clients import Survivor, eventually, until
from webchat import app_keys
from webchat.account_pool import AccountPool
from webchat.app import create_app
from webchat.settings import GatewaySettings

BASE = dict(homeserver_url="http://127.0.0.1:1", bot_user_id="@hotline:hotline.localhost",
            bot_master_key="A" * 43, as_token="x")


@pytest.mark.parametrize("field, value, ok", [
    ("account_pool_size", 0, True), ("account_pool_size", 100, True),
    ("account_pool_size", -1, False), ("account_pool_size", 101, False),
    ("account_pool_max_age_seconds", 10, True), ("account_pool_max_age_seconds", 540, True),
    ("account_pool_max_age_seconds", 9, False), ("account_pool_max_age_seconds", 541, False),
])
def test_pool_settings_at_and_past_their_limits(field, value, ok):
    if ok:
        assert getattr(GatewaySettings(**BASE, **{field: value}), field) == value
    else:
        with pytest.raises(ValueError, match=field):
            GatewaySettings(**BASE, **{field: value})


@asynccontextmanager
async def gateway(stack: DevStack, **overrides: Any) -> AsyncIterator[tuple[str, AccountPool]]:
    """A gateway in this process with the stack's settings and ``overrides``: its page URL and pool."""
    env = {k.removeprefix("HOTLINE_").lower(): v for k, v in dotenv_values(stack.root / "webchat.env").items()}
    port = free_port()
    settings = GatewaySettings(**(env | {"listen_port": port, "public_url": None} | overrides))
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/", app[app_keys.POOL]
    finally:
        await runner.cleanup()


def account(stack: DevStack, user_id: str) -> tuple[int, int, int]:
    """(deactivated, erased, rooms it is or was in) as Synapse has them."""
    deactivated = stack.homeserver.query("SELECT deactivated FROM users WHERE name = ?", (user_id,))[0][0]
    erased = stack.homeserver.query("SELECT COUNT(*) FROM erased_users WHERE user_id = ?", (user_id,))[0][0]
    rooms = stack.homeserver.query("SELECT COUNT(*) FROM room_memberships WHERE user_id = ?", (user_id,))[0][0]
    return deactivated, erased, rooms


async def test_unused_accounts_carry_nothing_and_are_erased_when_the_gateway_stops(stack):
    async with gateway(stack, account_pool_size=3) as (_, pool):
        ready = await until(lambda: pool.waiting() if len(pool) == 3 else None, 60, "the pool filled")
        for user_id in ready:
            assert account(stack, user_id) == (0, 0, 0)  # active, and in no room at all
    for user_id in ready:
        assert account(stack, user_id) == (1, 1, 0)  # deactivated and erased once the gateway stopped


async def test_a_pooled_account_serves_one_chat_and_is_never_handed_out_again(stack):
    async with gateway(stack, account_pool_size=2) as (url, pool):
        first = await until(lambda: pool.waiting() if len(pool) == 2 else None, 60, "the pool filled")
        page = Survivor(url)
        try:
            await page.start()
            await until(lambda: len(page.texts("hotline")) >= 2, 60, "the notices")
            assert page.texts("hotline")[0].startswith("Before you share anything")  # the rights come first
            taken = [u for u in first if u not in pool.waiting()]
            assert len(taken) == 1 and account(stack, taken[0])[2] > 0  # the chat's room is in it
            await page.send({"type": "end"})
            await until(lambda: page.first("ended"), 30, "ended")
        finally:
            await page.close()
        refilled = await until(lambda: pool.waiting() if len(pool) == 2 else None, 60, "the pool refilled")
        assert taken[0] not in refilled  # never handed out again
        # The chat's account is erased with the chat (by the bot), as any other.
        await eventually(lambda: _erased(stack, taken[0]), 60, "the chat's account erased")
    for user_id in refilled:
        assert account(stack, user_id)[:2] == (1, 1)


async def test_accounts_nobody_took_are_erased_when_they_expire(stack):
    async with gateway(stack, account_pool_size=1, account_pool_max_age_seconds=10) as (_, pool):
        first = await until(lambda: pool.waiting() or None, 60, "the pool filled")
        await eventually(lambda: _erased(stack, first[0]), 60, "the expired account erased")
        assert account(stack, first[0]) == (1, 1, 0)
        replaced = await until(lambda: pool.waiting() if pool.waiting() != first else None, 30, "a new one")
        assert account(stack, replaced[0]) == (0, 0, 0)


async def _erased(stack: DevStack, user_id: str) -> bool:
    return account(stack, user_id)[:2] == (1, 1)
