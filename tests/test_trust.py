"""Trust by cross-signing, on a real homeserver with the settings `hotline init` ships
(no keys for staff sessions that are not cross-signed).

Who must be refused: a session added to the bot account by anyone but the bot, a staff session
its owner did not verify, every session of a staff identity that was reset, and anything an
untrusted session writes. And who must not be lost: the bot keeps its identity across restarts
and new logins, and a staff member whose message the bot could not read is told so.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
from pathlib import Path

import aiohttp
import pytest

from bot.identity import identity_path
from hotline_runtime.cross_signing import Identity, KeysApi, signed_devices
from hotline.devstack import DevStack
from hotline_runtime.wire import CONTROL_EVENT
from testkit import clients
from tests.conftest import running
from tests.rustcrypto_client import RustAdvocate, rust_crypto_harness  # noqa: F401
from testkit.clients import (
    Advocate,
    Survivor,
    assert_erased,
    chat_row_exists,
    claim_new_chat,
    eventually,
    login,
    open_chat,
    remember,
    bot_meta,
    until,
)


@pytest.fixture(scope="module")
def trust_stack():
    root = Path(tempfile.mkdtemp(prefix="hotline-trust-"))
    yield from running(DevStack(root / "stack", advocates=4, settings={"trust_new_staff_devices": "false"}))


def bot_identity(stack: DevStack) -> Identity:
    identity = Identity.load(identity_path(stack.root / "bot"), stack.accounts.bot.user_id)
    assert identity is not None
    return identity


async def signed_bot_devices(stack: DevStack, token: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        query = await KeysApi(http, stack.homeserver.url, token).query([stack.accounts.bot.user_id])
    return signed_devices(query, stack.accounts.bot.user_id, bot_identity(stack).master_public)


def notices(client: Advocate, room: str, start: str) -> list[str]:
    return [b for b in client.bodies(room) if b.startswith(start)]


def clean(message: dict) -> bool:
    """Decrypted, with no warning shield: what Element shows as a normal message."""
    return message["decryption_failure"] is None and (message["shield"] or {}).get("color") == "none"


async def test_an_advocate_on_elements_crypto_works_the_whole_chat(trust_stack, rust_crypto_harness, canaries):
    """Element's default (MSC4153, OnlySignedDevicesIsolationMode): keys only for cross-signed
    sessions, nothing read from others. The bot's session is cross-signed, so all of it works."""
    stack = trust_stack
    canaries += ["from the page to element 1a2b", "from element to the page 3c4d"]
    account = stack.accounts.advocates[3]  # used by no nio client: Element makes its own identity
    dispatch = stack.accounts.dispatch_room
    advocate = RustAdvocate("element-advocate")
    page = Survivor(stack.page_url)
    try:
        await advocate.login(stack.homeserver.url, account.user_id, account.password, mode="signed")
        mark = advocate.mark()
        # The bot reads this session (it would say so if it could not) and is read by it.
        await advocate.send(dispatch, "!chats")
        answer = await advocate.wait_for_message(lambda m: m["body"] == "You have no open chats.", dispatch,
                                                 what="the bot's answer", after=mark)
        assert clean(answer), answer
        await page.start()
        alert = await advocate.wait_for_message(lambda m: (m["body"] or "").startswith("Chat waiting")
                                                or m["decryption_failure"], dispatch, what="the alert", after=mark)
        assert clean(alert), alert
        ref = re.search(r"ref (\w{4})", alert["body"]).group(1)
        remember(stack, ref)
        await advocate.send(dispatch, f"!claim {ref}")
        intro = await advocate.wait_for_message(lambda m: (m["body"] or "").startswith(f"Case room for ref {ref}"),
                                                what="the case room", after=mark)
        case_room = intro["room_id"]
        assert clean(intro), intro
        await page.say("from the page to element 1a2b")
        line = await advocate.wait_for_message(lambda m: m["body"] == "Survivor: from the page to element 1a2b",
                                               case_room, what="the survivor's line", after=mark)
        assert clean(line), line
        await advocate.send(case_room, "from element to the page 3c4d")
        await until(lambda: "from element to the page 3c4d" in page.texts("advocate"), 30, "the reply on the page")
        await advocate.send(case_room, "!close")
        await until(lambda: page.first("ended"), 30, "the page told")
        await assert_erased(stack, ref, case_room)
        # A client that caches (js-sdk's sync accumulator) received the redactions before the purge:
        # no word of the chat is left in it ("ghost rooms", synapse#18599).
        kept = await advocate.cached(case_room)
        assert not [e for e in kept["events"] if e["body"]], kept
        assert sum(e["redacted"] for e in kept["events"]) >= 4, kept  # the lines it had shown
        undecrypted = [m for room in (dispatch, case_room) for m in advocate.messages(room, mark)
                       if m["decryption_failure"]]
        assert not undecrypted, undecrypted
    finally:
        await advocate.close()
        await page.close()


