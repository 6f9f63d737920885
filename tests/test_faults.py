"""Faults: the bot killed under traffic, the homeserver restarted mid-chat. Nothing is lost or
duplicated, and the chats go on. A stack of its own, since these tests stop its processes."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path

import pytest

from hotline.devstack import DevStack
from tests.conftest import running
from testkit import synapse_faults
from testkit.clients import Survivor, assert_erased, claim_new_chat, login, open_chat, until


@pytest.fixture(scope="module")
def fault_stack():
    """Its Synapse also loads testkit/synapse_faults.py, which refuses the events a test names."""
    root = Path(tempfile.mkdtemp(prefix="hotline-faults-"))
    stack = DevStack(root / "stack", advocates=3, settings={"reconnect_grace_seconds": "60"})
    with synapse_faults.loaded_into(stack) as refusals:
        stack.refusals = refusals  # type: ignore[attr-defined]
        yield from running(stack)


@pytest.fixture
async def staff(fault_stack):
    client = await login(fault_stack, fault_stack.accounts.advocates[0])
    yield client
    await client.close()


async def test_bot_killed_under_traffic_in_three_chats_loses_and_duplicates_nothing(fault_stack, staff, canaries):
    """Three chats, each with its own advocate, both sides writing without pause; SIGKILL the bot
    mid-stream and start it again. (Three people: one account writing 60 lines in seconds would be
    held back by the homeserver's message limit, which is not what this tests.)"""
    pages = [Survivor(fault_stack.page_url) for _ in range(3)]
    advocates = [staff] + [await login(fault_stack, account) for account in fault_stack.accounts.advocates[1:3]]
    chats = [await claim_new_chat(fault_stack, advocate, page) for advocate, page in zip(advocates, pages)]
    for page in pages:
        await until(lambda page=page: "An advocate has joined the chat." in page.texts("hotline"), 30, "joined")
    lines = 20
    tag = secrets.token_hex(3)
    said = {i: ([f"s{i}-{n:02d} {tag}" for n in range(lines)], [f"a{i}-{n:02d} {tag}" for n in range(lines)])
            for i in range(len(pages))}
    canaries += [t for pair in said.values() for side in pair for t in side]
    killed = asyncio.Event()

    async def talk(i: int) -> None:
        page, (_, case_room) = pages[i], chats[i]
        from_survivor, from_advocate = said[i]
        for n in range(lines):
            await page.say(from_survivor[n])
            await advocates[i].say(case_room, from_advocate[n])
            if n == lines // 3 and i == 0:
                killed.set()

    async def kill_then_restart() -> None:
        await killed.wait()
        fault_stack.kill_bot()  # SIGKILL while all three chats are writing
        await asyncio.sleep(2)
        fault_stack.start_bot()

    await asyncio.gather(kill_then_restart(), *(talk(i) for i in range(len(pages))))
    try:
        for i, page in enumerate(pages):
            from_survivor, from_advocate = said[i]
            case_room = chats[i][1]
            relayed = [f"Survivor: {t}" for t in from_survivor]
            await until(lambda: all(t in advocates[i].bodies(case_room) for t in relayed), 90,
                        f"chat {i}: the survivor's lines")
            await until(lambda: all(t in page.texts("advocate") for t in from_advocate), 90, f"chat {i}: the advocate's lines")
        # Everything has arrived: now check nothing came twice, and the order.
        await asyncio.sleep(2)
        for i, page in enumerate(pages):
            from_survivor, from_advocate = said[i]
            relayed = [f"Survivor: {t}" for t in from_survivor]
            assert [b for b in advocates[i].bodies(chats[i][1]) if b in relayed] == relayed, f"chat {i}"
            assert [t for t in page.texts("advocate") if t in from_advocate] == from_advocate, f"chat {i}"
    finally:
        for advocate, (ref, case_room) in zip(advocates, chats):
            await advocate.say(case_room, "!close")
        for page in pages:
            await until(lambda page=page: page.first("ended"), 60, "ended")
            await page.close()
        for advocate in advocates[1:]:
            await advocate.close()
    for ref, case_room in chats:
        await assert_erased(fault_stack, ref, case_room)


async def test_homeserver_restarted_mid_chat_both_sides_recover_and_the_chat_goes_on(fault_stack, staff, canaries):
    page = Survivor(fault_stack.page_url)
    ref, case_room = await claim_new_chat(fault_stack, staff, page)
    canaries += ["before the restart 51d2", "during the restart 51d2", "after the restart 51d2",
                 "advocate after the restart 51d2"]
    try:
        await page.say("before the restart 51d2")
        await until(lambda: "Survivor: before the restart 51d2" in staff.bodies(case_room), 30, "relay")
        fault_stack.synapse.stop()
        # The page's message cannot be delivered now: it is told, and nothing is sent in clear.
        await page.send({"type": "say", "id": "during-51d2", "text": "during the restart 51d2"})
        await until(lambda: any(f.get("id") == "during-51d2" and f.get("type") in ("error", "ack")
                                for f in page.frames), 120, "an answer to the message sent while down")
        failed = any(f.get("id") == "during-51d2" and f.get("code") == "send_failed" for f in page.frames)
        assert failed
        await fault_stack.synapse.start()
        # The page sends it again with the same id (as the page does): delivered once.
        await page.say("during the restart 51d2", "during-51d2")
        await page.say("after the restart 51d2")
        await until(lambda: "Survivor: after the restart 51d2" in staff.bodies(case_room), 120, "relay after restart")
        await staff.say(case_room, "advocate after the restart 51d2")
        await until(lambda: "advocate after the restart 51d2" in page.texts("advocate"), 120, "relay to the page")
        bodies = staff.bodies(case_room)
        assert bodies.count("Survivor: during the restart 51d2") == 1
        assert bodies.index("Survivor: during the restart 51d2") < bodies.index("Survivor: after the restart 51d2")
        assert not page.first("ended")  # the chat went on
    finally:
        await staff.say(case_room, "!close")
        await until(lambda: page.first("ended"), 60, "ended")
        await page.close()
    await assert_erased(fault_stack, ref, case_room)


async def test_a_survivor_line_the_case_room_refused_is_named_to_the_survivor_who_sends_it_again(fault_stack, staff,
                                                                                              canaries):
    """The homeserver refuses the bot's relay of one survivor line into the case room (403, not
    tried again). The page had it as delivered, so the survivor is told which line did not reach
    the advocate, and the advocate that a line is missing; sent again, it arrives once."""
    page = Survivor(fault_stack.page_url)
    ref, case_room = await claim_new_chat(fault_stack, staff, page)
    line = "please do not call my home number 7f3a, only my work phone after five"
    canaries.append(line)
    try:
        await until(lambda: "An advocate has joined the chat." in page.texts("hotline"), 30, "joined")
        # The refusal takes the bot's next event in the case room: first its notices of the claim
        # are all in (the safety prompt is the last).
        await until(lambda: any(b.startswith("Safety check-in:") for b in staff.bodies(case_room)), 30, "the notices")
        synapse_faults.refuse_next(fault_stack.refusals, fault_stack.accounts.bot.user_id, case_room)
        await page.say(line)
        # The start of the line names it (60 characters at most, cut at a word), no more.
        notice = ("Because of a technical problem, this message did not reach the advocate: "
                  "\u201cplease do not call my home number 7f3a, only my work phone\u2026\u201d. "
                  "Please send it again. If you are in danger right now, call +1 555 0100.")
        await until(lambda: notice in page.texts("hotline"), 30, "the survivor told")
        await until(lambda: any(b.startswith("A message from the survivor could not be shown here (reference ")
                                for b in staff.bodies(case_room)), 30, "the advocate told")
        assert synapse_faults.refusals_left(fault_stack.refusals) == 0
        assert f"Survivor: {line}" not in staff.bodies(case_room)
        await page.say(line)  # a new message on the page (a new id), as the survivor sends it again
        await until(lambda: f"Survivor: {line}" in staff.bodies(case_room), 30, "the line sent again")
        await staff.say(case_room, "got it, thank you")
        await until(lambda: "got it, thank you" in page.texts("advocate"), 30, "the chat goes on")
        assert staff.bodies(case_room).count(f"Survivor: {line}") == 1
    finally:
        await staff.say(case_room, "!close")
        await until(lambda: page.first("ended"), 60, "ended")
        await page.close()
    await assert_erased(fault_stack, ref, case_room)


async def test_an_advocate_line_the_survivor_room_refused_is_reported_in_the_case_room(fault_stack, staff, canaries):
    page = Survivor(fault_stack.page_url)
    ref, case_room = await claim_new_chat(fault_stack, staff, page)
    survivor_room, _ = open_chat(fault_stack, ref)
    line = "call the shelter at nine 5be1"
    canaries.append(line)
    try:
        await until(lambda: "An advocate has joined the chat." in page.texts("hotline"), 30, "joined")
        synapse_faults.refuse_next(fault_stack.refusals, fault_stack.accounts.bot.user_id, survivor_room)
        await staff.say(case_room, line)
        await until(lambda: any(b.startswith("A message could not be delivered (reference ")
                                for b in staff.bodies(case_room)), 30, "the advocate told")
        assert line not in page.texts("advocate")
        await staff.say(case_room, line)
        await until(lambda: line in page.texts("advocate"), 30, "the line sent again")
        assert page.texts("advocate").count(line) == 1
    finally:
        await staff.say(case_room, "!close")
        await until(lambda: page.first("ended"), 60, "ended")
        await page.close()
    await assert_erased(fault_stack, ref, case_room)
