"""What the bot is to do (imperative). Plain data: the adapters carry these out."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.conversation.state import Chat, CodewordMode, StaffRole
from bot.ids import ChatRef, EventId, RoomId, UserId
from hotline_runtime.wire import Role

Params = tuple[tuple[str, str], ...]



@dataclass(frozen=True)
class AcceptInvite:
    room: RoomId


@dataclass(frozen=True)
class PostAlert:
    ref: ChatRef
    waited_minutes: int = 0  # > 0: a repeat for a chat still waiting


@dataclass(frozen=True)
class Escalate:
    ref: ChatRef
    waited_minutes: int


@dataclass(frozen=True)
class PostAlertGroup:
    """One dispatch alert for several waiting chats, in queue order: (ref, language or "")."""

    chats: tuple[tuple[ChatRef, str], ...]
    longest_minutes: int


@dataclass(frozen=True)
class EscalateGroup:
    refs: tuple[ChatRef, ...]
    longest_minutes: int


@dataclass(frozen=True)
class Reply:
    """A notice in a staff room (dispatch, case or admin room); ``key`` is in messages.STAFF."""

    room: RoomId
    key: str
    params: Params = ()


@dataclass(frozen=True)
class NotifySurvivor:
    """An automatic notice to the survivor; ``key`` is in the survivor catalog."""

    room: RoomId
    key: str
    params: Params = ()


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
class SendCanned:
    """A canned message from the library, sent to the survivor as the advocate's words."""

    survivor_room: RoomId
    case_room: RoomId
    key: str
    source: EventId


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


@dataclass(frozen=True)
class Count:
    """Add one to today's aggregate statistic (never tied to a chat)."""

    metric: str
    bucket: str = ""


@dataclass(frozen=True)
class SetService:
    closed: bool
    message: str = ""


@dataclass(frozen=True)
class ShowStats:
    room: RoomId
    days: int


@dataclass(frozen=True)
class ShowHelp:
    room: RoomId
    roles: frozenset[StaffRole]


@dataclass(frozen=True)
class ListCanned:
    room: RoomId


@dataclass(frozen=True)
class InviteToCase:
    room: RoomId
    user: UserId


@dataclass(frozen=True)
class RemoveFromCase:
    """Someone joined a case room without the invitation the rules gave: they are removed (and
    the room told) unless they are gone already."""

    room: RoomId
    user: UserId


@dataclass(frozen=True)
class EraseCaseRoom:
    """A case room the chat has left (after a transfer): redact, purge; its advocate loses it."""

    room: RoomId


@dataclass(frozen=True)
class AskSurvivor:
    room: RoomId
    question: str


@dataclass(frozen=True)
class ShowDevices:
    room: RoomId


@dataclass(frozen=True)
class DecideDevice:
    room: RoomId
    user: UserId
    device: str
    approve: bool


@dataclass(frozen=True)
class PinIdentity:
    room: RoomId
    user: UserId


@dataclass(frozen=True)
class ConfirmVerification:
    room: RoomId
    user: UserId
    device: str


@dataclass(frozen=True)
class SetLanguages:
    room: RoomId
    user: UserId
    languages: tuple[str, ...]


@dataclass(frozen=True)
class CheckCodeword:
    """Hash and store, verify, or replace a code word; the answer event is redacted first."""

    ref: ChatRef
    survivor_room: RoomId
    case_room: RoomId
    mode: CodewordMode  # new, verify or rotate (a StrEnum: equal to "new", "verify", "rotate")
    case: str | None
    value: str = field(repr=False)
    source: EventId = EventId("")


@dataclass(frozen=True)
class AskInterpreters:
    ref: ChatRef
    language: str


Effect = (
    AcceptInvite
    | PostAlert
    | Escalate
    | PostAlertGroup
    | EscalateGroup
    | Reply
    | NotifySurvivor
    | RelayToCase
    | RelayToSurvivor
    | SendCanned
    | OpenCaseRoom
    | RelayBacklog
    | SignalClosed
    | EraseChat
    | Count
    | SetService
    | ShowStats
    | ShowHelp
    | ListCanned
    | InviteToCase
    | RemoveFromCase
    | EraseCaseRoom
    | AskSurvivor
    | ShowDevices
    | DecideDevice
    | PinIdentity
    | ConfirmVerification
    | SetLanguages
    | AskInterpreters
    | CheckCodeword
)
