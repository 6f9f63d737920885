"""Team work on a real homeserver: supervisors, transfers, several chats, trusted staff devices."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bot.commands import Invalid, parse
from bot.conversation import PERMISSIONS, StaffRole, permission_for
from bot.messages import STAFF
from hotline.devstack import DevStack
from tests.conftest import running
from tests.test_permissions import Place, expected_refusal
from testkit.clients import (
    Advocate,
    Survivor,
    alerts_in,
    assert_erased,
    claim_new_chat,
    homeserver_rows,
    login,
    new_alert,
    until,
)


async def test_supervisor_joins_is_announced_and_speaks_as_supervisor(stack, advocate, survivor, canaries):
    canaries += ["a hard moment 1a2b", "supervisor words 3c4d"]
    supervisor = await login(stack, stack.accounts.supervisors[0])
    try:
        ref, case_room = await claim_new_chat(stack, advocate, survivor)
        await advocate.say(case_room, "!supervisor")
        sup_room = stack.accounts.supervisors_room
        await until(lambda: any(f"!join {ref}" in b for b in supervisor.bodies(sup_room)), 20, "the request")
        await supervisor.say(sup_room, f"!join {ref}")
        await until(lambda: "A supervisor has joined the chat." in survivor.texts("hotline"), 30, "announcement")
        await survivor.say("a hard moment 1a2b")
        await until(lambda: "Survivor: a hard moment 1a2b" in supervisor.bodies(case_room), 20, "supervisor reads")
        await supervisor.say(case_room, "supervisor words 3c4d")
        await until(lambda: "supervisor words 3c4d" in survivor.texts("supervisor"), 20, "labelled Supervisor")
        # An advocate outside the chat cannot join it.
        other = await login(stack, stack.accounts.advocates[1])
        try:
            await other.say(stack.accounts.dispatch_room, f"!join {ref}")
            await until(lambda: any(b.startswith("Only supervisors") for b in other.bodies(stack.accounts.dispatch_room)),
                        20, "refusal")
        finally:
            await other.close()
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await supervisor.close()


async def test_transfer_new_advocate_reads_history_old_one_loses_access(stack, advocate, survivor, canaries):
    canaries += ["first words e5f6", "first reply a7b8", "to the new advocate c9d0"]
    colleague = await login(stack, stack.accounts.advocates[1])
    try:
        ref, old_room = await claim_new_chat(stack, advocate, survivor)
        await survivor.say("first words e5f6")
        await advocate.say(old_room, "first reply a7b8")
        await until(lambda: "first reply a7b8" in survivor.texts("advocate"), 20, "reply")
        await advocate.say(old_room, "!transfer she prefers evenings")
        await until(lambda: any("continue this chat" in t for t in survivor.texts("hotline")), 20, "survivor told")
        dispatch = stack.accounts.dispatch_room
        await until(lambda: any("transferred, first in line" in b and "handoff note" in b
                                for b in colleague.bodies(dispatch)), 20, "the transfer alert")
        assert not any("she prefers evenings" in b for b in colleague.bodies(dispatch))  # never erased there
        await until(lambda: homeserver_rows(stack.homeserver, [old_room])["rooms"] == 0, 60,
                    "the old case room purged")
        await survivor.say("to the new advocate c9d0")
        await colleague.say(dispatch, f"!claim {ref}")
        new_room = await until(lambda: colleague.find_room_with(f"Case room for ref {ref}"), 30, "new case room")
        assert new_room != old_room
        await until(lambda: "Survivor: to the new advocate c9d0" in colleague.bodies(new_room), 30, "history")
        history = colleague.bodies(new_room)
        assert "Survivor: first words e5f6" in history and "Advocate (earlier): first reply a7b8" in history
        assert any("she prefers evenings" in b for b in history)  # the handoff note
        await until(lambda: "You are now chatting with a different advocate." in survivor.texts("hotline"), 20,
                    "new advocate notice")
        await colleague.say(new_room, "hello from the new advocate")
        await until(lambda: "hello from the new advocate" in survivor.texts("advocate"), 20, "relay")
        texts = [f.get("text") for f in survivor.frames if f.get("type") == "message"]
        assert texts.index("You are now chatting with a different advocate.") < texts.index("hello from the new advocate")
        assert "Survivor: to the new advocate c9d0" not in advocate.bodies(old_room)
        await colleague.say(new_room, "!close")
        await assert_erased(stack, ref, new_room)
    finally:
        await colleague.close()


async def test_several_chats_and_the_list(stack, advocate):
    pages = [Survivor(stack.page_url) for _ in range(2)]
    try:
        refs, rooms = [], []
        for page in pages:
            ref, room = await claim_new_chat(stack, advocate, page)
            refs.append(ref)
            rooms.append(room)
        await advocate.say(stack.accounts.dispatch_room, "!chats")
        listing = await until(lambda: next((b for b in advocate.bodies(stack.accounts.dispatch_room)
                                            if b.startswith("Your open chats")), None), 20, "the list")
        assert all(ref in listing for ref in refs)
        for ref, room in zip(refs, rooms, strict=True):
            await advocate.say(room, "!close")
            await assert_erased(stack, ref, room)
    finally:
        for page in pages:
            await page.close()


@pytest.fixture(scope="module")
def strict_stack():
    """Staff sessions that their owner did not cross-sign get no keys until approved (the default)."""
    root = Path(tempfile.mkdtemp(prefix="hotline-devices-"))
    yield from running(DevStack(root / "stack", advocates=1, settings={"trust_new_staff_devices": "false"}))


async def test_an_unverified_staff_session_gets_no_keys_until_approved(strict_stack, canaries):
    canaries += ["before approval 0f1e", "after approval 2d3c"]
    stack = strict_stack
    account = stack.accounts.advocates[0]
    first = await login(stack, account)
    admin = await login(stack, stack.accounts.admins[0])
    page = Survivor(stack.page_url)
    second = None
    try:
        ref, case_room = await claim_new_chat(stack, first, page)  # cross-signed: trusted
        second = Advocate(stack.homeserver.url, account.user_id, account.password, cross_signed=False)
        await second.login()
        device = second.client.device_id
        await page.say("before approval 0f1e")
        await until(lambda: "Survivor: before approval 0f1e" in first.bodies(case_room), 30, "first device reads")
        admin_room = stack.accounts.admin_room
        await until(lambda: any(device in b and "!approve" in b for b in admin.bodies(admin_room)), 30,
                    "the announcement")
        await admin.say(admin_room, "!devices")
        await until(lambda: any(b.startswith("Staff devices held back") and device in b
                                for b in admin.bodies(admin_room)), 20, "the list")
        await admin.say(admin_room, f"!approve {account.user_id} {device}")
        await until(lambda: any(b.startswith(f"Device {device}") for b in admin.bodies(admin_room)), 20, "approved")
        await page.say("after approval 2d3c")
        await until(lambda: "Survivor: after approval 2d3c" in second.bodies(case_room), 30, "second device reads")
        assert "Survivor: before approval 0f1e" not in second.bodies(case_room)
        await first.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        for client in (first, admin, second):
            if client is not None:
                await client.close()
        await page.close()


@pytest.mark.parametrize("consent", ["yes", "no"])
async def test_interpreter_joins_only_with_the_survivors_consent(stack, advocate, survivor, consent, canaries):
    canaries += ["hola, necesito ayuda 5e6f"]
    interpreter = await login(stack, stack.accounts.interpreters[0])
    try:
        int_room = stack.accounts.interpreters_room
        await interpreter.say(int_room, "!languages es")
        await until(lambda: any(b.startswith("Noted: you interpret es") for b in interpreter.bodies(int_room)), 20,
                    "languages noted")
        ref, case_room = await claim_new_chat(stack, advocate, survivor)
        await advocate.say(case_room, "!interpreter es")
        await until(lambda: survivor.first("ask"), 20, "the question on the page")
        assert survivor.first("ask")["question"] == "interpreter_consent"
        await survivor.send({"type": "answer", "question": "interpreter_consent", "value": consent})
        await until(lambda: survivor.first("answered"), 20, "answered")
        if consent == "no":
            await until(lambda: any("said no to an interpreter" in b for b in advocate.bodies(case_room)), 20, "no")
            await interpreter.say(int_room, f"!join {ref}")
            await until(lambda: any(b.startswith("Only supervisors") for b in interpreter.bodies(int_room)), 20,
                        "refused")
        else:
            await until(lambda: any(f"!join {ref}" in b and stack.accounts.interpreters[0].user_id in b
                                    for b in interpreter.bodies(int_room)), 20, "the request, naming them")
            await interpreter.say(int_room, f"!join {ref}")
            await until(lambda: any(t.startswith("An interpreter has joined") for t in survivor.texts("hotline")), 30,
                        "announced")
            await survivor.say("hola, necesito ayuda 5e6f")
            await until(lambda: "Survivor: hola, necesito ayuda 5e6f" in interpreter.bodies(case_room), 20, "reads")
            await interpreter.say(case_room, "She says she needs help.")
            await until(lambda: "She says she needs help." in survivor.texts("interpreter"), 20, "labelled")
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await interpreter.close()


async def test_code_word_set_verify_rotate_never_seen_by_staff_or_logs(stack, advocate, canaries):
    word, new_word = "blue heron 7741", "quiet river 2290"
    canaries += [word, new_word]

    async def ask_and_answer(page: Survivor, case_room: str, command: str, value: str, asked: int) -> None:
        await advocate.say(case_room, command)
        await until(lambda: len([f for f in page.frames if f.get("type") == "ask"]) >= asked, 20, "the page asks")
        question = [f for f in page.frames if f.get("type") == "ask"][-1]["question"]
        await page.send({"type": "answer", "question": question, "value": value})

    first = Survivor(stack.page_url)
    try:
        ref, case_room = await claim_new_chat(stack, advocate, first)
        await ask_and_answer(first, case_room, "!codeword new", word, 1)
        note = await until(lambda: next((b for b in advocate.bodies(case_room) if b.startswith("Code word set")), None),
                           30, "set")
        case = note.split("case ")[1].split(" ")[0]
        await until(lambda: any(case in t for t in first.texts("hotline")), 20, "the survivor sees the case")
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await first.close()
    # A later chat: the advocate checks the code word; a wrong one first.
    later = Survivor(stack.page_url)
    try:
        ref, case_room = await claim_new_chat(stack, advocate, later)
        await ask_and_answer(later, case_room, f"!codeword verify {case}", "wrong word", 1)
        await until(lambda: "Does not match." in advocate.bodies(case_room), 30, "mismatch")
        await advocate.say(case_room, f"!codeword rotate {case}")
        await until(lambda: any(b.startswith("Verify the code word") for b in advocate.bodies(case_room)), 20, "guard")
        await ask_and_answer(later, case_room, f"!codeword verify {case}", word.upper(), 2)
        await until(lambda: any(b.startswith(f"Matches case {case}") for b in advocate.bodies(case_room)), 30, "match")
        await ask_and_answer(later, case_room, f"!codeword rotate {case}", new_word, 3)
        await until(lambda: any(b.startswith(f"New code word saved for case {case}") for b in advocate.bodies(case_room)),
                    30, "rotated")
        everything = " ".join(body for room in advocate.messages for body in advocate.bodies(room))
        assert word.lower() not in everything.lower() and new_word not in everything
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await later.close()


async def ask_bot(client: Advocate, room: str, bot: str, text: str) -> str:
    """Send a command; return the bot's next notice in that room."""
    def notices() -> list[str]:
        return [body for sender, kind, body in client.messages[room] if sender == bot and kind == "notice"]

    before = len(notices())
    await client.say(room, text)
    return (await until(lambda: notices()[before:], 20, f"the answer to {text}"))[0]