async def test_a_session_added_to_the_bot_account_gets_no_key_and_injects_nothing(trust_stack, canaries):
    stack = trust_stack
    canaries += ["only for the real bot 5a6b"]
    advocate = await login(stack, stack.accounts.advocates[0])
    page = Survivor(stack.page_url)
    # What a reset password, an admin's "login as" or a stolen token gives: a new session of the
    # bot account, not signed by the bot's identity.
    rogue = Advocate(stack.homeserver.url, stack.accounts.bot.user_id, stack.accounts.bot.password,
                     cross_signed=False)
    try:
        await rogue.login()
        ref, case_room = await claim_new_chat(stack, advocate, page)
        survivor_room, _ = open_chat(stack, ref)
        await page.say("only for the real bot 5a6b")
        await until(lambda: "Survivor: only for the real bot 5a6b" in advocate.bodies(case_room), 30, "the relay")
        await until(lambda: rogue.unreadable[survivor_room], 30, "the survivor's message at the rogue session")
        assert not any("real bot" in body for body in rogue.bodies(survivor_room))
        # The rogue session writes as "the advocate" and tries to end the chat: the page shows neither.
        await rogue.say(survivor_room, "injected words 7c8d")
        response = await rogue.client.room_send(survivor_room, CONTROL_EVENT, {"action": "closed"},
                                                ignore_unverified_devices=True)
        assert hasattr(response, "event_id"), response
        await advocate.say(case_room, "the real reply 9e0f")
        await until(lambda: "the real reply 9e0f" in page.texts("advocate"), 30, "the real bot's relay")
        assert not any("injected" in text for text in page.texts())
        assert not page.first("ended") and chat_row_exists(stack, ref)
        ours = [line for line in (stack.logs / "webchat.log").read_text().splitlines() if " webchat." in line]
        assert any("not signed by the bot's pinned identity" in line for line in ours)
        assert not any(rogue.client.device_id in line for line in ours)  # logged by type only
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        for client in (advocate, rogue):
            await client.close()
        await page.close()


async def test_a_staff_session_that_is_not_cross_signed_gets_no_keys_and_is_not_obeyed(trust_stack, canaries):
    stack = trust_stack
    canaries += ["not for that session 1b2c", "from the unverified session 3d4e"]
    account = stack.accounts.advocates[1]
    admin_room = stack.accounts.admin_room
    admin = await login(stack, stack.accounts.admins[0])
    verified = await login(stack, account)
    unverified = Advocate(stack.homeserver.url, account.user_id, account.password, cross_signed=False)
    page = Survivor(stack.page_url)
    try:
        ref, case_room = await claim_new_chat(stack, verified, page)
        await unverified.login()
        device = unverified.client.device_id
        await until(lambda: any(device in b for b in notices(admin, admin_room, f"Device {device} of {account.user_id}"
                                                                             " is not verified by its owner")),
                    30, "the announcement to the admins")
        await page.say("not for that session 1b2c")
        await until(lambda: "Survivor: not for that session 1b2c" in verified.bodies(case_room), 30, "relayed")
        await until(lambda: unverified.unreadable[case_room], 30, "the relay at the unverified session")
        assert "Survivor: not for that session 1b2c" not in unverified.bodies(case_room)
        # What the unverified session writes is neither relayed nor obeyed; its owner is told, once.
        await unverified.say(case_room, "from the unverified session 3d4e")
        await unverified.say(case_room, "!close")
        told = f"I did not act on a message from {account.user_id}'s session {device}"
        await until(lambda: notices(verified, case_room, told), 30, "the notice in the case room")
        await page.say("still here 5f6a")
        await until(lambda: "Survivor: still here 5f6a" in verified.bodies(case_room), 30, "the chat goes on")
        assert chat_row_exists(stack, ref)
        assert "from the unverified session 3d4e" not in page.texts()
        assert len(notices(verified, case_room, told)) == 1
        # The admin's override still works: approved by hand, the session reads and is obeyed.
        await admin.say(admin_room, f"!approve {account.user_id} {device}")
        await until(lambda: notices(admin, admin_room, f"Device {device} of {account.user_id} is approved"), 20,
                    "approved")
        await page.say("readable now 7b8c")
        await until(lambda: "Survivor: readable now 7b8c" in unverified.bodies(case_room), 30, "approved reads")
        await unverified.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        for client in (admin, verified, unverified):
            await client.close()
        await page.close()


