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

from nio import (
    AsyncClient,
    JoinError,
    LoginResponse,
    MegolmEvent,
    OlmUnverifiedDeviceError,
    RoomCreateError,
    RoomInviteError,
    RoomLeaveResponse,
    RoomMessagesError,
    RoomRedactError,
    RoomSendError,
    RoomVisibility,
)
from nio.crypto import OlmDevice
from nio.exceptions import OlmTrustError
from nio.store.models import MegolmInboundSessions

from bot.errors import EncryptionUnavailable, MatrixError
from hotline.nio_sync import KeysUnavailable, client_config, members_and_keys, olm_sessions

log = logging.getLogger(__name__)

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
DEVICE_NAME = "hotline-bot"
REDACT_CONCURRENCY = 16  # redactions in flight at once while erasing


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
        self.client = AsyncClient(
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
        """Send encrypted; never in clear. Raises EncryptionUnavailable or MatrixError."""
        room = self.client.rooms.get(room_id)
        if room is None:
            raise MatrixError("send", "unknown room", "not synced yet")
        if not room.encrypted:
            raise EncryptionUnavailable("the room is not encrypted; refusing to send")
        try:
            await members_and_keys(self.client, room_id)
        except KeysUnavailable as error:
            raise MatrixError("preparing encryption", None, str(error)) from error
        await trust.apply(self, room_id)
        try:
            # A survivor's one device must get the key, or the page could not read the bot; staff
            # have other devices and clients that ask for missing keys, so theirs are best effort.
            await olm_sessions(self.client, room_id, {u for u in room.users if trust.is_survivor(u)})
        except KeysUnavailable as error:
            raise MatrixError("preparing encryption", None, str(error)) from error
        try:
            response = await self.client.room_send(room_id, event_type, content, tx_id=txn_id)
        except (OlmTrustError, OlmUnverifiedDeviceError) as error:
            raise EncryptionUnavailable(str(error)) from error
        if isinstance(response, RoomSendError):
            raise MatrixError("send", response.status_code)
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

    def decrypt(self, event: MegolmEvent) -> Any | None:
        try:
            return self.client.decrypt_event(event)
        except Exception:
            return None


class TrustPolicy:
    """Who gets the bot's room keys (privacy rule 4).

    - A survivor account: its single device, trusted on first sight. A survivor account with
      more than one device gets no keys at all (the gateway makes exactly one).
    - Staff: the devices present when the bot first sees the staff member are trusted
      (enrollment); a device that appears later is held back until an admin approves it,
      unless ``trust_new_staff_devices`` (demos only).
    - Anyone else, and the bot's own other devices: held back.
    - ``strict``: no enrollment on first sight except for admins (someone must be able to
      confirm); every other staff device waits for an emoji verification confirmed by an admin
      (``!verify``) or an admin's ``!approve``.
    """

    def __init__(self, store: Any, is_survivor_account: Any, trust_new_staff_devices: bool,
                 on_held_back: Any = None, *, strict: bool = False, is_admin: Any = None) -> None:
        self._store = store
        self._is_survivor = is_survivor_account
        self._trust_new = trust_new_staff_devices
        self._on_held_back = on_held_back
        self._strict = strict  # no trust on first sight for staff: verification or approval only
        self._is_admin = is_admin or (lambda user_id: False)

    def is_survivor(self, user_id: str) -> bool:
        return bool(self._is_survivor(user_id))

    async def apply(self, matrix: BotMatrix, room_id: str) -> None:
        await self.review(matrix, list(matrix.client.rooms[room_id].users))

    async def review(self, matrix: BotMatrix, user_ids: list[str]) -> None:
        """Decide every undecided device of these users (after a send or a device-list change)."""
        for user_id in user_ids:
            devices = matrix.devices_of(user_id)
            undecided = [d for d in devices if not matrix.is_decided(d)]
            if not undecided:
                continue
            if user_id == matrix.user_id:
                trusted = False
            elif self._is_survivor(user_id):
                trusted = len(devices) == 1
            elif self._trust_new or ((not self._strict or self._is_admin(user_id))
                                     and not await self._store.is_enrolled(user_id)):
                trusted = True
                await self._store.enroll(user_id)
            else:
                trusted = False
            for device in undecided:
                if trusted:
                    matrix.verify(device)
                else:
                    matrix.hold_back(device)
                    log.warning("held back keys from device %s of %s", device.id, user_id)
                    if self._on_held_back is not None:
                        await self._on_held_back(user_id, device.id)