ADVOCATE, SUPERVISOR, INTERPRETER, ADMIN = StaffRole
# What the bot answers someone the permission table lets run the command (no such chat, nothing
# waiting...); everyone else gets the table's refusal (tests/test_permissions.py, expected_refusal).
ALLOWED_ANSWERS = {
    "!claim QQQQ": "There is no waiting chat with ref QQQQ",
    "!service open": "Chat intake is open again",
    "!stats today": "Statistics, last 1 days",
    "!devices": "Staff devices held back",
    "!approve @nobody:hotline.localhost DEV1": "@nobody:hotline.localhost has no device DEV1",
    "!languages es": "Noted: you interpret es",
    "!shift until 23:59": "Your shift ends at 23:59",
    "!shift end": "Your shift end is cleared",
    "!join QQQQ": "There is no active chat with ref QQQQ",  # the ref is checked first, for everyone
    "!chats": "You have no open chats",
    "!close": "",
    "!say safety": "",
    "!supervisor": "",
    "!interpreter es": "",
    "!transfer": "",
    "!handoff": "",
    "!codeword new": "",
    "!frobnicate": "Unknown command !frobnicate",
    "!claim": "No chat is waiting",
}


def expected_answer(command: str, role: StaffRole, room: Place) -> str:
    parsed = parse(command)
    if isinstance(parsed, Invalid):
        return ALLOWED_ANSWERS[command]
    row = permission_for(parsed)
    refused = None if row.late else expected_refusal(row, frozenset({role}), room)
    return STAFF[refused] if refused else ALLOWED_ANSWERS[command]


