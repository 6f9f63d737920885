"""Inbound: a sync response from the Matrix adapter → events for the rules (bot.conversation).

Only what the rules may act on becomes an event: the survivor's own end-to-end encrypted words
and signals in a survivor room, staff text from a trusted device, membership changes, invites.
The gateway's pooled answers are counted here; typing is mirrored here. nio's event classes come
through bot/matrix.py, the only bot module that imports matrix-nio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot import commands
from bot.conversation import (
    Chat,
    CommandGiven,
    Event,
    Hotline,
    InviteReceived,
    MemberJoined,
    MemberLeft,
    Phase,
    Reply,
    StaffEdited,
    StaffWrote,
    SurvivorAnswered,
    SurvivorDisconnected,
    SurvivorEnded,
    SurvivorProfile,
    SurvivorReconnected,
    SurvivorWrote,
)
from bot.ids import EventId, RoomId, UserId, new_ref, server_name
from bot.matrix import (
    TEXT_EVENTS,
    BotMatrix,
    InviteMemberEvent,
    KeyVerificationEvent,
    MegolmEvent,
    RoomMemberEvent,
    SyncResponse,
    TypingNoticeEvent,
    UnknownEvent,
)
from bot.sender import Sender
from bot.settings import BotSettings
from bot.staff import Staff
from bot.store import Store
from bot.tasks import Tasks, guarded
from bot.trust import TrustPolicy
from bot.verification import Verification
from hotline_runtime.errors import incident_id
from hotline_runtime.wire import (
    ANSWERS_EVENT,
    CODEWORD_QUESTIONS,
    CONTROL_EVENT,
    GATEWAY_SENDER_LOCALPART,
    MAX_CODEWORD_CHARS,
    Control,
)

log = logging.getLogger(__name__)

CONTROL_EVENTS = {
    Control.END: SurvivorEnded,
    Control.DISCONNECTED: SurvivorDisconnected,
    Control.RECONNECTED: SurvivorReconnected,
}
UNDECRYPTABLE_GRACE_SECONDS = 5.0  # a room key often arrives a moment after the message


class Inbound:
    def __init__(self, settings: BotSettings, store: Store, matrix: BotMatrix, staff: Staff, trust: TrustPolicy,
                 verification: Verification, sender: Sender, tasks: Tasks,
                 state: Callable[[], Hotline], handle: Callable[[Event], Awaitable[None]]) -> None:
        self.settings = settings
        self.store = store
        self.matrix = matrix
        self.staff = staff
        self.trust = trust
        self.verification = verification
        self.sender = sender
        self.tasks = tasks
        self.state = state  # the rules' current state (read only)
        self.handle = handle  # one event at a time through the rules
        self.gateway = f"@{GATEWAY_SENDER_LOCALPART}:{server_name(settings.bot_user_id)}"
        self.first_sync = False  # the very first start: old room history is not ours to act on
        self._undecrypted: list[tuple[RoomId, MegolmEvent]] = []

    async def on_sync(self, response: SyncResponse) -> None:
        for event in response.to_device_events:
            if isinstance(event, KeyVerificationEvent):
                await guarded(self.verification.on_event, event)
        # A staff member's new device is decided (and announced) as soon as the bot knows of it, not at
        # its next message to that person. In memory and cheap: only undecided devices cost anything.
        changed = frozenset(response.device_list.changed)
        await guarded(self.trust.review, self.matrix, sorted(self.staff.members()), changed)
        await self._on_invites(response)
        if self.first_sync:
            self.first_sync = False
            return
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                await guarded(self.on_timeline_event, RoomId(room_id), event)
            for event in info.ephemeral:
                if isinstance(event, TypingNoticeEvent):
                    await guarded(self._on_typing, RoomId(room_id), event.users)
        await self._retry_undecrypted()

    async def _on_invites(self, response: SyncResponse) -> None:
        me = self.matrix.user_id
        for room_id, info in response.rooms.invite.items():
            inviter = next(
                (e.sender for e in info.invite_state
                 if isinstance(e, InviteMemberEvent) and e.state_key == me and e.membership == "invite"),
                None,
            )
            if inviter is not None:
                invite = InviteReceived(RoomId(room_id), UserId(inviter), new_ref(set(self.state().chats)))
                await guarded(self.handle, invite)

    async def on_timeline_event(self, room: RoomId, event: Any) -> None:
        if isinstance(event, RoomMemberEvent):
            if event.membership == "join" and event.prev_membership != "join":
                await self.handle(MemberJoined(room, UserId(event.state_key)))
            elif event.membership in ("leave", "ban") and event.prev_membership in ("join", "invite"):
                # Left, removed, declined an invitation, or the account was closed.
                await self.handle(MemberLeft(room, UserId(event.state_key)))
            return
        if getattr(event, "sender", None) == self.matrix.user_id:
            return
        if isinstance(event, MegolmEvent):
            await self._undecryptable(room, event)
            return
        chat = self.state().by_survivor_room(room)
        if chat is not None:
            await self._on_survivor_room_event(room, chat, event)
            return
        if room == self.settings.service_room:
            await self._on_service_room_event(event)
            return
        if isinstance(event, TEXT_EVENTS) and getattr(event, "decrypted", False):
            if await self.verification.from_trusted_device(room, event):
                content = event.source.get("content", {})
                written = commands.written(content if isinstance(content, dict) else {})
                await self._on_staff_text(room, UserId(event.sender), EventId(event.event_id), written)

    async def _on_survivor_room_event(self, room: RoomId, chat: Chat, event: Any) -> None:
        if event.sender != chat.survivor or not getattr(event, "decrypted", False):
            return  # only the survivor's account, and only what was end-to-end encrypted
        if isinstance(event, TEXT_EVENTS):
            await self.handle(SurvivorWrote(room, UserId(event.sender), EventId(event.event_id), event.body))
        elif isinstance(event, UnknownEvent) and event.type == CONTROL_EVENT:
            await self._on_control(room, event)

    async def _on_control(self, room: RoomId, event: Any) -> None:
        """A signal from the page, through the gateway: profile, an answer, end, (dis)connected."""
        content = event.source.get("content", {})
        action = content.get("action")
        if action == Control.PROFILE:
            # The survivor started the chat (with or without a language): always passed on.
            language = content.get("language")
            await self.handle(SurvivorProfile(room, language[:40] if isinstance(language, str) else ""))
            return
        if action == Control.ANSWER:
            question, value = content.get("question"), content.get("value")
            if question in CODEWORD_QUESTIONS and isinstance(value, str) and len(value) <= MAX_CODEWORD_CHARS:
                await self.handle(SurvivorAnswered(room, question, value, EventId(event.event_id)))
            elif isinstance(question, str) and value in ("yes", "no"):
                await self.handle(SurvivorAnswered(room, question[:40], value, EventId(event.event_id)))
            return
        kind = CONTROL_EVENTS.get(action)  # type: ignore[call-overload]
        if kind is not None:
            await self.handle(kind(room))

    async def _on_service_room_event(self, event: Any) -> None:
        """Pooled answers to the page's optional questions, from the gateway: counts only."""
        if not (isinstance(event, UnknownEvent) and event.type == ANSWERS_EVENT and event.sender == self.gateway
                and getattr(event, "decrypted", False)):
            return
        content = event.source.get("content", {})
        day, counts = content.get("day"), content.get("counts")
        if not isinstance(day, str) or len(day) != 10 or not isinstance(counts, dict):
            log.warning("ignored a malformed answers event")
            return
        for question, answers in list(counts.items())[:50]:
            if not isinstance(question, str) or not isinstance(answers, dict):
                continue
            for answer, n in list(answers.items())[:50]:
                if isinstance(answer, str) and isinstance(n, int) and 0 < n < 1_000_000:
                    await self.store.count(day, f"answer:{question[:40]}", answer[:40], n)

    async def _on_typing(self, room: RoomId, users: list[str]) -> None:
        """The advocate typing in the case room shows as the bot typing in the survivor room."""
        chat = self.state().by_case_room(room)
        if chat is None or chat.phase is not Phase.ACTIVE or chat.advocate is None:
            return
        await self.sender.show_typing(chat.survivor_room, chat.advocate in users)

    async def _on_staff_text(self, room: RoomId, sender: UserId, event_id: EventId, written: commands.Written) -> None:
        """Commands are recognised on the text as meant: a reply without its quote, an edit's new text."""
        command = commands.parse(written.text)
        if command is None:
            await self.handle(StaffEdited(room, sender, event_id) if written.edit
                              else StaffWrote(room, sender, event_id, written.text))
            return
        named = getattr(command, "to", None) or getattr(command, "user", None)
        target_roles = self.staff.roles_of(UserId(named)) if isinstance(named, str) else frozenset()
        await self.handle(CommandGiven(room, sender, command, self.staff.roles_of(sender), event_id, target_roles))

    # ------------------------------------------------------------------ undecryptable events

    async def _undecryptable(self, room: RoomId, event: MegolmEvent) -> None:
        self._undecrypted.append((room, event))
        try:
            # Ask the sender's devices for the room key; it may have been shared before a session existed.
            await self.matrix.request_room_key(event)
        except Exception as error:  # e.g. a request for that session is already out
            log.info("room key request not sent (%s)", type(error).__name__)
        chat = self.state().by_survivor_room(room)
        if chat is None and event.sender in self.staff.members():
            self.tasks.spawn(self._tell_undecryptable(room, event), "tell a staff member a message was unreadable")
        if chat is not None and chat.case_room is not None:
            incident = incident_id()
            log.warning("incident %s: an event in a survivor room could not be decrypted yet", incident)
            await self.sender.reply(Reply(chat.case_room, "undecryptable", (("incident", incident),)))

    async def _tell_undecryptable(self, room: RoomId, event: MegolmEvent) -> None:
        """A staff message still unreadable after a few seconds (its key may be on the way): the
        sender is told in that room, once per device, instead of being left in silence."""
        await asyncio.sleep(UNDECRYPTABLE_GRACE_SECONDS)
        if not any(e.event_id == event.event_id for _, e in self._undecrypted):
            return
        device = self.matrix.devices.device_by_key(event.sender, event.sender_key)
        device_id = device.id if device else (getattr(event, "device_id", None) or "?")
        log.warning("a staff message could not be decrypted")
        await self.verification.tell_sender_once(room, "staff_undecryptable", event.sender, device_id)

    async def _retry_undecrypted(self) -> None:
        pending, self._undecrypted = self._undecrypted, []
        for room, event in pending:
            decrypted = self.matrix.decrypt(event)
            if decrypted is None:
                if self.matrix.knows_room(room):
                    self._undecrypted.append((room, event))
                continue
            decrypted.decrypted = True
            await guarded(self.on_timeline_event, room, decrypted)