async def test_a_staff_identity_reset_is_held_back_until_an_admin_trusts_it(trust_stack, canaries):
    stack = trust_stack
    account = stack.accounts.advocates[2]
    admin_room = stack.accounts.admin_room
    admin = await login(stack, stack.accounts.admins[0])
    before = await login(stack, account)  # pinned on first sight
    page = Survivor(stack.page_url)
    after = None
    try:
        ref, case_room = await claim_new_chat(stack, before, page)
        # "Reset cross-signing" in a client: a new identity, published with the password, and a
        # new session signed by it.
        reset = Identity.generate(account.user_id)
        async with aiohttp.ClientSession() as http:
            await KeysApi(http, stack.homeserver.url, before.client.access_token).upload_identity(reset, account.password)
        clients._identities[(stack.homeserver.url, account.user_id)] = reset
        after = await login(stack, account)
        await until(lambda: notices(admin, admin_room, f"The identity of {account.user_id} changed"), 30,
                    "the announcement to the admins")
        await page.say("held back 9a0b")
        await until(lambda: after.unreadable[case_room] if case_room in after.client.rooms else False, 30,
                    "the relay at the new session")
        await until(lambda: len(before.unreadable[case_room]) >= 1, 30, "the relay at the old session")
        assert "Survivor: held back 9a0b" not in before.bodies(case_room) + after.bodies(case_room)
        await admin.say(admin_room, f"!trust {account.user_id}")
        await until(lambda: notices(admin, admin_room, f"The identity of {account.user_id} ("), 20, "trusted")
        await page.say("trusted again 1c2d")
        await until(lambda: "Survivor: trusted again 1c2d" in after.bodies(case_room), 30, "the new session reads")
        await after.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        for client in (admin, before, after):
            if client is not None:
                await client.close()
        await page.close()


async def test_only_an_admin_may_trust_an_identity(trust_stack):
    stack = trust_stack
    advocate = await login(stack, stack.accounts.advocates[0])
    try:
        dispatch = stack.accounts.dispatch_room
        await advocate.say(dispatch, f"!trust {stack.accounts.advocates[1].user_id}")
        await until(lambda: notices(advocate, dispatch, "Only admins can do that"), 20, "refused")
    finally:
        await advocate.close()


