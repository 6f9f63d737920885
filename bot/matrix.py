"""The bot's Matrix adapter: the only bot module that imports matrix-nio.

It logs in once and keeps its device (so keys and the device survive restarts), sends only
encrypted messages to encrypted rooms, applies the device trust policy before sharing keys,
reads room history, redacts, and forgets a room's Megolm sessions.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp

from nio import (
    JoinError,
    LoginResponse,
    MegolmEvent,
    OlmUnverifiedDeviceError,
    RoomCreateError,
    RoomInviteError,
    RoomKickError,
    RoomLeaveResponse,
    RoomMessagesError,
    RoomRedactError,
    RoomSendError,
    RoomVisibility,
)
from nio.crypto import OlmDevice
from nio.exceptions import OlmTrustError
from nio.store.models import MegolmInboundSessions

from hotline_runtime.errors import EncryptionUnavailable, HotlineError, MatrixError
from hotline_runtime.cross_signing import CrossSigningError, KeysApi, master_key, signed_devices
from hotline_runtime.nio_client import HotlineClient, KeyShareFailed
from hotline_runtime.nio_sync import KeysUnavailable, client_config, members_and_keys, olm_sessions, sending_device

log = logging.getLogger(__name__)

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
DEVICE_NAME = "hotline-bot"
REDACT_CONCURRENCY = 16  # redactions in flight at once while erasing
# A send that fails for a reason the homeserver recovers from is tried again for this long (a
# PostgreSQL restart makes Synapse answer 500 for a few seconds); after that it fails as before.
SEND_RETRY_SECONDS = 60.0
SEND_RETRY_FIRST_DELAY = 0.5
SEND_RETRY_MAX_DELAY = 5.0


class _Transient(Exception):
    """A send that failed in a way that may succeed if tried again; carries the error to raise."""

    def __init__(self, error: HotlineError) -> None:
        super().__init__(str(error))
        self.error = error


def txn_id_for(source_event: str, purpose: str) -> str:
    """A transaction ID derived from the event being relayed.

    The homeserver answers a repeated transaction ID with the event it already stored, so a
    relay that is repeated after a crash is not delivered twice.
    """
    return f"{purpose}-" + hashlib.sha256(f"{purpose}\0{source_event}".encode()).hexdigest()[:40]


class BotMatrix:
    def __init__(self, homeserver: str, user_id: str, store_dir: Path) -> None:
        store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.user_id = user_id
        self.client = HotlineClient(
            homeserver, user_id, store_path=str(store_dir), config=client_config()
        )

    @property
    def access_token(self) -> str:
        return self.client.access_token

    @property
    def device_id(self) -> str:
        return self.client.device_id

    async def login(self, password: str, saved: tuple[str, str] | None) -> tuple[str, str]:
        """Reuse the saved (device_id, access_token), or log in with the password once."""
        if saved is not None:
            device_id, token = saved
            self.client.restore_login(self.user_id, device_id, token)
            whoami = await self.client.whoami()
            if getattr(whoami, "device_id", None) == device_id:
                return saved
            raise MatrixError("restoring the bot's login", getattr(whoami, "status_code", None),
                              "the saved token is no longer valid; see docs/backup.md")
        response = await self.client.login(password, device_name=DEVICE_NAME)
        if not isinstance(response, LoginResponse):
            raise MatrixError("bot login", getattr(response, "status_code", None))
        return response.device_id, response.access_token

    async def close(self) -> None:
        await self.client.close()

    # ------------------------------------------------------------------ rooms

    async def join(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        if isinstance(response, JoinError):
            raise MatrixError("join", response.status_code)

    async def invite(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_invite(room_id, user_id)
        if isinstance(response, RoomInviteError):
            raise MatrixError("invite", response.status_code)

    async def kick(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_kick(room_id, user_id)
        if isinstance(response, RoomKickError):
            raise MatrixError("kick", response.status_code)

    def held_back_devices(self, users: set[str]) -> list[tuple[str, str]]:
        olm = self.client.olm
        return sorted((user, device.id) for user in users for device in self.devices_of(user)
                      if olm.is_device_blacklisted(device))

    def decide_device(self, user_id: str, device_id: str, *, approve: bool) -> bool:
        """Approve (verify) or revoke (hold back) a staff device; False if there is no such device."""
        device = next((d for d in self.devices_of(user_id) if d.id == device_id), None)
        if device is None:
            return False
        if approve:
            self.client.unblacklist_device(device)
            self.client.verify_device(device)
        else:
            self.client.unverify_device(device)
            self.client.blacklist_device(device)
        # New room keys everywhere that user is, so the decision holds from the next message on.
        for room_id, room in self.client.rooms.items():
            if user_id in room.users:
                self.client.olm.outbound_group_sessions.pop(room_id, None)
        return True

    def find_verification(self, user_id: str, device_id: str) -> Any | None:
        for sas in self.client.key_verifications.values():
            other = sas.other_olm_device
            if other.user_id == user_id and other.id == device_id and not sas.canceled:
                return sas
        return None

    async def leave(self, room_id: str) -> None:
        response = await self.client.room_leave(room_id)
        if not isinstance(response, RoomLeaveResponse):
            log.info("leaving a room failed (%s); the room is deleted anyway", response.status_code)

    async def create_private_room(self, invite: list[str]) -> str:
        """An encrypted, invite-only room with no name, topic or alias (privacy rule 2)."""
        response = await self.client.room_create(
            visibility=RoomVisibility.private,
            preset=None,
            invite=invite,
            initial_state=[
                ENCRYPTION_STATE,
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}},
                {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
            ],
            # The bot creates the room, so it holds the creator's power (room version 12: the
            # creator must not be listed in "users").
            power_level_override={
                "users_default": 0,
                "events_default": 0,
                "invite": 100,
                "kick": 100,
                "ban": 100,
                "redact": 100,
                "state_default": 100,
            },
        )
        if isinstance(response, RoomCreateError):
            raise MatrixError("room create", response.status_code)
        return response.room_id

    async def put_state(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        response = await self.client.room_put_state(room_id, event_type, content, state_key="")
        if not hasattr(response, "event_id"):
            raise MatrixError("put state", getattr(response, "status_code", None))

    def room_members(self, room_id: str) -> set[str]:
        room = self.client.rooms.get(room_id)
        if room is None:
            return set()
        return {user for user in room.users if user not in room.invited_users}

    def knows_room(self, room_id: str) -> bool:
        return room_id in self.client.rooms

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        *,
        event_type: str = "m.room.message",
        txn_id: str | None = None,
        trust: TrustPolicy,
    ) -> str:
        """Send encrypted; never in clear. Raises EncryptionUnavailable or MatrixError.

        A failure the homeserver recovers from by itself (an answer 5xx, as while its database
        restarts; no connection; a timeout) is tried again with capped backoff for up to
        SEND_RETRY_SECONDS: no person stands behind the bot's sends to press "resend". Every
        attempt uses the same transaction id, so the message is delivered once however many
        attempts it took."""
        txn_id = txn_id or f"bot-{uuid4().hex}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEND_RETRY_SECONDS
        delay, attempt = SEND_RETRY_FIRST_DELAY, 0
        while True:
            attempt += 1
            try:
                return await self._send_once(room_id, content, event_type, txn_id, trust)
            except _Transient as failure:
                if loop.time() + delay > deadline:
                    raise failure.error from failure
                log.warning("sending to a room failed (%s, attempt %d); trying again in %.1f s",
                            failure.error, attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SEND_RETRY_MAX_DELAY)

    async def _send_once(self, room_id: str, content: dict[str, Any], event_type: str, txn_id: str,
                         trust: TrustPolicy) -> str:
        """One attempt; raises _Transient for what may succeed on the next one."""
        room = self.client.rooms.get(room_id)
        if room is None:
            raise MatrixError("send", "unknown room", "not synced yet")
        if not room.encrypted:
            raise EncryptionUnavailable("the room is not encrypted; refusing to send")
        try:
            await members_and_keys(self.client, room_id)
            await trust.apply(self, room_id)
            # A survivor's one device must get the key, or the page could not read the bot; staff
            # have other devices and clients that ask for missing keys, so theirs are best effort.
            await olm_sessions(self.client, room_id, {u for u in room.users if trust.is_survivor(u)})
        except (KeysUnavailable, CrossSigningError) as error:
            raise _Transient(MatrixError("preparing encryption", None, str(error))) from error
        try:
            response = await self.client.room_send(room_id, event_type, content, tx_id=txn_id)
        except (OlmTrustError, OlmUnverifiedDeviceError) as error:
            raise EncryptionUnavailable(str(error)) from error
        except (aiohttp.ClientError, TimeoutError, KeyShareFailed) as error:  # (after nio's own retries)
            raise _Transient(MatrixError("send", type(error).__name__)) from error
        if isinstance(response, RoomSendError):
            status = getattr(response.transport_response, "status", None)
            error = MatrixError("send", response.status_code)
            if status is None or status >= 500 or status == 429:
                raise _Transient(error)
            raise error
        return response.event_id

    def devices_of(self, user_id: str) -> list[OlmDevice]:
        return [
            device
            for device in self.client.device_store.active_user_devices(user_id)
            if not (user_id == self.user_id and device.id == self.client.device_id)
        ]

    def is_decided(self, device: OlmDevice) -> bool:
        olm = self.client.olm
        return olm.is_device_verified(device) or olm.is_device_blacklisted(device)

    def verify(self, device: OlmDevice) -> None:
        self.client.verify_device(device)

    def hold_back(self, device: OlmDevice) -> None:
        self.client.blacklist_device(device)

    def approve(self, device: OlmDevice) -> None:
        """Trust a device that was held back, with new room keys from the next message on."""
        self.decide_device(device.user_id, device.id, approve=True)

    def revoke(self, device: OlmDevice) -> None:
        """Hold back a device that may have been trusted, with new room keys from the next message on."""
        self.decide_device(device.user_id, device.id, approve=False)

    async def refresh_devices(self, user_id: str) -> None:
        """Fetch a user's device keys now (a message came from a device the bot does not know yet)."""
        self.client.olm.users_for_key_query.add(user_id)
        await self.client.keys_query()

    def device_by_key(self, user_id: str, curve25519: str | None) -> OlmDevice | None:
        return next((d for d in self.devices_of(user_id) if d.curve25519 == curve25519), None)

    def is_trusted(self, device: OlmDevice) -> bool:
        return bool(self.client.olm.is_device_verified(device))

    def is_held_back(self, device: OlmDevice) -> bool:
        return bool(self.client.olm.is_device_blacklisted(device))

    def sending_device(self, room_id: str, event: Any) -> OlmDevice | None:
        """The device that sent a decrypted event, found by the Megolm session's keys (the event's
        own ``device_id`` field is optional and not to be relied on). None if unknown or forwarded."""
        return sending_device(self.client, room_id, event)

    # ------------------------------------------------------------------ history

    async def history(self, room_id: str, page: int = 100) -> AsyncIterator[Any]:
        """The room's events, newest first, decrypted where the keys are here."""
        token: str | None = None
        while True:
            response = await self.client.room_messages(room_id, start=token, limit=page)
            if isinstance(response, RoomMessagesError):
                raise MatrixError("room messages", response.status_code)
            for event in response.chunk:
                yield event
            if not response.chunk or not response.end or response.end == token:
                return
            token = response.end

    async def redact(self, room_id: str, event_id: str) -> None:
        response = await self.client.room_redact(room_id, event_id)
        if isinstance(response, RoomRedactError):
            raise MatrixError("redact", response.status_code)

    async def redact_all(self, room_id: str) -> int:
        """Redact every message event in the room (clients then drop the content)."""
        targets = []
        async for event in self.history(room_id):
            source = getattr(event, "source", {}) or {}
            if "state_key" in source or source.get("type") == "m.room.redaction":
                continue
            if "redacted_because" in source.get("unsigned", {}):
                continue
            targets.append(event.event_id)
        limit = asyncio.Semaphore(REDACT_CONCURRENCY)

        async def redact(event_id: str) -> None:
            async with limit:
                await self.redact(room_id, event_id)

        await asyncio.gather(*(redact(event_id) for event_id in targets))
        return len(targets)

    def forget_room_keys(self, room_ids: list[str]) -> None:
        """Crypto-shredding: drop the rooms' Megolm sessions from memory and from the store."""
        olm = self.client.olm
        for room_id in room_ids:
            olm.outbound_group_sessions.pop(room_id, None)
            olm.inbound_group_store._entries.pop(room_id, None)
            self.client.encrypted_rooms.discard(room_id)
            self.client.rooms.pop(room_id, None)
        store = self.client.store
        with store.database.bind_ctx(store.models):
            MegolmInboundSessions.delete().where(MegolmInboundSessions.room_id.in_(room_ids)).execute()
        for room_id in room_ids:
            store.delete_encrypted_room(room_id)

    def forget_users(self, user_ids: list[str]) -> None:
        """Forget erased survivor accounts: their devices, trust entries (the store's
        ``*.trusted_devices`` files and the like), device keys and Olm sessions, in memory and in
        the crypto store. Called with the chat's erase, after the account is deactivated."""
        from nio.store.models import DeviceKeys, DeviceTrustState, Keys, OlmSessions, TrackedUsers

        gone = set(user_ids)
        if not gone:
            return
        olm = self.client.olm
        curve_keys = [device.curve25519 for user in gone
                      for device in olm.device_store._entries.pop(user, {}).values()]
        for user in gone:
            olm.tracked_users.discard(user)
            olm.users_for_key_query.discard(user)
        for key in curve_keys:
            olm.session_store._entries.pop(key, None)
        store = self.client.store
        for name in ("trust_db", "blacklist_db", "ignore_db"):
            keys = getattr(store, name, None)
            if keys is not None and any(key.user_id in gone for key in keys):
                keys._entries = [key for key in keys if key.user_id not in gone]
                keys._save()
        with store.database.bind_ctx(store.models):
            devices = [row.id for row in DeviceKeys.select(DeviceKeys.id).where(DeviceKeys.user_id.in_(list(gone)))]
            if devices:
                Keys.delete().where(Keys.device.in_(devices)).execute()
                if DeviceTrustState in store.models:  # SqliteStore's; DefaultStore keeps trust in files
                    DeviceTrustState.delete().where(DeviceTrustState.device.in_(devices)).execute()
                DeviceKeys.delete().where(DeviceKeys.id.in_(devices)).execute()
            if TrackedUsers in store.models:
                TrackedUsers.delete().where(TrackedUsers.user_id.in_(list(gone))).execute()
            if curve_keys:
                OlmSessions.delete().where(OlmSessions.sender_key.in_(curve_keys)).execute()

    def decrypt(self, event: MegolmEvent) -> Any | None:
        try:
            return self.client.decrypt_event(event)
        except Exception:
            return None


