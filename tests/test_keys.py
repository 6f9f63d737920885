"""Encrypting only for devices we hold an Olm session with, on a real homeserver.

matrix-nio encrypts a message for the devices it has Olm sessions with and leaves the others out of
that Megolm session for good. ``olm_sessions`` (used by the gateway before it writes to the bot,
and by the bot before it writes to a survivor) claims one-time keys until every such device has a
session, and refuses when a device has none left, so nothing is ever sent that the other side
cannot read. A device whose keys were all claimed uploads more at its next sync, even though
matrix-nio alone ignores a count of zero (``note_one_time_keys``).
"""

from __future__ import annotations

import secrets
import tempfile

import aiohttp
import pytest
from nio import AsyncClient, LoginResponse

from hotline_runtime.e2ee import KeysUnavailable, members_and_keys, olm_sessions
from hotline_runtime.matrix_sync import client_config, keep_keys, note_one_time_keys
from testkit.clients import register_user


async def signed_in(stack, user_id: str, password: str) -> AsyncClient:
    client = AsyncClient(stack.homeserver.url, user_id, store_path=tempfile.mkdtemp(prefix="keys-test-"),
                         config=client_config())
    assert isinstance(await client.login(password, device_name="keys test"), LoginResponse)
    await client.sync(timeout=0, full_state=True)
    await keep_keys(client)  # device keys and one-time keys up
    return client


async def use_up_one_time_keys(stack, token: str, user_id: str, device_id: str) -> int:
    """Claim the device's one-time keys from outside until none comes back; returns how many."""
    body = {"one_time_keys": {user_id: {device_id: "signed_curve25519"}}}
    url = f"{stack.homeserver.url}/_matrix/client/v3/keys/claim"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for claimed in range(500):
            async with http.post(url, json=body) as response:
                data = await response.json()
            if not data.get("one_time_keys", {}).get(user_id, {}).get(device_id):
                return claimed
    raise AssertionError("the device's one-time keys never ran out")


async def test_no_session_no_encryption_until_the_device_has_keys_again(stack):
    admin = stack.accounts.admins[0]
    sender = await signed_in(stack, admin.user_id, admin.password)  # a server admin may invite (invite policy)
    # A fresh account, so that its one device is the only one (a shared account may have sessions
    # that other tests signed in, whatever order the tests run in).
    password = secrets.token_urlsafe(12)
    reader = await signed_in(stack, await register_user(stack, f"keys_{secrets.token_hex(4)}", password), password)
    try:
        created = await sender.room_create(invite=[reader.user_id], initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        room = created.room_id
        await reader.join(room)

        def reader_joined() -> bool:
            return room in sender.rooms and reader.user_id in sender.rooms[room].users \
                and reader.user_id not in sender.rooms[room].invited_users

        for _ in range(100):
            if reader_joined():
                break
            await sender.sync(timeout=300)
        assert reader_joined(), "the reader never showed up in the sender's room"
        await members_and_keys(sender, room)
        assert [d.id for d in sender.device_store.active_user_devices(reader.user_id)] == [reader.device_id]

        assert await use_up_one_time_keys(stack, sender.access_token, reader.user_id, reader.device_id) > 0
        with pytest.raises(KeysUnavailable):
            await olm_sessions(sender, room, {reader.user_id})
        assert sender.olm.session_store.get(sender.device_store[reader.user_id][reader.device_id].curve25519) \
            is None

        # The homeserver tells the reader its keys ran out, and it uploads more, as the bot and the
        # gateway do after every sync (matrix-nio alone ignores a count of zero).
        note_one_time_keys(reader, await reader.sync(timeout=0))
        await keep_keys(reader)
        await olm_sessions(sender, room, {reader.user_id})
        assert sender.olm.session_store.get(sender.device_store[reader.user_id][reader.device_id].curve25519)
    finally:
        await sender.close()
        await reader.close()
