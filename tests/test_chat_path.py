"""The whole chat path on a real homeserver: page → gateway → bot → advocate and back, then close."""

from __future__ import annotations

import re

import pytest

from hotline.devstack import DevStack
from tests.support import Advocate, Survivor, bot_chat_rows, homeserver_rows, until, user_deactivated

MIXED_SCRIPTS = [
    "مرحبا، أحتاج إلى مساعدة من فضلك",
    "नमस्ते, मुझे मदद चाहिए",
    "你好，我需要帮助",
    "I'm okay for now 🙂👍🏽 family: 👨‍👩‍👧",
    "e\u0301 combining mark and zero\u200bwidth",
    "long " + "x" * 4995,
]


@pytest.fixture
async def advocate(stack: DevStack):
    account = stack.accounts.advocates[0]
    client = Advocate(stack.homeserver.url, account.user_id, account.password)
    await client.login()
    yield client
    await client.close()


@pytest.fixture
async def survivor(stack: DevStack):
    page = Survivor(stack.page_url)
    yield page
    await page.close()


async def claim_new_chat(stack: DevStack, advocate: Advocate, survivor: Survivor) -> tuple[str, str]:
    """Start a chat on the page, claim it from the dispatch room; returns (ref, case room)."""
    dispatch = stack.accounts.dispatch_room
    alerts_before = len([b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")])
    await survivor.start()
    alerts = await until(lambda: [b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")][alerts_before:],
                         30, "the dispatch alert")
    ref = re.search(r"ref (\w{4})", alerts[-1]).group(1)
    await advocate.say(dispatch, f"!claim {ref}")
    case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "the case room")
    return ref, case_room


async def test_whole_chat_both_ways_then_close_and_erase(stack, advocate, survivor, canaries):
    canaries += ["written while waiting 71c3"] + MIXED_SCRIPTS + ["advocate reply 5d1e"]
    dispatch = stack.accounts.dispatch_room
    await survivor.start()
    await until(lambda: survivor.texts("hotline"), 20, "the welcome notice")
    await survivor.say("written while waiting 71c3")
    alert = await until(lambda: [b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")], 30, "alert")
    assert "written while waiting" not in " ".join(advocate.bodies(dispatch))  # never content in dispatch
    ref = re.search(r"ref (\w{4})", alert[-1]).group(1)
    await advocate.say(dispatch, f"!claim {ref}")
    case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "the case room")
    await until(lambda: "Survivor: written while waiting 71c3" in advocate.bodies(case_room), 20, "the backlog")
    await until(lambda: "An advocate has joined the chat." in survivor.texts("hotline"), 20, "joined notice")

    for text in MIXED_SCRIPTS:
        await survivor.say(text)
    await until(lambda: all(f"Survivor: {t}" in advocate.bodies(case_room) for t in MIXED_SCRIPTS), 30, "relay to case")
    for text in MIXED_SCRIPTS + ["advocate reply 5d1e"]:
        await advocate.say(case_room, text)
    await until(lambda: survivor.texts("advocate") == MIXED_SCRIPTS + ["advocate reply 5d1e"], 30, "relay to page")
    # Nothing on the page names a Matrix account or a person.
    assert not any("@" in f.get("text", "") and ":" in f.get("text", "") for f in survivor.frames
                   if f.get("role") == "hotline")
    assert all(set(f) <= {"type", "seq", "role", "text", "id", "chat", "secret"} for f in survivor.frames)

    survivor_user = next(iter(stack_survivor_rooms(stack)), None)
    await advocate.say(case_room, "!close")
    await until(lambda: survivor.first("ended"), 20, "the ended frame")
    await until(lambda: bot_chat_rows(stack.root / "bot" / "routing.db") == 0, 60, "the bot to forget the chat")
    assert homeserver_rows(stack.homeserver.database_path, [case_room]) == {
        "events": 0, "event_json": 0, "room_memberships": 0, "rooms": 0}


def stack_survivor_rooms(stack: DevStack) -> list[str]:
    return []