HOLD_NOT_CROSS_SIGNED = "not_cross_signed"  # the device is not signed by its owner's identity
HOLD_IDENTITY_CHANGED = "identity_changed"  # the owner's identity is not the one the bot pinned
HOLD_IDENTITY_UNVERIFIED = "identity_unverified"  # strict policy: no identity pinned on first sight
HOLD_SURVIVOR_DEVICES = "survivor_devices"  # a survivor account with more than one device
PINNED = "identity:"  # store meta key prefix: a staff member's pinned master key
REVOKED = "revoked:"  # store meta key prefix: a device an admin revoked by hand (user and device)


class TrustPolicy:
    """Who gets the bot's room keys, and whose messages the bot acts on (privacy rule 4).

    Cross-signing is the basis, as in today's Element (MSC4153):
    - Staff: each staff member's master key is pinned when the bot first sees it (trust on first
      use), or by an admin (``!trust``). A staff device is trusted when it is signed by the pinned
      identity's self-signing key. A device that is not cross-signed, or any device of an identity
      that changed, gets no keys and is announced to the admins, who can still decide by hand
      (``!approve`` / ``!revoke``). ``trust_unsigned`` (demos only) also trusts devices that are
      not cross-signed. ``strict``: no identity is pinned on first sight except admins'; the others
      wait for ``!trust`` or a device's emoji verification confirmed by an admin.
    - A survivor account: its single device, trusted on first sight; an account with more than
      one device gets no keys at all (the gateway makes exactly one).
    - Anyone else, and the bot's own other devices: held back.
    """

    def __init__(self, store: Any, is_survivor_account: Any, trust_unsigned: bool,
                 on_held_back: Any = None, *, strict: bool = False, is_admin: Any = None) -> None:
        self._store = store
        self._is_survivor = is_survivor_account
        self._trust_unsigned = trust_unsigned
        self._on_held_back = on_held_back
        self._strict = strict
        self._is_admin = is_admin or (lambda user_id: False)
        self.keys: KeysApi | None = None  # set once the bot has logged in
        self._seen_masters: dict[str, str | None] = {}  # the master key last seen per staff member

    def is_survivor(self, user_id: str) -> bool:
        return bool(self._is_survivor(user_id))

    async def apply(self, matrix: BotMatrix, room_id: str) -> None:
        await self.review(matrix, list(matrix.client.rooms[room_id].users))

    async def pinned(self, user_id: str) -> str | None:
        return await self._store.get_meta(PINNED + user_id)

    async def pin(self, matrix: BotMatrix, user_id: str) -> str | None:
        """An admin's ``!trust``: pin the user's current identity and decide their devices again.
        Returns the pinned master key, or None if the user has no cross-signing identity."""
        assert self.keys is not None
        query = await self.keys.query([user_id])
        current = master_key(query, user_id)
        if current is None:
            return None
        await self._store.set_meta(PINNED + user_id, current)
        self._seen_masters[user_id] = current
        signed = signed_devices(query, user_id, current)
        for device in matrix.devices_of(user_id):
            if signed.get(device.id) == device.ed25519:
                matrix.approve(device)
        return current

    async def decide(self, matrix: BotMatrix, user_id: str, device_id: str, *, approve: bool) -> bool:
        """An admin's ``!approve`` / ``!revoke``: kept, so that a revoked device stays revoked
        even when it is cross-signed later. False if the user has no such device."""
        if not matrix.decide_device(user_id, device_id, approve=approve):
            return False
        key = f"{REVOKED}{user_id} {device_id}"
        await self._store.set_meta(key, "" if approve else "revoked")
        return True

    async def review(self, matrix: BotMatrix, user_ids: list[str], changed: frozenset[str] = frozenset()) -> None:
        """Decide every undecided device of these users, and look again at the identities of the
        users in ``changed`` (their device lists changed: a new device, or an identity reset)."""
        staff = []
        for user_id in user_ids:
            devices = matrix.devices_of(user_id)
            undecided = [d for d in devices if not matrix.is_decided(d)]
            if user_id == matrix.user_id or (self._is_survivor(user_id) and len(devices) > 1):
                reason = "" if user_id == matrix.user_id else HOLD_SURVIVOR_DEVICES
                await self._hold_back(matrix, user_id, undecided, reason, None)
            elif self._is_survivor(user_id):
                for device in undecided:
                    matrix.verify(device)
            elif undecided or user_id in changed:
                staff.append(user_id)
        if not staff:
            return
        assert self.keys is not None, "the trust policy needs the bot's login"
        query = await self.keys.query(staff)
        for user_id in staff:
            await self._decide_staff(matrix, user_id, query)

    async def _decide_staff(self, matrix: BotMatrix, user_id: str, query: dict[str, Any]) -> None:
        current = master_key(query, user_id)
        pinned = await self.pinned(user_id)
        if pinned is None and current is not None and (not self._strict or self._is_admin(user_id)):
            await self._store.set_meta(PINNED + user_id, current)
            log.info("pinned the cross-signing identity of a staff member on first sight")
            pinned = current
        devices = matrix.devices_of(user_id)
        first_look = user_id not in self._seen_masters
        if pinned is not None and current != pinned and (first_look or self._seen_masters[user_id] != current):
            # An identity reset (or a new one): every device is held back, also those trusted
            # before, until an admin trusts the new identity or approves a device by hand.
            self._seen_masters[user_id] = current
            await self._hold_back(matrix, user_id, devices, HOLD_IDENTITY_CHANGED, current, everything=True)
            return
        self._seen_masters[user_id] = current
        signed = signed_devices(query, user_id, pinned) if pinned is not None and current == pinned else {}
        # A session is cross-signed a moment after its keys appear (Element signs it right after
        # sign-in): a device held back for that reason gets keys once it is signed, unless an
        # admin revoked it.
        for device in devices:
            if (matrix.is_held_back(device) and signed.get(device.id) == device.ed25519
                    and not await self._store.get_meta(f"{REVOKED}{user_id} {device.id}")):
                matrix.approve(device)
                log.info("a staff device that was held back is cross-signed now and gets keys")
        for device in [d for d in devices if not matrix.is_decided(d)]:
            if signed.get(device.id) == device.ed25519:
                matrix.verify(device)
            elif self._trust_unsigned and (pinned is None or current == pinned):
                matrix.verify(device)
            else:
                reason = HOLD_IDENTITY_UNVERIFIED if pinned is None and current is not None else HOLD_NOT_CROSS_SIGNED
                await self._hold_back(matrix, user_id, [device], reason, current)

    async def _hold_back(self, matrix: BotMatrix, user_id: str, devices: list[OlmDevice], reason: str,
                         master: str | None, *, everything: bool = False) -> None:
        for device in devices:
            if everything:
                matrix.revoke(device)
            else:
                matrix.hold_back(device)
            log.warning("held back keys from a device (%s)", reason or "the bot's own other device")
            if self._on_held_back is not None and reason:
                await self._on_held_back(user_id, device.id, reason, master)
