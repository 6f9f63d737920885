"""The conversation rules: events in, new state and effects out. No I/O, no awaits.

``apply(state, event, now)`` is the only way the bot's routing state changes. The adapters turn
Matrix events into the events below and carry out the effects; the tests drive this module with
plain tables of events (see tests/test_conversation.py).

A chat moves WAITING → INVITING (claimed; case room made, advocate invited) → ACTIVE (advocate
joined; relaying both ways) → CLOSING (final notice sent, erase under way) → gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from bot.commands import Claim, Close, Command, Help, Invalid
from bot.ids import ChatRef, EventId, RoomId, UserId
from hotline.wire import Role


class Phase(StrEnum):
    WAITING = "waiting"
    INVITING = "inviting"
    ACTIVE = "active"
    CLOSING = "closing"


class CloseReason(StrEnum):
    ADVOCATE = "advocate"
    SURVIVOR = "survivor"
    CONNECTION_LOST = "connection_lost"


@dataclass(frozen=True)
class Chat:
    ref: ChatRef
    survivor_room: RoomId
    survivor: UserId
    opened_at: float
    phase: Phase = Phase.WAITING
    advocate: UserId | None = None
    case_room: RoomId | None = None
    disconnected_at: float | None = None


@dataclass(frozen=True)
class Rules:
    bot: UserId
    survivor_prefix: str  # "@chat_"
    server_name: str
    reconnect_grace: float = 120.0

    def is_survivor_account(self, user_id: str) -> bool:
        localpart, _, server = user_id.partition(":")
        return (
            localpart.startswith(self.survivor_prefix)
            and len(localpart) > len(self.survivor_prefix)
            and server == self.server_name
        )


@dataclass(frozen=True)
class Hotline:
    rules: Rules
    chats: dict[ChatRef, Chat] = field(default_factory=dict)

    def by_survivor_room(self, room: RoomId) -> Chat | None:
        return next((c for c in self.chats.values() if c.survivor_room == room), None)

    def by_case_room(self, room: RoomId) -> Chat | None:
        return next((c for c in self.chats.values() if c.case_room == room), None)

    def oldest_waiting(self) -> Chat | None:
        waiting = [c for c in self.chats.values() if c.phase is Phase.WAITING]
        return min(waiting, key=lambda c: (c.opened_at, c.ref), default=None)

    def with_chat(self, chat: Chat) -> Hotline:
        return replace(self, chats={**self.chats, chat.ref: chat})

    def without(self, ref: ChatRef) -> Hotline:
        return replace(self, chats={k: v for k, v in self.chats.items() if k != ref})


# ---------------------------------------------------------------- events (past tense)


@dataclass(frozen=True)
class InviteReceived:
    room: RoomId
    inviter: UserId
    ref: ChatRef  # a fresh random reference, made by the caller


@dataclass(frozen=True)
class SurvivorWrote:
    room: RoomId
    sender: UserId
    event_id: EventId
    text: str


@dataclass(frozen=True)
class StaffWrote:
    room: RoomId
    sender: UserId
    event_id: EventId
    text: str


@dataclass(frozen=True)
class CommandGiven:
    room: RoomId
    sender: UserId
    command: Command
    sender_is_advocate: bool  # a member of the dispatch room


@dataclass(frozen=True)
class CaseRoomOpened:
    ref: ChatRef
    room: RoomId


@dataclass(frozen=True)
class MemberJoined:
    room: RoomId
    user: UserId


@dataclass(frozen=True)
class SurvivorEnded:
    room: RoomId


@dataclass(frozen=True)
class SurvivorDisconnected:
    room: RoomId


@dataclass(frozen=True)
class SurvivorReconnected:
    room: RoomId


@dataclass(frozen=True)
class ClockTicked:
    pass


@dataclass(frozen=True)
class ChatErased:
    ref: ChatRef


Event = (
    InviteReceived
    | SurvivorWrote
    | StaffWrote
    | CommandGiven
    | CaseRoomOpened
    | MemberJoined
    | SurvivorEnded
    | SurvivorDisconnected
    | SurvivorReconnected
    | ClockTicked
    | ChatErased
)

# ---------------------------------------------------------------- effects (imperative)


@dataclass(frozen=True)
class AcceptInvite:
    room: RoomId


@dataclass(frozen=True)
class PostAlert:
    ref: ChatRef


@dataclass(frozen=True)
class Reply:
    """A notice in a staff room (dispatch, case or admin room); ``key`` is in messages.STAFF."""

    room: RoomId
    key: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NotifySurvivor:
    """An automatic notice to the survivor; ``key`` is in messages.SURVIVOR."""

    room: RoomId
    key: str


@dataclass(frozen=True)
class RelayToCase:
    room: RoomId  # the case room
    source: EventId
    text: str


@dataclass(frozen=True)
class RelayToSurvivor:
    room: RoomId  # the survivor room
    source: EventId
    text: str
    role: Role


@dataclass(frozen=True)
class OpenCaseRoom:
    ref: ChatRef
    advocate: UserId


@dataclass(frozen=True)
class RelayBacklog:
    """Relay what the survivor wrote before the advocate joined, oldest first."""

    survivor_room: RoomId
    survivor: UserId
    case_room: RoomId


@dataclass(frozen=True)
class SignalClosed:
    room: RoomId  # the survivor room: tells the gateway the chat is over


@dataclass(frozen=True)
class EraseChat:
    chat: Chat


Effect = (
    AcceptInvite
    | PostAlert
    | Reply
    | NotifySurvivor
    | RelayToCase
    | RelayToSurvivor
    | OpenCaseRoom
    | RelayBacklog
    | SignalClosed
    | EraseChat
)

Result = tuple[Hotline, list[Effect]]


class IllegalTransition(Exception):
    """An event that cannot happen in the chat's current phase. The state is unchanged."""


