"""End-to-end encryption with matrix-nio, as both processes do it: one encrypted send, the
device-trust steps it relies on, and who sent a decrypted event.

``send_encrypted`` is the only way the hotline sends a room message: it never falls back to
sending in clear. In order: the room must be known and encrypted; its members and their devices'
keys are fetched if nio lacks them; the caller's trust policy decides every device (which ones
get the room key); an Olm session is made sure of with each device that must be able to read the
message; then nio encrypts and sends. Failures come back as ``EncryptionUnavailable`` (nothing
could be encrypted, nothing was sent) or ``MatrixError`` (the homeserver failed); a failure the
homeserver recovers from by itself is a ``TransientSendError`` (a ``MatrixError``), which
``send_encrypted_retrying`` tries again for a while with the same transaction id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    JoinedMembersError,
    KeysQueryError,
    OlmUnverifiedDeviceError,
    RoomSendError,
    ShareGroupSessionError,
)
from nio.crypto import OlmDevice
from nio.exceptions import OlmTrustError

from hotline_runtime.cross_signing import CrossSigningError
from hotline_runtime.errors import EncryptionUnavailable, MatrixError
from hotline_runtime.nio_client import KeyShareFailed
from hotline_runtime.retry import Backoff

log = logging.getLogger(__name__)

# Decides the devices of these users (the room's members) before a room key is shared.
TrustStep = Callable[[list[str]], Awaitable[None]]


class KeysUnavailable(Exception):
    """The members or device keys of a room could not be fetched; nothing was sent."""


class TransientSendError(MatrixError):
    """Nothing was sent, for a reason the homeserver recovers from by itself (an answer 5xx or
    429, as while its database restarts; no connection; a timeout; a refused room-key share)."""


# A send that fails for a moment is tried again after 0.5, 1, 2, 4, 5, 5 … s.
SEND_RETRY = Backoff(0.5, cap=5.0)


async def send_encrypted(
    client: AsyncClient,
    room_id: str,
    content: dict[str, Any],
    *,
    event_type: str = "m.room.message",
    txn_id: str | None = None,
    trust: TrustStep,
    must_read: Callable[[str], bool] = lambda user_id: False,
) -> str:
    """Send one event encrypted; never in clear. Returns its event ID.

    ``trust`` is called with the room's members once they are known and must decide each of
    their devices (verify or hold back). ``must_read`` names the members whose every trusted
    device must get the room key now (a survivor's only device, the bot for the gateway): their
    Olm sessions are claimed again until they exist. Raises EncryptionUnavailable, MatrixError,
    or TransientSendError (a MatrixError) for what may succeed if tried again."""
    await _ready_to_encrypt(client, room_id, trust, must_read)
    try:
        response = await client.room_send(room_id, event_type, content, tx_id=txn_id)
    except (OlmTrustError, OlmUnverifiedDeviceError) as error:
        raise EncryptionUnavailable(str(error)) from error
    except (aiohttp.ClientError, TimeoutError, KeyShareFailed) as error:  # (after nio's own retries)
        raise TransientSendError("send", type(error).__name__) from error
    if isinstance(response, RoomSendError):
        status = getattr(response.transport_response, "status", None)
        if status is None or status >= 500 or status == 429:
            raise TransientSendError("send", response.status_code)
        raise MatrixError("send", response.status_code)
    return response.event_id


async def share_room_key(client: AsyncClient, room_id: str, *, trust: TrustStep,
                         must_read: Callable[[str], bool] = lambda user_id: False) -> None:
    """The room key shared now, as ``send_encrypted`` would share it before its event (the same
    trust and Olm steps), so that a first send later is the event only. Nothing is sent if a
    shared key is still in use. Raises as ``send_encrypted``."""
    await _ready_to_encrypt(client, room_id, trust, must_read)
    olm = client.olm
    if olm is None or not olm.should_share_group_session(room_id):
        return
    try:
        response = await client.share_group_session(room_id)
    except (OlmTrustError, OlmUnverifiedDeviceError) as error:
        raise EncryptionUnavailable(str(error)) from error
    except (aiohttp.ClientError, TimeoutError, KeyShareFailed) as error:
        raise TransientSendError("key share", type(error).__name__) from error
    if isinstance(response, ShareGroupSessionError):
        raise TransientSendError("key share", response.status_code)


async def _ready_to_encrypt(client: AsyncClient, room_id: str, trust: TrustStep,
                            must_read: Callable[[str], bool]) -> None:
    """Room known and encrypted, members and device keys fetched, every device decided by
    ``trust``, Olm sessions with those in ``must_read``: what must hold before a room key goes out."""
    room = client.rooms.get(room_id)
    if room is None:
        raise MatrixError("send", "unknown room", "not synced yet")
    if not room.encrypted:
        raise EncryptionUnavailable("the room is not encrypted; refusing to send")
    try:
        await members_and_keys(client, room_id)
        await trust(list(room.users))
        await olm_sessions(client, room_id, {user for user in room.users if must_read(user)})
    except (KeysUnavailable, CrossSigningError) as error:
        raise TransientSendError("preparing encryption", None, str(error)) from error


async def send_encrypted_retrying(client: AsyncClient, room_id: str, content: dict[str, Any], *, txn_id: str,
                                  within: float, retry: Backoff = SEND_RETRY, **send: Any) -> str:
    """``send_encrypted``, tried again after a TransientSendError for up to ``within`` seconds
    (then that error is raised). Every attempt uses ``txn_id``, so the event is delivered once
    however many attempts it took. For senders with no person behind them to press "resend"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    for attempt, delay in enumerate(retry.delays(), start=1):
        try:
            return await send_encrypted(client, room_id, content, txn_id=txn_id, **send)
        except TransientSendError as failure:
            if loop.time() + delay > deadline:
                raise
            log.warning("sending to a room failed (%s, attempt %d); trying again in %.1f s", failure, attempt, delay)
        await asyncio.sleep(delay)
    return await send_encrypted(client, room_id, content, txn_id=txn_id, **send)  # a policy with tries: the last


async def members_and_keys(client: AsyncClient, room_id: str) -> None:
    """What nio needs before encrypting for a room: its members, and their devices' keys."""
    room = client.rooms[room_id]
    if not room.members_synced:
        members = await client.joined_members(room_id)
        if isinstance(members, JoinedMembersError):
            raise KeysUnavailable(f"members ({members.status_code})")
    if client.should_query_keys:
        keys = await client.keys_query()
        if isinstance(keys, KeysQueryError):
            raise KeysUnavailable(f"keys ({keys.status_code})")


# A device's one-time keys run out for a moment when many new devices claim them at once.
CLAIM_RETRY = Backoff(0.3, cap=3.0, factor=2.2, tries=4)


async def olm_sessions(client: AsyncClient, room_id: str, users: set[str], retry: Backoff = CLAIM_RETRY) -> None:
    """Make sure there is an Olm session with every device of ``users`` in the room that will be
    sent the room key (held-back devices aside), claiming one-time keys again while some are missing.

    Without this, nio encrypts for the devices it has sessions with and leaves the others out of
    that Megolm session for good: a survivor's messages would stay unreadable to the bot (seen when
    many chats opened at once and a claim came back without a key). A device's one-time keys run
    out for a moment when many new devices claim them at once, and its owner uploads more at its
    next sync, so a few short retries are enough. Raises KeysUnavailable if they are not."""
    delays = retry.delays()
    first = True
    while missing := _missing_sessions(client, room_id, users):
        count = sum(len(devices) for devices in missing.values())
        if not first:
            delay = next(delays, None)
            if delay is None:
                raise KeysUnavailable(f"no one-time key for {count} device(s)")
            log.warning("no one-time key came back for %d device(s); claiming again", count)
            await asyncio.sleep(delay)
        first = False
        await client.keys_claim(missing)  # an error response leaves them missing: tried again


def _missing_sessions(client: AsyncClient, room_id: str, users: set[str]) -> dict[str, list[str]]:
    olm = client.olm
    assert olm is not None
    missing: dict[str, list[str]] = {}
    for user in users & set(client.rooms[room_id].users):
        devices = without_session(client, user, lambda device: not olm.is_device_blacklisted(device))
        if devices:
            missing[user] = devices
    return missing


def without_session(client: AsyncClient, user_id: str, wanted: Callable[[OlmDevice], bool]) -> list[str]:
    """The ids of the user's ``wanted`` devices (this client's own left out) with no Olm session yet."""
    olm = client.olm
    assert olm is not None
    return [device.id for device in other_devices(client, user_id)
            if wanted(device) and not olm.session_store.get(device.curve25519)]


async def claim_sessions(client: AsyncClient, user_id: str, wanted: Callable[[OlmDevice], bool]) -> None:
    """Claim a one-time key for each ``wanted`` device of the user that has no Olm session yet,
    ahead of a first send to them (best effort: the send claims again whatever is still missing)."""
    missing = without_session(client, user_id, wanted)
    if missing:
        await client.keys_claim({user_id: missing})


# ---------------------------------------------------------------------- device trust

def other_devices(client: AsyncClient, user_id: str) -> list[OlmDevice]:
    """A user's active devices, this client's own device left out."""
    return [device for device in client.device_store.active_user_devices(user_id)
            if not (user_id == client.user_id and device.id == client.device_id)]


def is_decided(client: AsyncClient, device: OlmDevice) -> bool:
    """Verified (gets room keys) or held back (gets none)."""
    olm = client.olm
    assert olm is not None
    return bool(olm.is_device_verified(device) or olm.is_device_blacklisted(device))


def approve_device(client: AsyncClient, device: OlmDevice) -> None:
    """Trust a device, held back before or not, with new room keys from the next message on in
    every room its owner is in (so that it gets the keys it was left out of)."""
    client.unblacklist_device(device)
    client.verify_device(device)
    renew_room_keys(client, device.user_id)


def revoke_device(client: AsyncClient, device: OlmDevice) -> None:
    """Hold back a device that may have been trusted, with new room keys from the next message on
    in every room its owner is in (so that it cannot read what follows)."""
    client.unverify_device(device)
    client.blacklist_device(device)
    renew_room_keys(client, device.user_id)


def renew_room_keys(client: AsyncClient, user_id: str) -> None:
    """The next message in each room the user is in starts a new Megolm session."""
    olm = client.olm
    assert olm is not None
    for room_id, room in client.rooms.items():
        if user_id in room.users:
            olm.outbound_group_sessions.pop(room_id, None)


def sending_device(client: AsyncClient, room_id: str, event: Any) -> OlmDevice | None:
    """The device that sent a decrypted event, found through the Megolm session it was decrypted
    with (the event's own ``device_id`` field is optional and not to be relied on): the device of
    the sender whose Curve25519 key sent the session and whose Ed25519 key the session names.
    None if the session was forwarded by someone else or the device is not known (yet)."""
    sender_key, session_id = getattr(event, "sender_key", None), getattr(event, "session_id", None)
    if client.olm is None or not sender_key or not session_id:
        return None
    session = client.olm.inbound_group_store.get(room_id, sender_key, session_id)
    if session is None or session.forwarding_chain:
        return None
    return next((device for device in client.device_store.active_user_devices(event.sender)
                 if device.curve25519 == sender_key and device.ed25519 == session.ed25519), None)
