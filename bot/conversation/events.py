"""What happens, as the adapters report it (past tense). Plain data; no rules here."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.commands import Command
from bot.conversation.state import StaffRole
from bot.ids import ChatRef, EventId, RoomId, UserId



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
class SurvivorProfile:
    room: RoomId
    language: str


@dataclass(frozen=True)
class SurvivorNotified:
    """A notice reached the survivor room (sent, encrypted)."""

    room: RoomId
    key: str


@dataclass(frozen=True)
class StaffWrote:
    room: RoomId
    sender: UserId
    event_id: EventId
    text: str


@dataclass(frozen=True)
class StaffEdited:
    """A staff member edited an earlier message (m.replace) into text that is not a command."""

    room: RoomId
    sender: UserId
    event_id: EventId


@dataclass(frozen=True)
class CommandGiven:
    room: RoomId
    sender: UserId
    command: Command
    roles: frozenset[StaffRole]
    event_id: EventId = EventId("")
    target_roles: frozenset[StaffRole] = frozenset()  # of the user a command names, if any


@dataclass(frozen=True)
class SurvivorAnswered:
    """The survivor answered a question the page asked (Yes/No, or a code word)."""

    room: RoomId
    question: str
    value: str = field(repr=False)  # may be a code word: never in a repr, a log or a room
    event_id: EventId = EventId("")


@dataclass(frozen=True)
class CodewordChecked:
    ref: ChatRef
    case: str
    matched: bool


@dataclass(frozen=True)
class MemberLeft:
    room: RoomId
    user: UserId


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
class RelayFailed:
    """A relay into ``room`` (RelayToCase or RelayToSurvivor) could not be delivered, after the
    retries of a send (bot/service.py); ``incident`` is in the log."""

    room: RoomId
    incident: str
    text: str = field(repr=False)  # what was to be relayed: never in a repr or a log


@dataclass(frozen=True)
class ClockTicked:
    pass


@dataclass(frozen=True)
class ChatErased:
    ref: ChatRef


Event = (
    InviteReceived
    | SurvivorWrote
    | SurvivorProfile
    | SurvivorNotified
    | RelayFailed
    | StaffWrote
    | StaffEdited
    | CommandGiven
    | SurvivorAnswered
    | CodewordChecked
    | MemberLeft
    | CaseRoomOpened
    | MemberJoined
    | SurvivorEnded
    | SurvivorDisconnected
    | SurvivorReconnected
    | ClockTicked
    | ChatErased
)

