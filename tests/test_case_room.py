"""The case room on a real homeserver: what staff write reaches the survivor only as meant (replies,
edits, commands), and who is in the room (joins at once, roles, departures, closed accounts)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import RoomMessagesResponse, RoomMessageNotice

from hotline.devstack import Account, DevStack
from testkit.clients import (
    Advocate,
    Survivor,
    alerts_in,
    assert_erased,
    claim_new_chat,
    homeserver_rows,
    login,
    new_alert,
    bot_meta,
    routing,
    until,
)


async def send(client: Advocate, room: str, content: dict[str, Any]) -> str:
    """A message with content made by hand, as a Matrix client makes a reply or an edit."""
    response = await client.client.room_send(room, "m.room.message", content, ignore_unverified_devices=True)
    assert hasattr(response, "event_id"), response
    return response.event_id


async def bot_notice(client: Advocate, room: str, starts: str, bot: str) -> tuple[str, str]:
    """(event id, body) of the bot's notice in a room that starts with ``starts``."""
    response = await client.client.room_messages(room, limit=100)
    assert isinstance(response, RoomMessagesResponse), response
    return next((e.event_id, e.body) for e in response.chunk
                if isinstance(e, RoomMessageNotice) and e.sender == bot and e.body.startswith(starts))


def reply(to: str, quoted_sender: str, quoted: str, text: str) -> dict[str, Any]:
    """A reply with the spec's fallback: the original quoted in the body and in the formatted body."""
    fallback = "\n".join(f"> {line}" for line in f"<{quoted_sender}> {quoted}".splitlines())
    return {"msgtype": "m.text", "body": f"{fallback}\n\n{text}", "format": "org.matrix.custom.html",
            "formatted_body": f"<mx-reply><blockquote>{quoted}</blockquote></mx-reply>{text}",
            "m.relates_to": {"m.in_reply_to": {"event_id": to}}}