async def test_every_command_for_every_role(stack, canaries):
    accounts = {ADVOCATE: (stack.accounts.advocates[1], stack.accounts.dispatch_room, Place.STAFF_ROOM),
                SUPERVISOR: (stack.accounts.supervisors[0], stack.accounts.supervisors_room, Place.STAFF_ROOM),
                INTERPRETER: (stack.accounts.interpreters[0], stack.accounts.interpreters_room, Place.STAFF_ROOM),
                ADMIN: (stack.accounts.admins[0], stack.accounts.admin_room, Place.ADMIN_ROOM)}
    bot = stack.accounts.bot.user_id
    clients = {role: await login(stack, account) for role, (account, _, _) in accounts.items()}
    try:
        for role, client in clients.items():
            _, room, place = accounts[role]
            for command in ALLOWED_ANSWERS:
                answer = await ask_bot(client, room, bot, command)
                want = expected_answer(command, role, place)
                assert want and answer.startswith(want), f"{role} {command}: {answer!r}"
            help_text = await ask_bot(client, room, bot, "!help")
            for row in PERMISSIONS:
                for listed, line in row.help:
                    assert (line in help_text) == (listed in (None, role)), f"{role} !help and {line}"
    finally:
        for client in clients.values():
            await client.close()


@pytest.fixture(scope="module")
def verifying_stack():
    """The stricter policy: staff devices get keys only after emoji verification (or approval)."""
    root = Path(tempfile.mkdtemp(prefix="hotline-verify-"))
    settings = {"trust_new_staff_devices": "false", "staff_device_verification": "true"}
    yield from running(DevStack(root / "stack", advocates=1, settings=settings))