# ---------------------------------------------------------------- rules


def apply(state: Hotline, event: Event, now: float) -> Result:
    handler = _HANDLERS[type(event)]
    return handler(state, event, now)


def recover(state: Hotline) -> list[Effect]:
    """After a restart: the effects of interrupted work, so that it is finished, not lost."""
    effects: list[Effect] = []
    for chat in sorted(state.chats.values(), key=lambda c: c.opened_at):
        if chat.phase is Phase.CLOSING:
            effects.append(EraseChat(chat))
        elif chat.phase is Phase.INVITING and chat.case_room is None and chat.advocate:
            effects.append(OpenCaseRoom(chat.ref, chat.advocate))
    return effects


def on_invite_received(state: Hotline, event: InviteReceived, now: float) -> Result:
    if not state.rules.is_survivor_account(event.inviter):
        return state, []  # invites from anyone else are ignored
    if state.by_survivor_room(event.room) is not None:
        return state, []  # a replayed invite
    if event.ref in state.chats:
        raise IllegalTransition(f"reference {event.ref} is in use")
    chat = Chat(ref=event.ref, survivor_room=event.room, survivor=event.inviter, opened_at=now)
    # The welcome and the alert follow when the bot's own join shows up (MemberJoined).
    return state.with_chat(chat), [AcceptInvite(event.room)]