def edit(of: str, text: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": f"* {text}", "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": of}}


def page_text(survivor: Survivor) -> str:
    return json.dumps(survivor.frames, ensure_ascii=False)


async def test_replies_edits_and_commands_reach_the_survivor_only_as_meant(stack, advocate, survivor, canaries):
    canaries += ["I am here with you 4e5f", "see you at five 6a7b", "see you at six 8c9d", "take care 0e1f"]
    bot = stack.accounts.bot.user_id
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    # A reply to the bot's staff-only intro: only the answer reaches the page.
    intro_id, intro = await bot_notice(advocate, case_room, "Case room for ref", bot)
    await send(advocate, case_room, reply(intro_id, bot, intro, "I am here with you 4e5f"))
    await until(lambda: "I am here with you 4e5f" in survivor.texts("advocate"), 20, "the reply relayed")
    # An edit is not relayed (neither the "* " fallback nor the new text); the advocate is told.
    first = await send(advocate, case_room, {"msgtype": "m.text", "body": "see you at five 6a7b"})
    await until(lambda: "see you at five 6a7b" in survivor.texts("advocate"), 20, "the first version")
    await send(advocate, case_room, edit(first, "see you at six 8c9d"))
    await until(lambda: any(b.startswith("Edits do not reach the survivor") for b in advocate.bodies(case_room)),
                20, "the advocate told")
    # A command on a later line: not relayed, not carried out.
    await advocate.say(case_room, "take care 0e1f\n!say safety")
    await until(lambda: any(b.startswith("Not sent to the survivor") for b in advocate.bodies(case_room)), 20,
                "the advocate told")
    # Everything so far has been handled: the next relay arrives after it.
    await advocate.say(case_room, "still here")
    await until(lambda: "still here" in survivor.texts("advocate"), 20, "a later line")
    assert survivor.texts("advocate") == ["I am here with you 4e5f", "see you at five 6a7b", "still here"]
    shown = page_text(survivor)
    for staff_only in ("Case room for ref", bot, "see you at six", "take care 0e1f", "!say", "mx-reply"):
        assert staff_only not in shown
    # A command sent as an edit is carried out: here a typo corrected into !say safety.
    typo = await send(advocate, case_room, {"msgtype": "m.text", "body": "!sya safety"})
    await until(lambda: any(b.startswith("Unknown command !sya") for b in advocate.bodies(case_room)), 20, "typo")
    await send(advocate, case_room, edit(typo, "!say safety"))
    await until(lambda: any(t.startswith("Before we go on: are you safe") for t in survivor.texts("advocate")), 20,
                "the edited command carried out")
    # !close sent as a reply to the survivor's line closes the chat; nothing of it reaches the page.
    await survivor.say("are you there?")
    line = await until(lambda: next((b for b in advocate.bodies(case_room) if b == "Survivor: are you there?"), None),
                       20, "the survivor's line")
    line_id, _ = await event_with_body(advocate, case_room, line)
    await send(advocate, case_room, reply(line_id, bot, line, "!close"))
    await until(lambda: survivor.first("ended"), 30, "the chat ended")
    assert "!close" not in page_text(survivor)
    await assert_erased(stack, ref, case_room)


async def event_with_body(client: Advocate, room: str, body: str) -> tuple[str, str]:
    response = await client.client.room_messages(room, limit=100)
    assert isinstance(response, RoomMessagesResponse), response
    return next((e.event_id, e.body) for e in response.chunk if getattr(e, "body", None) == body)


async def test_a_handoff_note_never_reaches_the_dispatch_room(stack, advocate, survivor, canaries):
    note = "she prefers evenings 2b3c"
    canaries += [note]
    colleague = await login(stack, stack.accounts.advocates[1])
    dispatch = stack.accounts.dispatch_room
    try:
        ref, old_room = await claim_new_chat(stack, advocate, survivor)
        before = len(alerts_in(stack, colleague))
        await advocate.say(old_room, f"!transfer {note}")
        assert await new_alert(stack, colleague, before) == ref
        alert = alerts_in(stack, colleague)[before]
        assert "handoff note" in alert and note not in alert
        await colleague.say(dispatch, f"!claim {ref}")
        new_room = await until(lambda: colleague.find_room_with(f"Case room for ref {ref}"), 30, "new case room")
        await until(lambda: f"Handoff note from the previous advocate: {note}" in colleague.bodies(new_room), 20,
                    "the note in the new case room")
        for client in (advocate, colleague):
            assert not any(note in body for body in client.bodies(dispatch))
        await colleague.say(new_room, "!close")
        await assert_erased(stack, ref, new_room)  # the only room that held the note is purged
    finally:
        await colleague.close()


# ---------------------------------------------------------------- membership


async def bot_api(stack: DevStack, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The admin API with the bot's token (the bot is a server admin)."""
    token = bot_meta(stack, "access_token")
    async with aiohttp.ClientSession() as http:
        async with http.request(method, stack.homeserver.url + path, json=body or {},
                                headers={"Authorization": f"Bearer {token}"}) as response:
            data = await response.json(content_type=None)
            assert response.status < 400, (path, response.status, data)
            return data


async def add_staff(stack: DevStack, localpart: str, room: str) -> Account:
    """Another staff member in a role's room (as `hotline admin staff add` does)."""
    user_id = f"@{localpart}:{stack.homeserver.server_name}"
    account = Account(user_id, "pw-" + localpart + "-7f3a9c")
    await bot_api(stack, "PUT", f"/_synapse/admin/v2/users/{quote(user_id)}", {"password": account.password})
    await bot_api(stack, "POST", f"/_synapse/admin/v1/join/{quote(room)}", {"user_id": user_id})
    return account


def membership(stack: DevStack, room: str, user: str) -> str | None:
    rows = stack.homeserver.query(
        "SELECT membership FROM local_current_membership WHERE room_id = ? AND user_id = ?", [room, user])
    return rows[0][0] if rows else None


async def test_two_supervisors_join_at_once_one_is_let_in_and_announced(stack, advocate, survivor, canaries):
    canaries += ["words of the supervisor 5d6e"]
    sup_room = stack.accounts.supervisors_room
    # Supervisors of their own: other tests count the devices of the stack's first supervisor.
    first = await login(stack, await add_staff(stack, "supervisor2", sup_room))
    second = await login(stack, await add_staff(stack, "supervisor3", sup_room))
    try:
        ref, case_room = await claim_new_chat(stack, advocate, survivor)
        await advocate.say(case_room, "!supervisor")
        for client in (first, second):
            await until(lambda c=client: any(f"!join {ref}" in b for b in c.bodies(sup_room)), 20, "the request")
        await asyncio.gather(first.say(sup_room, f"!join {ref}"), second.say(sup_room, f"!join {ref}"))
        await until(lambda: "A supervisor has joined the chat." in survivor.texts("hotline"), 30, "announced")
        users = {first.client.user_id: first, second.client.user_id: second}
        # The bot answers both in the supervisors room: one is invited, the other told who is joining.

        def answers() -> list[str]:
            return [b for b in first.bodies(sup_room)
                    if b == f"You are invited to the case room of chat {ref}." or f"is already joining chat {ref}" in b]

        both = await until(lambda: answers() if len(answers()) >= 2 else None, 20, "both answered")
        assert sorted(b.startswith("You are invited") for b in both) == [False, True], both
        inside = next(u for u in users if any(b.startswith(f"{u} is already joining") for b in both))
        (outside,) = set(users) - {inside}
        await until(lambda: membership(stack, case_room, inside) == "join", 20, "the supervisor in the room")
        await users[inside].say(case_room, "words of the supervisor 5d6e")
        await until(lambda: "words of the supervisor 5d6e" in survivor.texts("supervisor"), 20, "as Supervisor")
        # Everyone in the room was announced, once: the other supervisor was never let in.
        assert membership(stack, case_room, outside) is None
        assert survivor.texts("hotline").count("A supervisor has joined the chat.") == 1
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await first.close()
        await second.close()


async def test_a_supervisor_after_interpreter_consent_is_a_supervisor(stack, advocate, survivor, canaries):
    canaries += ["a supervisor speaking 7a8b"]
    supervisor = await login(stack, await add_staff(stack, "supervisor4", stack.accounts.supervisors_room))
    try:
        ref, case_room = await claim_new_chat(stack, advocate, survivor)
        await advocate.say(case_room, "!interpreter es")
        await until(lambda: survivor.first("ask"), 20, "the question on the page")
        await survivor.send({"type": "answer", "question": "interpreter_consent", "value": "yes"})
        await until(lambda: any("agreed to an interpreter" in b for b in advocate.bodies(case_room)), 20, "consent")
        await supervisor.say(stack.accounts.supervisors_room, f"!join {ref}")
        await until(lambda: "A supervisor has joined the chat." in survivor.texts("hotline"), 30, "announced")
        await supervisor.say(case_room, "a supervisor speaking 7a8b")
        await until(lambda: "a supervisor speaking 7a8b" in survivor.texts("supervisor"), 20, "as Supervisor")
        assert not any(t.startswith("An interpreter has joined") for t in survivor.texts("hotline"))
        assert survivor.texts("interpreter") == []
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await supervisor.close()


async def test_someone_let_in_around_the_bot_is_removed_unannounced(stack, advocate, survivor):
    outsider = await login(stack, stack.accounts.advocates[1])
    try:
        ref, case_room = await claim_new_chat(stack, advocate, survivor)
        announced = list(survivor.texts("hotline"))
        # A server admin forces someone into the case room (the admin API invites with the bot's power).
        await bot_api(stack, "POST", f"/_synapse/admin/v1/join/{quote(case_room)}",
                      {"user_id": outsider.client.user_id})
        await until(lambda: any(b.endswith("joined this room without the bot's invitation and was removed.")
                                for b in advocate.bodies(case_room)), 30, "removed")
        assert membership(stack, case_room, outsider.client.user_id) == "leave"
        await advocate.say(case_room, "after the removal")
        await until(lambda: "after the removal" in survivor.texts("advocate"), 20, "the chat goes on")
        assert survivor.texts("hotline") == announced  # nobody was announced
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await outsider.close()


async def test_an_advocate_who_leaves_sends_the_chat_back_to_the_front_of_the_queue(stack, advocate, survivor,
                                                                                    canaries):
    canaries += ["while nobody is there 9c0d"]
    colleague = await login(stack, stack.accounts.advocates[1])
    dispatch = stack.accounts.dispatch_room
    try:
        ref, old_room = await claim_new_chat(stack, advocate, survivor)
        await until(lambda: "An advocate has joined the chat." in survivor.texts("hotline"), 20, "joined")
        await advocate.client.room_typing(old_room, True, timeout=30_000)
        await until(lambda: {"type": "typing", "active": True} in survivor.frames, 20, "typing shown")
        before = len(alerts_in(stack, colleague))
        await advocate.client.room_leave(old_room)
        assert await new_alert(stack, colleague, before) == ref
        assert "its advocate left the chat, first in line" in alerts_in(stack, colleague)[before]
        await until(lambda: told_advocate_gone(survivor), 20, "the survivor told")
        # "Advocate is typing…" ends before the survivor reads that the advocate is gone.
        stopped = await until(lambda: next((i for i, f in enumerate(survivor.frames)
                                            if f == {"type": "typing", "active": False}), None), 60, "typing ended")
        told = next(i for i, f in enumerate(survivor.frames) if f.get("type") == "message"
                    and f.get("text", "").startswith("The advocate is no longer in this chat"))
        assert stopped < told
        with routing(stack) as view:
            chat = view.chat(ref)
        assert (chat.phase, chat.advocate) == ("waiting", None)
        await until(lambda: homeserver_rows(stack.homeserver, [old_room])["rooms"] == 0, 60, "the old room purged")
        await survivor.say("while nobody is there 9c0d")
        await colleague.say(dispatch, f"!claim {ref}")
        new_room = await until(lambda: colleague.find_room_with(f"Case room for ref {ref}"), 30, "new case room")
        await until(lambda: "Survivor: while nobody is there 9c0d" in colleague.bodies(new_room), 30, "the backlog")
        await colleague.say(new_room, "I am here now")
        await until(lambda: "I am here now" in survivor.texts("advocate"), 20, "the chat goes on")
        await colleague.say(new_room, "!close")
        await assert_erased(stack, ref, new_room)
    finally:
        await colleague.close()


def told_advocate_gone(survivor: Survivor) -> bool:
    return any(t.startswith("The advocate is no longer in this chat") for t in survivor.texts("hotline"))


def hotline_admin(stack: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hotline", "admin", "--bot-config", str(stack.root / "bot.env"),
                           *args], capture_output=True, text=True, timeout=120)


async def test_an_advocate_removed_by_an_admin_does_not_strand_the_chat(stack, advocate, survivor, canaries):
    user_id = f"@leaving1:{stack.homeserver.server_name}"
    added = hotline_admin(stack, "staff", "add", user_id, "--role", "advocate")
    assert added.returncode == 0, added.stderr
    password = next(line.split(": ", 1)[1] for line in added.stdout.splitlines()
                    if line.startswith("One-time password"))
    leaving = Advocate(stack.homeserver.url, user_id, password)
    await leaving.login()
    try:
        ref, old_room = await claim_new_chat(stack, leaving, survivor)
        await until(lambda: "An advocate has joined the chat." in survivor.texts("hotline"), 20, "joined")
        before = len(alerts_in(stack, advocate))
        removed = hotline_admin(stack, "staff", "remove", user_id)
        assert removed.returncode == 0, removed.stderr
        assert await new_alert(stack, advocate, before) == ref
        await until(lambda: told_advocate_gone(survivor), 30, "the survivor told")
        await until(lambda: homeserver_rows(stack.homeserver, [old_room])["rooms"] == 0, 60, "the old room purged")
        await advocate.say(stack.accounts.dispatch_room, f"!claim {ref}")
        new_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "new case room")
        await advocate.say(new_room, "!close")
        await assert_erased(stack, ref, new_room)
    finally:
        await leaving.close()
