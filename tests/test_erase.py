"""Erasure always finishes: a killed bot and a homeserver that is down delay an erase, never
abandon it; the survivor's room goes first, at once, without redactions."""

from __future__ import annotations

import tempfile
from pathlib import Path

import aiohttp
import pytest

from hotline import admin
from hotline.devstack import DevStack
from tests.conftest import running
from testkit.clients import (
    Survivor,
    assert_erased,
    chat_row_exists,
    claim_new_chat,
    homeserver_rows,
    login,
    open_chat,
    routing,
    until,
    user_deactivated,
)

ERASED = {"events": 0, "event_json": 0, "room_memberships": 0, "rooms": 0}


@pytest.fixture(scope="module")
def erase_stack():
    root = Path(tempfile.mkdtemp(prefix="hotline-erase-"))
    # A short cap on the wait between two tries, so that the test sees the tries go on.
    yield from running(DevStack(root / "stack", advocates=1, settings={"erase_retry_max_seconds": "4"}))


def pending_erases(stack: DevStack) -> list[str]:
    with routing(stack) as view:
        return view.pending_erases()


async def test_a_handed_on_case_room_is_erased_after_the_bot_is_killed_mid_erase(erase_stack, canaries):
    stack = erase_stack
    canaries += ["words in the first case room 1a2b"]
    advocate = await login(stack, stack.accounts.advocates[0])
    page = Survivor(stack.page_url)
    try:
        ref, old_room = await claim_new_chat(stack, advocate, page)
        await page.say("words in the first case room 1a2b")
        await until(lambda: "Survivor: words in the first case room 1a2b" in advocate.bodies(old_room), 30, "relayed")
        await advocate.say(old_room, "!transfer")
        await until(lambda: pending_erases(stack), 30, "the erase recorded before it starts")
        stack.kill_bot()  # in the middle of that erase (it waits for staff clients after redacting)
        assert homeserver_rows(stack.homeserver, [old_room])["rooms"] == 1, "killed before the purge"
        settings = admin.load_bot_settings(stack.root / "bot.env")
        assert admin.pending_erases(settings) == (0, 1)  # what `hotline admin check` reports
        stack.start_bot()
        await until(lambda: homeserver_rows(stack.homeserver, [old_room]) == ERASED, 60, "the erase finished")
        await until(lambda: not pending_erases(stack), 30, "the record removed")
        assert admin.pending_erases(settings) == (0, 0)
        # The chat itself goes on: claimed again, closed, erased.
        await advocate.say(stack.accounts.dispatch_room, f"!claim {ref}")
        new_room = await until(lambda: next((r for r in advocate.messages if r != old_room and any(
            f"Case room for ref {ref}" in b for _, _, b in advocate.messages[r])), None), 30, "the new case room")
        await advocate.say(new_room, "!close")
        await assert_erased(stack, ref, new_room)
    finally:
        await advocate.close()
        await page.close()


async def test_a_chat_closed_while_the_homeserver_goes_down_is_erased_when_it_is_back(erase_stack, canaries):
    stack = erase_stack
    canaries += ["said before the outage 3c4d"]
    advocate = await login(stack, stack.accounts.advocates[0])
    page = Survivor(stack.page_url)
    try:
        ref, case_room = await claim_new_chat(stack, advocate, page)
        survivor_room, survivor = open_chat(stack, ref)
        await page.say("said before the outage 3c4d")
        await until(lambda: "Survivor: said before the outage 3c4d" in advocate.bodies(case_room), 30, "relayed")
        await advocate.say(case_room, "!close")
        # The survivor's room goes first, without redactions: the case room is still there.
        await until(lambda: homeserver_rows(stack.homeserver, [survivor_room]) == ERASED, 30, "survivor room purged")
        await until(lambda: user_deactivated(stack.homeserver, survivor), 10, "the survivor's account erased")
        assert homeserver_rows(stack.homeserver, [case_room])["rooms"] == 1, "the case room is erased after"
        stack.synapse.stop()  # down while the case room is being erased: several tries fail
        await until(lambda: "erasing the case room of chat" in (stack.logs / "bot.log").read_text()
                    and (stack.logs / "bot.log").read_text().count(f"case room of chat {ref} failed (attempt") >= 3,
                    60, "tries that fail while the homeserver is down")
        await stack.synapse.start()
        # A homeserver stopped during a pagination keeps that room's purge lock until it expires
        # (Synapse: 2 minutes), so the purge may wait that long; the erase keeps trying.
        await until(lambda: not chat_row_exists(stack, ref), 200, "the erase done")
        await assert_erased(stack, ref, case_room)
    finally:
        if stack.synapse.process is None or stack.synapse.process.poll() is not None:
            await stack.synapse.start()
        await advocate.close()
        await page.close()


UNREDACTED = ("SELECT COUNT(*) FROM events e WHERE e.room_id = ? AND e.state_key IS NULL "
              "AND e.type != 'm.room.redaction' AND NOT EXISTS (SELECT 1 FROM redactions r WHERE r.redacts = e.event_id)")


async def test_the_sweep_redacts_and_forgets_keys_with_the_bots_own_recipe(erase_stack, canaries):
    """`hotline admin sweep` erases what a stopped bot left with the same steps the bot takes
    (hotline_runtime/erase.py): every message event redacted with the bot's token (redacted ones
    left alone), the room's Megolm sessions deleted from the bot's crypto store."""
    stack = erase_stack
    canaries += ["words the sweep redacts 5e6f"]
    advocate = await login(stack, stack.accounts.advocates[0])
    page = Survivor(stack.page_url)
    try:
        ref, case_room = await claim_new_chat(stack, advocate, page)
        await page.say("words the sweep redacts 5e6f")
        await until(lambda: "Survivor: words the sweep redacts 5e6f" in advocate.bodies(case_room), 30, "relayed")
        settings = admin.load_bot_settings(stack.root / "bot.env")
        _, token = await admin.bot_login(settings)
        messages = stack.homeserver.query(UNREDACTED, [case_room])[0][0]
        assert messages >= 2  # the case room's first notice and the survivor's message at least
        async with aiohttp.ClientSession() as http:
            api = admin.Api(http, settings.homeserver, token)
            assert await admin._redact_all(api, case_room) >= messages
            assert stack.homeserver.query(UNREDACTED, [case_room])[0][0] == 0
            assert await admin._redact_all(api, case_room) == 0  # nothing left to redact
        assert admin.forget_keys(settings, [case_room]) >= 1
        assert admin.forget_keys(settings, [case_room]) == 0
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await advocate.close()
        await page.close()