def on_survivor_wrote(state: Hotline, event: SurvivorWrote, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or event.sender != chat.survivor:
        return state, []
    if chat.phase is Phase.ACTIVE and chat.case_room is not None:
        return state, [RelayToCase(chat.case_room, event.event_id, event.text)]
    # WAITING / INVITING: relayed as backlog when the advocate joins; CLOSING: dropped.
    return state, []


def on_staff_wrote(state: Hotline, event: StaffWrote, now: float) -> Result:
    chat = state.by_case_room(event.room)
    if chat is None or chat.phase is not Phase.ACTIVE or event.sender != chat.advocate:
        return state, []
    return state, [RelayToSurvivor(chat.survivor_room, event.event_id, event.text, Role.ADVOCATE)]


def on_command_given(state: Hotline, event: CommandGiven, now: float) -> Result:
    command = event.command
    if isinstance(command, Invalid):
        return state, [Reply(event.room, command.reason, (("name", command.name),))]
    if isinstance(command, Help):
        return state, [Reply(event.room, "help")]
    if isinstance(command, Claim):
        return _claim(state, event, command)
    if isinstance(command, Close):
        return _close_command(state, event)
    raise IllegalTransition(f"unhandled command {command!r}")


def _claim(state: Hotline, event: CommandGiven, command: Claim) -> Result:
    if not event.sender_is_advocate:
        return state, [Reply(event.room, "not_advocate")]
    if command.ref is None:
        chat = state.oldest_waiting()
        if chat is None:
            return state, [Reply(event.room, "nothing_waiting")]
    else:
        chat = state.chats.get(command.ref)
        if chat is None:
            return state, [Reply(event.room, "unknown_ref", (("ref", command.ref),))]
        if chat.phase is not Phase.WAITING:
            return state, [Reply(event.room, "already_taken", (("ref", chat.ref),))]
    claimed = replace(chat, phase=Phase.INVITING, advocate=event.sender)
    return state.with_chat(claimed), [
        Reply(event.room, "claimed", (("ref", chat.ref),)),
        OpenCaseRoom(chat.ref, event.sender),
    ]


def _close_command(state: Hotline, event: CommandGiven) -> Result:
    chat = state.by_case_room(event.room)
    if chat is None:
        return state, [Reply(event.room, "close_in_case_room")]
    if event.sender != chat.advocate:
        return state, [Reply(event.room, "not_your_chat")]
    if chat.phase is Phase.CLOSING:
        return state, []
    return _close(state, chat, CloseReason.ADVOCATE)


def _close(state: Hotline, chat: Chat, reason: CloseReason) -> Result:
    closing = replace(chat, phase=Phase.CLOSING)
    effects: list[Effect] = [NotifySurvivor(chat.survivor_room, "chat_ended")]
    if chat.case_room is not None:
        effects.append(Reply(chat.case_room, f"closed_{reason}", (("ref", chat.ref),)))
    effects += [SignalClosed(chat.survivor_room), EraseChat(closing)]
    return state.with_chat(closing), effects


def on_case_room_opened(state: Hotline, event: CaseRoomOpened, now: float) -> Result:
    chat = state.chats.get(event.ref)
    if chat is None or chat.phase is not Phase.INVITING:
        raise IllegalTransition(f"case room for {event.ref} in phase {chat and chat.phase}")
    return state.with_chat(replace(chat, case_room=event.room)), []


def on_member_joined(state: Hotline, event: MemberJoined, now: float) -> Result:
    if event.user == state.rules.bot:
        chat = state.by_survivor_room(event.room)
        if chat is None or chat.phase is not Phase.WAITING:
            return state, []
        return state, [NotifySurvivor(chat.survivor_room, "welcome"), PostAlert(chat.ref)]
    chat = state.by_case_room(event.room)
    if chat is None or chat.phase is not Phase.INVITING or event.user != chat.advocate:
        return state, []
    assert chat.case_room is not None
    active = replace(chat, phase=Phase.ACTIVE)
    effects: list[Effect] = [
        Reply(chat.case_room, "case_intro", (("ref", chat.ref),)),
        RelayBacklog(chat.survivor_room, chat.survivor, chat.case_room),
        NotifySurvivor(chat.survivor_room, "advocate_joined"),
    ]
    if chat.disconnected_at is not None:
        effects.append(_disconnected_notice(state, chat))
    return state.with_chat(active), effects


def on_survivor_ended(state: Hotline, event: SurvivorEnded, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING:
        return state, []
    return _close(state, chat, CloseReason.SURVIVOR)


def on_survivor_disconnected(state: Hotline, event: SurvivorDisconnected, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING or chat.disconnected_at is not None:
        return state, []
    chat = replace(chat, disconnected_at=now)
    effects: list[Effect] = []
    if chat.phase is Phase.ACTIVE:
        effects.append(_disconnected_notice(state, chat))
    return state.with_chat(chat), effects


def _disconnected_notice(state: Hotline, chat: Chat) -> Reply:
    assert chat.case_room is not None
    minutes = max(1, round(state.rules.reconnect_grace / 60))
    return Reply(chat.case_room, "survivor_disconnected", (("minutes", str(minutes)),))


def on_survivor_reconnected(state: Hotline, event: SurvivorReconnected, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING or chat.disconnected_at is None:
        return state, []
    chat = replace(chat, disconnected_at=None)
    effects: list[Effect] = []
    if chat.phase is Phase.ACTIVE and chat.case_room is not None:
        effects.append(Reply(chat.case_room, "survivor_reconnected"))
    return state.with_chat(chat), effects


def on_clock_ticked(state: Hotline, event: ClockTicked, now: float) -> Result:
    effects: list[Effect] = []
    for chat in sorted(state.chats.values(), key=lambda c: c.opened_at):
        if (
            chat.phase is not Phase.CLOSING
            and chat.disconnected_at is not None
            and now - chat.disconnected_at >= state.rules.reconnect_grace
        ):
            state, more = _close(state, chat, CloseReason.CONNECTION_LOST)
            effects += more
    return state, effects


def on_chat_erased(state: Hotline, event: ChatErased, now: float) -> Result:
    chat = state.chats.get(event.ref)
    if chat is None:
        return state, []
    if chat.phase is not Phase.CLOSING:
        raise IllegalTransition(f"{event.ref} erased while {chat.phase}")
    return state.without(event.ref), []


_HANDLERS = {
    InviteReceived: on_invite_received,
    SurvivorWrote: on_survivor_wrote,
    StaffWrote: on_staff_wrote,
    CommandGiven: on_command_given,
    CaseRoomOpened: on_case_room_opened,
    MemberJoined: on_member_joined,
    SurvivorEnded: on_survivor_ended,
    SurvivorDisconnected: on_survivor_disconnected,
    SurvivorReconnected: on_survivor_reconnected,
    ClockTicked: on_clock_ticked,
    ChatErased: on_chat_erased,
}
