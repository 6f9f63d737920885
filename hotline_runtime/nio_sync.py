"""The sync loop both processes use: matrix-nio's sync, key upkeep, back-off, clean errors.

matrix-nio runs its own callbacks inside ``sync()``; we do not register any. Instead each
response goes to ``on_response`` after nio has decrypted it, and only then does the loop move
its position forward, so a crash while handling a response replays it instead of losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    EnablePushRuleError,
    JoinedMembersError,
    KeysQueryError,
    PushRuleKind,
    SyncError,
    SyncResponse,
)
from nio.crypto import OlmDevice

log = logging.getLogger(__name__)

# Enough for a restart to catch up on what happened while a process was down.
SYNC_FILTER: dict[str, Any] = {
    "room": {
        "timeline": {"limit": 500},
        "state": {"lazy_load_members": False},
        "account_data": {"not_types": ["*"]},
    },
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}

# Errors after which the account can no longer sync: stop instead of retrying.
FATAL_SYNC_ERRORS = {"M_UNKNOWN_TOKEN", "M_USER_DEACTIVATED", "M_FORBIDDEN"}


class SessionGone(Exception):
    """The homeserver no longer accepts this login (logged out, deactivated, erased)."""


def client_config(**overrides: Any) -> AsyncClientConfig:
    """nio settings shared by the bot and the gateway."""
    values: dict[str, Any] = {
        "encryption_enabled": True,
        "store_sync_tokens": False,  # we save the position after handling a response
        "max_timeouts": 3,  # a homeserver that is down fails a request instead of hanging it
        "max_limit_exceeded": 3,
        "request_timeout": 30,
    }
    values.update(overrides)
    return AsyncClientConfig(**values)


def note_one_time_keys(client: AsyncClient, response: SyncResponse) -> None:
    """Take the homeserver's count of this device's one-time keys, zero included.

    matrix-nio keeps the count only when it is not zero, so a device whose keys were all claimed
    between two syncs would go on believing it has plenty and never upload more: every new
    device would then fail to start an Olm session with it (the bot, after a burst of chats)."""
    if client.olm is not None and not response.device_key_count.signed_curve25519:
        client.olm.uploaded_key_count = 0


async def keep_keys(client: AsyncClient) -> None:
    """Upload, query and claim keys as nio's own sync_forever would."""
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        users = client.get_users_for_key_claiming()
        if users:
            await client.keys_claim(users)
    if client.outgoing_to_device_messages:  # e.g. the steps of an emoji verification
        await client.send_to_device_messages()


# The request behind mute_push, for the set-up code that has only a token (devstack, hotline admin).
MUTE_PUSH_PATH = "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled"


async def mute_push(client: AsyncClient) -> bool:
    """Turn on the master push rule of an account that is a program, not a person (the bot, a
    survivor's account). The homeserver then computes and stores no notifications for it: no
    ``event_push_actions`` rows tying the account to events, no unread counts to work out on every
    sync. Staff accounts keep their notifications. Returns False if the homeserver refused."""
    response = await client.enable_pushrule("global", PushRuleKind.override, ".m.rule.master", True)
    if isinstance(response, EnablePushRuleError):
        log.warning("the master push rule could not be turned on (%s)", response.status_code)
        return False
    return True


class KeysUnavailable(Exception):
    """The members or device keys of a room could not be fetched; nothing was sent."""


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


CLAIM_RETRY_DELAYS = (0.3, 0.7, 1.5, 3.0)


async def olm_sessions(client: AsyncClient, room_id: str, users: set[str]) -> None:
    """Make sure there is an Olm session with every device of ``users`` in the room that will be
    sent the room key (held-back devices aside), claiming one-time keys again while some are missing.

    Without this, nio encrypts for the devices it has sessions with and leaves the others out of
    that Megolm session for good: a survivor's messages would stay unreadable to the bot (seen when
    many chats opened at once and a claim came back without a key). A device's one-time keys run
    out for a moment when many new devices claim them at once, and its owner uploads more at its
    next sync, so a few short retries are enough. Raises KeysUnavailable if they are not."""
    attempts = 0
    while missing := _missing_sessions(client, room_id, users):
        count = sum(len(devices) for devices in missing.values())
        if attempts > len(CLAIM_RETRY_DELAYS):
            raise KeysUnavailable(f"no one-time key for {count} device(s)")
        if attempts:
            log.warning("no one-time key came back for %d device(s); claiming again", count)
            await asyncio.sleep(CLAIM_RETRY_DELAYS[attempts - 1])
        attempts += 1
        await client.keys_claim(missing)  # an error response leaves them missing: tried again


def _missing_sessions(client: AsyncClient, room_id: str, users: set[str]) -> dict[str, list[str]]:
    olm = client.olm
    assert olm is not None
    missing: dict[str, list[str]] = {}
    for user in users & set(client.rooms[room_id].users):
        devices = [device.id for device in client.device_store.active_user_devices(user)
                   if device.id != client.device_id and not olm.is_device_blacklisted(device)
                   and not olm.session_store.get(device.curve25519)]
        if devices:
            missing[user] = devices
    return missing


async def sync_loop(
    client: AsyncClient,
    on_response: Callable[[SyncResponse], Awaitable[None]],
    *,
    since: str | None,
    save_position: Callable[[str], Awaitable[None]] | None = None,
    timeout_ms: int = 30_000,
    max_backoff: float = 30.0,
) -> None:
    """Sync until cancelled; raises SessionGone when the login is refused."""
    backoff = 1.0
    full_state = since is not None  # after a restart nio needs the rooms' full state again
    while True:
        try:
            response = await client.sync(
                timeout=timeout_ms, since=since, full_state=full_state, sync_filter=SYNC_FILTER
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # connection refused, timeouts after nio's own retries
            log.warning("sync failed (%s); retrying in %.0f s", type(error).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
            continue
        if isinstance(response, SyncError):
            if response.status_code in FATAL_SYNC_ERRORS:
                raise SessionGone(response.status_code)
            log.warning("sync refused (%s); retrying in %.0f s", response.status_code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
            continue
        backoff = 1.0
        full_state = False
        note_one_time_keys(client, response)
        try:
            await keep_keys(client)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("key upkeep failed (%s)", type(error).__name__)
        await on_response(response)
        since = response.next_batch
        if save_position is not None:
            await save_position(since)


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