async def test_strict_policy_keys_only_after_emoji_verification_confirmed_by_an_admin(verifying_stack, canaries):
    stack = verifying_stack
    account, bot = stack.accounts.advocates[0], stack.accounts.bot.user_id
    admin_room, dispatch = stack.accounts.admin_room, stack.accounts.dispatch_room
    # The admin is there first (as in real life), so the bot knows their device before it
    # announces anything in the admin room.
    admin = await login(stack, stack.accounts.admins[0])
    await until(lambda: list(admin.client.device_store.active_user_devices(bot)), 20, "the admin's client synced")
    advocate = await login(stack, account)
    page = Survivor(stack.page_url)
    try:
        device = advocate.client.device_id
        await until(lambda: any(device in b and "!approve" in b for b in admin.bodies(admin_room)), 30,
                    "held back on first sight: no enrollment under the strict policy")
        # Before verification the advocate cannot read the bot's alerts.
        await page.start()
        await until(lambda: len(page.texts("hotline")) >= 2, 20, "the welcome")
        bot_devices = await until(lambda: list(advocate.client.device_store.active_user_devices(bot)), 20,
                                  "the bot's device in the advocate's client")
        await advocate.client.start_key_verification(bot_devices[0])
        sas = await until(lambda: next(iter(advocate.client.key_verifications.values()), None), 10, "the SAS")
        posted = await until(lambda: next((b for b in admin.bodies(admin_room)
                                           if b.startswith(f"Emoji verification of device {device}")), None),
                             30, "the bot's emojis in the admin room")
        await until(lambda: getattr(sas, "their_sas_key", None), 20, "the key exchange on the advocate side")
        emojis = ", ".join(f"{emoji} {name}" for emoji, name in sas.get_emoji())
        assert emojis in posted  # the admin compares these with the advocate's screen
        assert not alerts_in(stack, advocate)  # still held back: the alert was not decryptable
        await admin.say(admin_room, f"!verify {account.user_id} {device}")
        await until(lambda: any(b.startswith("Confirmed. Waiting for") for b in admin.bodies(admin_room)), 20,
                    "confirmed by the admin")
        await advocate.client.confirm_short_auth_string(sas.transaction_id)
        await until(lambda: any(b.startswith(f"Device {device} of {account.user_id} is verified")
                                for b in admin.bodies(admin_room)), 30, "verified")
        # From now on the advocate reads the chat.
        page.frames.clear()
        second = Survivor(stack.page_url)
        try:
            before = len(alerts_in(stack, advocate))
            await second.start()
            ref = await new_alert(stack, advocate, before)
            await advocate.say(dispatch, f"!claim {ref}")
            case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "case room")
            await second.say("readable now 8a9b")
            await until(lambda: "Survivor: readable now 8a9b" in advocate.bodies(case_room), 30, "decrypted")
            await advocate.say(case_room, "!close")
            await assert_erased(stack, ref, case_room)
        finally:
            await second.close()
        await page.send({"type": "end"})
    finally:
        for client in (advocate, admin):
            await client.close()
        await page.close()
