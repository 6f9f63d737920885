"""Chats prepared ahead (webchat/ready.py): "Start chat" takes one that is ready, with the rights
notice already waiting; staff see a chat only once a survivor has started it; the gateway keeps
exactly ``ready_chats`` of them, prepares one on the spot when none is left, and ends the unused
ones when it stops (the bot erases them)."""

from __future__ import annotations

import asyncio
import time

from hotline.devstack import DevStack
from testkit.clients import all_prepared, alerts_in, new_alert, open_chat, ready_chats, until, user_deactivated
from tests.test_intake_limits import From, end_all, gateway_app
from webchat import app_keys


def created_at(stack: DevStack, room_id: str) -> float:
    """When Synapse created the room (its m.room.create event), in seconds."""
    rows = stack.homeserver.query("SELECT origin_server_ts FROM events WHERE room_id = ? AND type = 'm.room.create'",
                                  [room_id])
    return rows[0][0] / 1000


async def test_a_survivor_gets_a_chat_prepared_ahead_that_staff_saw_only_once_started(stack, advocate):
    # The stack's gateway keeps its shipped number of chats ready; the bot alerted nobody of them.
    await all_prepared(stack)
    before = len(alerts_in(stack, advocate))
    prepared = ready_chats(stack)
    await asyncio.sleep(2)
    assert len(alerts_in(stack, advocate)) == before, "no alert for a chat nobody started"
    page = From(stack.page_url)
    try:
        pressed = time.time()
        await page.start()
        # The rights notice was already in the room: the page has it with "started" or right after.
        await until(lambda: page.texts("hotline"), 10, "the rights notice")
        assert page.texts("hotline")[0].startswith("Before you share anything")
        ref = await new_alert(stack, advocate, before)
        survivor_room, survivor = open_chat(stack, ref)
        assert prepared.get(survivor_room) == survivor, "the chat was one of those prepared ahead"
        assert created_at(stack, survivor_room) < pressed
        assert survivor_room not in ready_chats(stack)
        # Staff see it from the start on: the welcome with the place in line follows the notice.
        await until(lambda: len(page.texts("hotline")) >= 2, 20, "the welcome")
        assert "in line" in page.texts("hotline")[1]
        # The gateway prepares another one, and never more than its number.
        await until(lambda: len(ready_chats(stack)) == len(prepared), 60, "one prepared again")
        await asyncio.sleep(5)
        assert len(ready_chats(stack)) == len(prepared)
    finally:
        await end_all([page])


async def test_the_gateway_keeps_its_number_ready_prepares_on_the_spot_and_ends_the_unused(stack):
    """A gateway with ``ready_chats=2``: exactly two ready (at the limit, never past it); three
    survivors at once all start (two take a prepared chat, one gets one made on the spot); when
    the gateway stops, the unused ones end and the bot erases them and their accounts."""
    await all_prepared(stack)
    theirs = set(ready_chats(stack))
    async with gateway_app(stack, ready_chats=2) as (url, app):
        pool = app[app_keys.READY]

        def mine() -> dict[str, str]:
            return {room: who for room, who in ready_chats(stack).items() if room not in theirs}
        await until(lambda: len(pool) == 2, 60, "two chats prepared ahead")
        await asyncio.sleep(4)
        assert len(pool) == 2 and len(mine()) == 2, "never more than ready_chats"
        first_two = mine()
        pages = [From(url) for _ in range(3)]
        try:
            await asyncio.gather(*(p.start() for p in pages))
            await asyncio.gather(*(until(lambda p=p: p.texts("hotline"), 30, "the rights notice") for p in pages))
            assert not set(first_two) & set(mine()), "both prepared chats were taken"
            # Refilled after the starts, to exactly two again.
            await until(lambda: len(pool) == 2, 60, "two prepared again")
            await asyncio.sleep(1)
            assert len(mine()) == 2
            unused = mine()
        finally:
            await end_all(pages)
    # Stopped: the unused ones were ended; the bot erases them and their accounts.
    await until(lambda: not set(unused) & set(ready_chats(stack)), 60, "the unused chats closed")
    await until(lambda: all(user_deactivated(stack.homeserver, who) for who in unused.values()), 60,
                "their accounts erased")
    assert not stack.homeserver.query(
        f"SELECT room_id FROM rooms WHERE room_id IN ({', '.join('?' * len(unused))})", list(unused))


async def test_a_survivor_who_starts_while_the_bot_is_down_is_told_chat_is_unavailable(stack):
    """A chat prepared ahead starts even while the bot is down (the rights notice is there), so the
    gateway waits for the bot's answer: none within ``bot_join_timeout_seconds``, and the page is
    told chat is unavailable (it shows the hotline number), and the chat is given up. The bot,
    back, erases it."""
    await all_prepared(stack)
    theirs = set(ready_chats(stack))
    async with gateway_app(stack, ready_chats=1, bot_join_timeout_seconds=3) as (url, app):
        await until(lambda: len(app[app_keys.READY]) == 1, 60, "the chat prepared ahead")
        (room,) = set(ready_chats(stack)) - theirs
        page = From(url)
        stack.kill_bot()
        try:
            await page.start()
            assert page.texts("hotline") or await until(lambda: page.texts("hotline"), 10, "the rights notice")
            error = await until(lambda: next((f for f in page.frames if f.get("type") == "error"), None), 20,
                                "the page told")
            assert error["code"] == "unavailable"
        finally:
            stack.start_bot()
            await page.close()
    # The bot, back, reads the start and that it was given up, and erases the chat.
    await until(lambda: not stack.homeserver.query("SELECT 1 FROM rooms WHERE room_id = ?", [room]), 90,
                "the chat given up erased")
