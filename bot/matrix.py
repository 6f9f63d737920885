"""The bot's Matrix adapter: the only bot module that imports matrix-nio.

It logs in once and keeps its device (so keys and the device survive restarts), runs the sync
loop, sends only encrypted messages to encrypted rooms, applies the device trust policy before
sharing keys, reads room history, redacts, and forgets a room's Megolm sessions. Its device part
(the devices the bot knows and their trust marks) is bot/devices.py. The inbound translator
(bot/inbound.py) sees nio's event classes only through the names exported here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from nio import (
    Event,
    InviteMemberEvent,
    JoinError,
    KeyVerificationCancel,
    KeyVerificationEvent,
    KeyVerificationKey,
    KeyVerificationMac,
    KeyVerificationStart,
    LoginResponse,
    MegolmEvent,
    RoomCreateError,
    RoomGetStateError,
    RoomInviteError,
    RoomKickError,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessageEmote,
    RoomMessageNotice,
    RoomMessageText,
    RoomVisibility,
    SyncResponse,
    TypingNoticeEvent,
    UnknownEvent,
)
from nio.rooms import MatrixRoom

from bot.devices import Devices
from hotline_runtime.errors import MatrixError
from hotline_runtime.nio_client import HotlineClient
from hotline_runtime import e2ee, erase
from hotline_runtime.matrix_sync import client_config, mute_push, sync_loop

if TYPE_CHECKING:
    from bot.trust import TrustPolicy

# nio's event classes, for the inbound translator (bot/inbound.py) and the verification code.
__all__ = [
    "TEXT_EVENTS", "BotMatrix", "InviteMemberEvent", "KeyVerificationCancel", "KeyVerificationEvent",
    "KeyVerificationKey", "KeyVerificationMac", "KeyVerificationStart", "MegolmEvent", "RoomMemberEvent",
    "SyncResponse", "TypingNoticeEvent", "UnknownEvent", "txn_id_for",
]
TEXT_EVENTS = (RoomMessageText, RoomMessageNotice, RoomMessageEmote)

log = logging.getLogger(__name__)

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
DEVICE_NAME = "hotline-bot"
# A send that fails for a reason the homeserver recovers from is tried again for this long (a
# PostgreSQL restart makes Synapse answer 500 for a few seconds); after that it fails as before.
SEND_RETRY_SECONDS = 60.0


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
        self.devices = Devices(self.client)

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

    async def mute_push(self) -> None:
        await mute_push(self.client)

    async def upload_keys_if_needed(self) -> None:
        if self.client.should_upload_keys:
            await self.client.keys_upload()

    async def sync_forever(self, on_response: Callable[[SyncResponse], Awaitable[None]], *, since: str | None,
                           save_position: Callable[[str], Awaitable[None]]) -> None:
        """The sync loop of hotline_runtime.matrix_sync (raises SessionGone when the login is refused)."""
        await sync_loop(self.client, on_response, since=since, save_position=save_position)

    # ------------------------------------------------------------------ rooms

    async def join(self, room_id: str) -> bool:
        """Join a room; True if the bot can send into it at once (see ``_take_in``). While the
        join goes out, the inviter's device keys are fetched and an Olm session is made with
        each of its devices, which the first send into the room would otherwise wait for."""
        invited = self.client.invited_rooms.get(room_id)
        inviter = getattr(invited, "inviter", None)
        ahead = asyncio.ensure_future(self._olm_ahead(inviter)) if inviter else None
        try:
            response = await self.client.join(room_id)
        finally:
            if ahead is not None:
                await asyncio.gather(ahead, return_exceptions=True)  # the send does what is missing
        if isinstance(response, JoinError):
            raise MatrixError("join", response.status_code)
        return await self._take_in(room_id)

    async def _olm_ahead(self, user_id: str) -> None:
        client, olm = self.client, self.client.olm
        if olm is None:
            return
        if not e2ee.other_devices(client, user_id):
            olm.users_for_key_query.add(user_id)
            await client.keys_query()
        await e2ee.claim_sessions(client, user_id, lambda device: True)

    async def _take_in(self, room_id: str) -> bool:
        """Learn a room just joined from its current state, as nio learns it from the sync that
        brings the join: the bot can then send into it without waiting for that sync (which,
        when many chats start at once, comes long after). The sync then finds the room known and
        updates it as usual. False if the state could not be fetched: the sync brings the room."""
        client = self.client
        if room_id in client.rooms:
            return True
        state = await client.room_get_state(room_id)
        if room_id in client.rooms:  # the sync came first
            return True
        if isinstance(state, RoomGetStateError):
            return False
        room = MatrixRoom(room_id, client.user_id, room_id in client.encrypted_rooms)
        for source in state.events:
            event = Event.parse_event(source)
            if isinstance(event, RoomMemberEvent):
                room.handle_membership(event)
            elif isinstance(event, Event):
                room.handle_event(event)
        room.members_synced = True  # the state holds every member's membership
        client.invited_rooms.pop(room_id, None)
        client.rooms[room_id] = room
        if room.encrypted:
            client.encrypted_rooms.add(room_id)
            if client.store is not None:
                client.store.save_encrypted_rooms({room_id})
            if client.olm is not None:
                client.olm.update_tracked_users(room)
        return True

    async def invite(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_invite(room_id, user_id)
        if isinstance(response, RoomInviteError):
            raise MatrixError("invite", response.status_code)

    async def kick(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_kick(room_id, user_id)
        if isinstance(response, RoomKickError):
            raise MatrixError("kick", response.status_code)

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

    def room_users(self, room_id: str) -> list[str]:
        """Everyone in the room, the invited too (they get the room keys)."""
        return list(self.client.rooms[room_id].users)

    def knows_room(self, room_id: str) -> bool:
        return room_id in self.client.rooms

    async def typing(self, room_id: str, typing: bool, timeout_ms: int | None = None) -> None:
        if timeout_ms is None:
            await self.client.room_typing(room_id, typing_state=typing)
        else:
            await self.client.room_typing(room_id, typing_state=typing, timeout=timeout_ms)

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
        restarts; no connection; a timeout) is tried again for up to SEND_RETRY_SECONDS with the
        same transaction id (hotline_runtime/e2ee.py): no person stands behind the bot's sends to
        press "resend", and the message is delivered once however many attempts it took.
        A survivor's one device must get the key, or the page could not read the bot; staff have
        other devices and clients that ask for missing keys, so theirs are best effort."""
        return await e2ee.send_encrypted_retrying(
            self.client, room_id, content, event_type=event_type, txn_id=txn_id or f"bot-{uuid4().hex}",
            within=SEND_RETRY_SECONDS, trust=lambda users: trust.review(self, users), must_read=trust.is_survivor)

    # ------------------------------------------------------------------ history and erase

    def history(self, room_id: str) -> AsyncIterator[Any]:
        """The room's events, newest first, decrypted where the keys are here."""
        return erase.history(self.client, room_id)

    async def redact(self, room_id: str, event_id: str) -> None:
        await erase.redact(self.client, room_id, event_id)

    def forget_room_keys(self, room_ids: list[str]) -> None:
        """Crypto-shredding: drop the rooms' Megolm sessions from memory and from the store."""
        erase.forget_room_keys(self.client, room_ids)

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

    async def request_room_key(self, event: MegolmEvent) -> None:
        """Ask the sender's devices for the room key of an event the bot could not decrypt."""
        await self.client.request_room_key(event)

    def decrypt(self, event: MegolmEvent) -> Any | None:
        try:
            return self.client.decrypt_event(event)
        except Exception:
            return None