async def test_a_staff_member_whose_message_the_bot_cannot_read_is_told(trust_stack):
    stack = trust_stack
    advocate = await login(stack, stack.accounts.advocates[0])
    try:
        dispatch, bot = stack.accounts.dispatch_room, stack.accounts.bot.user_id
        await until(lambda: list(advocate.client.device_store.active_user_devices(bot)), 20, "the bot's keys")
        # A client that keeps its room key from the bot (as Element does from a device it does
        # not trust): the bot cannot read the message.
        for device in advocate.client.device_store.active_user_devices(bot):
            advocate.client.blacklist_device(device)
        advocate.client.olm.outbound_group_sessions.pop(dispatch, None)
        await advocate.say(dispatch, "!chats")
        await advocate.say(dispatch, "!chats")
        device = advocate.client.device_id
        told = f"I could not read a message from {advocate.client.user_id}'s session {device}."
        await until(lambda: notices(advocate, dispatch, told), 30, "the notice")
        assert "Verify this session in your Matrix client (Settings → Sessions)" in notices(advocate, dispatch, told)[0]
        await advocate.say(dispatch, "!chats")
        for client_device in advocate.client.device_store.active_user_devices(bot):
            advocate.client.unblacklist_device(client_device)
            advocate.client.verify_device(client_device)
        advocate.client.olm.outbound_group_sessions.pop(dispatch, None)
        await advocate.say(dispatch, "!chats")
        await until(lambda: notices(advocate, dispatch, "You have no open chats"), 30, "read again")
        assert len(notices(advocate, dispatch, told)) == 1  # once per session, not per message
    finally:
        await advocate.close()


async def test_the_bots_identity_survives_a_restart_and_a_new_login(trust_stack):
    stack = trust_stack
    advocate = await login(stack, stack.accounts.advocates[0])
    page = Survivor(stack.page_url)
    try:
        master = bot_identity(stack).master_public
        old_device = bot_meta(stack, "device_id")
        assert await _signed_now(stack, advocate)
        # A new login: the saved session is gone (a restore without it), the identity file is kept.
        stack.kill_bot()
        with sqlite3.connect(stack.root / "bot" / "routing.db") as db:
            db.execute("DELETE FROM meta WHERE key IN ('device_id', 'access_token', 'sync_position')")
        stack.start_bot()
        await until(lambda: bot_meta(stack, "device_id") not in {None, old_device}, 30, "the bot's new session")
        await eventually(lambda: _signed_now(stack, advocate), 30, "the new session signed with the kept identity")
        assert bot_identity(stack).master_public == master
        # The old device's crypto store, with what it knew of earlier chats, is gone.
        crypto = sorted(path.name for path in (stack.root / "bot" / "crypto").iterdir())
        assert not [name for name in crypto if old_device in name], crypto
        assert [name for name in crypto if bot_meta(stack, "device_id") in name], crypto
        # And a chat works through the new session (the gateway trusts it: same identity).
        ref, case_room = await claim_new_chat(stack, advocate, page)
        await page.say("after the new login 3e4f")
        await until(lambda: "Survivor: after the new login 3e4f" in advocate.bodies(case_room), 30, "relayed")
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await advocate.close()
        await page.close()


async def test_replacing_the_bots_identity_is_explicit_and_the_gateway_follows(trust_stack):
    """`hotline admin bot-identity --replace`: a new identity, pinned by the gateway's settings;
    after a restart of both, chats work with it. (Last in this module: it changes the bot.)"""
    from hotline import admin

    stack = trust_stack
    old = bot_identity(stack).master_public
    files = admin.Files.from_args(stack.root, None, None, None)
    new = await admin.replace_bot_identity(files)
    assert new != old and bot_identity(stack).master_public == new
    assert f"HOTLINE_BOT_MASTER_KEY={new}" in (stack.root / "webchat.env").read_text()
    assert (stack.root / "bot" / "cross-signing.json.replaced").exists()
    stack.kill_bot()
    stack.stop_gateway()
    stack.start_bot()
    stack.start_gateway()
    await stack.wait_until_serving()
    advocate = await login(stack, stack.accounts.advocates[0])
    page = Survivor(stack.page_url)
    try:
        await eventually(lambda: _signed_now(stack, advocate), 30, "the bot's session signed by the new identity")
        ref, case_room = await claim_new_chat(stack, advocate, page)
        await page.say("with the new identity 5a6b")
        await until(lambda: "Survivor: with the new identity 5a6b" in advocate.bodies(case_room), 30, "relayed")
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
    finally:
        await advocate.close()
        await page.close()


async def _signed_now(stack: DevStack, advocate: Advocate) -> bool:
    device = bot_meta(stack, "device_id")
    return device in await signed_bot_devices(stack, advocate.client.access_token)
