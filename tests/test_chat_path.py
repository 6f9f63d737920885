"""The whole chat path on a real homeserver: page → gateway → bot → advocate and back, then close."""

from __future__ import annotations

import asyncio
import re

from testkit.clients import (
    Advocate,
    Survivor,
    alerted_refs,
    assert_erased,
    bot_crypto_mentions,
    bot_room_keys,
    chat_row_exists,
    claim_new_chat,
    open_chat,
    remember,
    until,
)

MIXED_SCRIPTS = [
    "مرحبا، أحتاج إلى مساعدة من فضلك",
    "नमस्ते, मुझे मदद चाहिए",
    "你好，我需要帮助",
    "I'm okay for now 🙂👍🏽 family: 👨‍👩‍👧",
    "e\u0301 combining mark and zero\u200bwidth",
    "long " + "x" * 4995,
]


async def test_whole_chat_both_ways_then_close_and_erase(stack, advocate, survivor, canaries):
    canaries += ["written while waiting 71c3"] + MIXED_SCRIPTS + ["advocate reply 5d1e"]
    dispatch = stack.accounts.dispatch_room
    await survivor.start()
    await until(lambda: survivor.texts("hotline"), 20, "the welcome notice")
    await survivor.say("written while waiting 71c3")
    alert = await until(lambda: [b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")], 30, "alert")
    assert "written while waiting" not in " ".join(advocate.bodies(dispatch))  # never content in dispatch
    ref = re.search(r"ref (\w{4})", alert[-1]).group(1)
    remember(stack, ref)
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

    assert bot_room_keys(stack, [case_room, open_chat(stack, ref)[0]]) > 0  # so that erasing them means something
    # ... and the bot knows (and trusts) the survivor's device, which the erase forgets.
    assert "trusted_devices" in " ".join(bot_crypto_mentions(stack.root / "bot", open_chat(stack, ref)[1]))
    # Room statistics are on (Synapse deprecates turning them off); they hold no name or topic.
    assert stack.homeserver.query("SELECT COUNT(*) FROM room_stats_state WHERE room_id IN (?, ?) AND "
                                  "(name IS NOT NULL OR topic IS NOT NULL)", [case_room, open_chat(stack, ref)[0]]) \
        == [(0,)]
    # The bot and the survivor's account are programs: the homeserver keeps no notifications for
    # them (their master push rule is on), so no push-action rows tie them to the chat's events.
    survivor_room, survivor_account = open_chat(stack, ref)
    for user in (stack.accounts.bot.user_id, survivor_account):
        for table in ("event_push_actions", "event_push_actions_staging"):
            # (the bot's invites to staff rooms at bootstrap came before its first start muted it)
            rows = stack.homeserver.query(
                f"SELECT COUNT(*) FROM {table} WHERE user_id = ? AND event_id IN "
                "(SELECT event_id FROM events WHERE room_id IN (?, ?))", [user, survivor_room, case_room])
            assert rows[0][0] == 0
    await advocate.say(case_room, "!close")
    await until(lambda: survivor.first("ended"), 20, "the ended frame")
    await assert_erased(stack, ref, case_room)


async def test_survivors_starting_together_each_get_notices_an_alert_and_an_erase(stack, advocate, canaries):
    """The bot joins several survivor rooms side by side; nobody's start is lost or mixed up."""
    dispatch = stack.accounts.dispatch_room
    bodies_before = len(advocate.bodies(dispatch))
    survivors = [Survivor(stack.page_url) for _ in range(5)]
    try:
        await asyncio.gather(*(s.start() for s in survivors))
        for page in survivors:
            await until(lambda page=page: len(page.texts("hotline")) >= 2, 60, "the notices")
            assert page.texts("hotline")[0].startswith("Before you share anything")  # the rights come first
        # Alerts for chats that start together are grouped (one alert listing several refs).
        await until(lambda: len(set(alerted_refs(advocate.bodies(dispatch)[bodies_before:]))) >= 5, 60,
                    "five chats announced")
        refs = set(alerted_refs(advocate.bodies(dispatch)[bodies_before:]))
        assert len(refs) == 5
        assert len(alerted_refs(advocate.bodies(dispatch)[bodies_before:])) == 5  # each announced once
        for ref in refs:
            remember(stack, ref)
    finally:
        for page in survivors:
            await page.send({"type": "end"})
        for page in survivors:
            await until(lambda page=page: page.first("ended"), 30, "the ended frame")
            await page.close()
    for ref in refs:
        await assert_erased(stack, ref, None)


async def test_end_chat_on_the_page_closes_and_erases(stack, advocate, survivor, canaries):
    canaries.append("please end this 9a0f")
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    await survivor.say("please end this 9a0f")
    await until(lambda: "Survivor: please end this 9a0f" in advocate.bodies(case_room), 20, "relay")
    await survivor.send({"type": "end"})
    await until(lambda: survivor.first("ended"), 20, "the ended frame")
    await until(lambda: any("ended chat" in b for b in advocate.bodies(case_room)), 20, "the advocate is told")
    await assert_erased(stack, ref, case_room)


async def test_lost_connection_closes_after_the_grace_period(stack, advocate, survivor, canaries):
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    await survivor.drop()
    await until(lambda: any("connection dropped" in b for b in advocate.bodies(case_room)), 20, "drop notice")
    await until(lambda: any("did not come back" in b for b in advocate.bodies(case_room)), 30, "close notice")
    await assert_erased(stack, ref, case_room)
    # The page cannot come back to an erased chat.
    await survivor.resume()
    await until(lambda: survivor.frames[-1].get("type") == "ended", 10, "ended on resume")


async def test_reconnect_within_grace_resumes_and_loses_nothing(stack, advocate, survivor, canaries):
    canaries += ["while you were away 3b7c", "sent twice e41d"]
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    await survivor.drop()
    await until(lambda: any("connection dropped" in b for b in advocate.bodies(case_room)), 20, "drop notice")
    await advocate.say(case_room, "while you were away 3b7c")
    await survivor.resume()
    await until(lambda: survivor.first("resumed"), 10, "resumed")
    await until(lambda: "while you were away 3b7c" in survivor.texts("advocate"), 20, "the missed message")
    await until(lambda: any("connected again" in b for b in advocate.bodies(case_room)), 20, "reconnect notice")
    # A page that did not see its ack sends the same frame again: delivered once.
    await survivor.say("sent twice e41d", frame_id="dup1")
    await survivor.say("sent twice e41d", frame_id="dup1")
    await advocate.say(case_room, "marker after duplicate")
    await until(lambda: "marker after duplicate" in survivor.texts("advocate"), 20, "marker")
    await until(lambda: "Survivor: sent twice e41d" in advocate.bodies(case_room), 20, "relay")
    assert advocate.bodies(case_room).count("Survivor: sent twice e41d") == 1
    await advocate.say(case_room, "!close")
    await assert_erased(stack, ref, case_room)


async def test_commands_typed_by_the_survivor_are_just_text(stack, advocate, survivor, canaries):
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    await survivor.say("!close")
    await survivor.say("!claim " + ref)
    await until(lambda: f"Survivor: !claim {ref}" in advocate.bodies(case_room), 20, "relay")
    assert "Survivor: !close" in advocate.bodies(case_room)
    assert chat_row_exists(stack, ref) and not survivor.first("ended")
    await advocate.say(case_room, "!close")
    await assert_erased(stack, ref, case_room)


async def test_staff_commands_are_not_relayed_and_unknown_ones_are_answered(stack, advocate, survivor, canaries):
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    await advocate.say(case_room, "!frobnicate now")
    await until(lambda: any("Unknown command !frobnicate" in b for b in advocate.bodies(case_room)), 20, "answer")
    await advocate.say(case_room, "!help")
    await until(lambda: any(b.startswith("Commands you can use:") for b in advocate.bodies(case_room)), 20, "help")
    await advocate.say(case_room, "visible reply")
    await until(lambda: "visible reply" in survivor.texts("advocate"), 20, "relay")
    assert not any(t.startswith("!") for t in survivor.texts())
    await advocate.say(case_room, "!close")
    await assert_erased(stack, ref, case_room)


async def test_claims_refused_for_outsiders_and_taken_chats(stack, advocate, survivor, canaries):
    dispatch = stack.accounts.dispatch_room
    second = Advocate(stack.homeserver.url, stack.accounts.advocates[1].user_id, stack.accounts.advocates[1].password)
    admin = Advocate(stack.homeserver.url, stack.accounts.admins[0].user_id, stack.accounts.admins[0].password)
    await second.login()
    await admin.login()
    try:
        await survivor.start()
        alert = await until(lambda: [b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")], 30, "alert")
        ref = re.search(r"ref (\w{4})", alert[-1]).group(1)
        remember(stack, ref)
        # The admin is not in the dispatch room: not an advocate.
        await admin.say(stack.accounts.admin_room, f"!claim {ref}")
        await until(lambda: any("Only advocates" in b for b in admin.bodies(stack.accounts.admin_room)), 20, "refusal")
        assert open_chat(stack, ref)
        await advocate.say(dispatch, f"!claim {ref}")
        case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "case room")
        await second.say(dispatch, f"!claim {ref}")
        await until(lambda: any(f"{ref} is already taken" in b for b in second.bodies(dispatch)), 20, "already taken")
        await second.say(dispatch, "!claim QQQQ")
        await until(lambda: any("no waiting chat with ref QQQQ" in b for b in second.bodies(dispatch)), 20, "unknown")
        assert case_room not in second.client.rooms
        # Only the assigned advocate can close it.
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await second.close()
        await admin.close()


async def test_invites_from_outside_the_namespace_do_nothing(stack, advocate, survivor, canaries):
    admin = Advocate(stack.homeserver.url, stack.accounts.admins[0].user_id, stack.accounts.admins[0].password)
    await admin.login()
    try:
        created = await admin.client.room_create(invite=[stack.accounts.bot.user_id])
        room_id = created.room_id
        # A chat started afterwards is handled, so the bot has seen the invite by then.
        ref, case_room = await claim_new_chat(stack, advocate, survivor)
        members = await admin.client.joined_members(room_id)
        assert stack.accounts.bot.user_id not in [m.user_id for m in members.members]
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await admin.close()


async def test_bot_killed_and_restarted_loses_and_duplicates_nothing(stack, advocate, survivor, canaries):
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    await until(lambda: "An advocate has joined the chat." in survivor.texts("hotline"), 20, "joined notice")
    from_survivor = [f"s{i:02d} restart check" for i in range(30)]
    from_advocate = [f"a{i:02d} restart check" for i in range(30)]
    canaries += from_survivor + from_advocate

    async def talk(start: int, stop: int) -> None:
        for i in range(start, stop):
            await survivor.say(from_survivor[i])
            await advocate.say(case_room, from_advocate[i])

    await talk(0, 10)
    stack.kill_bot()  # SIGKILL in the middle of the conversation
    await talk(10, 20)  # while the bot is down: stored encrypted on the homeserver, relayed later
    stack.start_bot()
    await talk(20, 30)
    relayed = [f"Survivor: {t}" for t in from_survivor]
    await until(lambda: all(t in advocate.bodies(case_room) for t in relayed), 60, "every survivor message")
    await until(lambda: all(t in survivor.texts("advocate") for t in from_advocate), 60, "every advocate message")
    await advocate.say(case_room, "after restart marker")
    await until(lambda: "after restart marker" in survivor.texts("advocate"), 30, "marker")
    case_bodies = advocate.bodies(case_room)
    assert [b for b in case_bodies if b in relayed] == relayed  # each once, in order
    assert [t for t in survivor.texts("advocate") if t in from_advocate] == from_advocate
    await advocate.say(case_room, "!close")
    await assert_erased(stack, ref, case_room)
