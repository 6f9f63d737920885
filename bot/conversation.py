"""The conversation rules: events in, new state and effects out. No I/O, no awaits.

``apply(state, event, now)`` is the only way the bot's routing state changes. The adapters turn
Matrix events into the events below and carry out the effects; the tests drive this module with
plain tables of events and a fake clock (see tests/test_conversation.py).

A chat moves WAITING → INVITING (claimed; case room made, advocate invited) → ACTIVE (advocate
joined; relaying both ways) → CLOSING (final notice sent, erase under way) → gone. An advocate
who leaves the case room (or is removed, or whose account is closed) sends the chat back to
WAITING, first in line.

Who is in a case room: the advocate, at most one supervisor and one interpreter, each let in by
one invitation at a time, and announced to the survivor with that role exactly once when they
join. Anyone else who joins is removed.

``ClockTicked`` drives every timer: reassurance and re-alerts while waiting, escalation, the
longest wait (then the survivor is told the other ways to get help and the chat closes),
inactivity warning and close, the advocate reminder, and the reconnect grace period.

Dispatch alerts are grouped: at most ``Practice.alert_burst`` alerts (and as many escalations and
notes of chats closed unanswered) in any ``Practice.alert_window``. Chats are announced at once
until then; chats that start after that within the window are announced together in one alert
that lists their refs, so that many chats at once (a flood) cannot bury the dispatch room.
``!claim REF`` works on every ref.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.commands import (
    Chats,
    Claim,
    Close,
    Codeword,
    Command,
    DeviceDecision,
    TrustIdentity,
    Devices,
    Help,
    InterpreterRequest,
    Invalid,
    Join,
    Languages,
    Say,
    Service,
    Shift,
    Stats,
    SupervisorRequest,
    Transfer,
    VerifyDevice,
    has_command_line,
)
from bot.ids import ChatRef, EventId, RoomId, UserId
from hotline_runtime.wire import Role


class Phase(StrEnum):
    WAITING = "waiting"
    INVITING = "inviting"
    ACTIVE = "active"
    CLOSING = "closing"


class CloseReason(StrEnum):
    ADVOCATE = "advocate"
    SURVIVOR = "survivor"
    CONNECTION_LOST = "connection_lost"
    INACTIVITY = "inactivity"
    UNANSWERED = "unanswered"  # waited the longest wait with no advocate


class StaffRole(StrEnum):
    """Roles are room memberships: dispatch, supervisors, interpreters and admin rooms."""

    ADVOCATE = "advocate"
    SUPERVISOR = "supervisor"
    INTERPRETER = "interpreter"
    ADMIN = "admin"


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
    language: str | None = None
    rights_delivered: bool = False
    claimed_at: float | None = None
    alerted_at: float | None = None  # the last dispatch alert
    escalated: bool = False
    reassured_at: float | None = None  # the last "still waiting" notice
    survivor_at: float | None = None  # the last word from the survivor (while active)
    warned: bool = False  # inactivity warning sent since survivor_at
    advocate_at: float | None = None  # the last word from the advocate
    reminded: bool = False  # advocate reminder sent since survivor_at
    priority: bool = False  # transferred back to the queue: first in line
    transferred: bool = False  # the survivor has talked with an advocate before
    handoff_note: str | None = None  # kept in memory only (see bot/store.py)
    supervisor: UserId | None = None  # joined the case room
    interpreter: UserId | None = None  # joined the case room
    invited: UserId | None = None  # a supervisor invited to the case room, not joined yet
    # "asking:<language or @user>" (the survivor is asked), "wanted:<language>" (the interpreters
    # are asked), "invited:<@user>" (an interpreter is invited, not joined yet)
    interpreter_request: str | None = None
    codeword_ask: str | None = None  # "new", "verify:C-XXXX" or "rotate:C-XXXX" while the page asks
    codeword_attempts: int = 0  # verifications tried in this chat
    verified_case: str | None = None  # the case whose code word matched in this chat


@dataclass(frozen=True)
class Practice:
    """The program's timers, in seconds (settings in minutes; see bot/settings.py)."""

    reassure_every: float = 180.0
    realert_after: float = 300.0
    escalate_after: float = 600.0
    inactivity_warning_after: float = 600.0
    inactivity_close_after: float = 300.0  # after the warning
    advocate_reminder_after: float = 180.0
    max_wait: float = 1800.0  # unclaimed this long: the survivor is told the alternatives, the chat closes
    alert_window: float = 10.0  # at most alert_burst dispatch alerts (escalations) per window; more are grouped
    alert_burst: int = 3


@dataclass(frozen=True)
class Rules:
    bot: UserId
    survivor_prefix: str  # "@chat_"
    server_name: str
    reconnect_grace: float = 120.0
    dispatch_room: RoomId = RoomId("!dispatch")
    admin_room: RoomId | None = None
    canned: frozenset[str] = frozenset()
    practice: Practice = field(default_factory=Practice)
    supervisors_room: RoomId | None = None
    interpreters_room: RoomId | None = None
    max_chats_per_advocate: int = 3
    shift_guard: float = 1800.0  # no new claims this close to the end of one's shift
    codeword_tries_per_chat: int = 5
    codewords_enabled: bool = True
    zone: str = "UTC"

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
    shifts: dict[UserId, float] = field(default_factory=dict)  # advocate → end of shift
    shift_reminded: frozenset[UserId] = frozenset()
    # When the recent dispatch alerts, escalations and unanswered notes went out (memory only:
    # after a restart the next ones go out at once).
    alerts_sent: tuple[float, ...] = ()
    escalations_sent: tuple[float, ...] = ()
    expiries_sent: tuple[float, ...] = ()
    # Chat → who had it before its last !transfer (memory only, like handoff notes: after a
    # restart the survivor hears "a different advocate" at worst); dropped with the chat.
    handed_on_by: dict[ChatRef, UserId] = field(default_factory=dict)

    def by_survivor_room(self, room: RoomId) -> Chat | None:
        return next((c for c in self.chats.values() if c.survivor_room == room), None)

    def by_case_room(self, room: RoomId) -> Chat | None:
        return next((c for c in self.chats.values() if c.case_room == room), None)

    def waiting(self) -> list[Chat]:
        """The queue: chats handed back first, then survivors who are connected, oldest first;
        a chat whose page has dropped (it may never come back) waits behind them until it returns."""
        return sorted((c for c in self.chats.values() if c.phase is Phase.WAITING),
                      key=lambda c: (not c.priority, c.disconnected_at is not None, c.opened_at, c.ref))

    def oldest_waiting(self) -> Chat | None:
        queue = self.waiting()
        return queue[0] if queue else None

    def place_in_line(self, chat: Chat) -> int:
        return next((i for i, c in enumerate(self.waiting(), 1) if c.ref == chat.ref), 0)

    def chats_of(self, advocate: UserId) -> list[Chat]:
        return sorted((c for c in self.chats.values()
                       if c.advocate == advocate and c.phase in (Phase.INVITING, Phase.ACTIVE)),
                      key=lambda c: c.opened_at)

    def with_chat(self, chat: Chat) -> Hotline:
        return replace(self, chats={**self.chats, chat.ref: chat})

    def without(self, ref: ChatRef) -> Hotline:
        return replace(self, chats={k: v for k, v in self.chats.items() if k != ref},
                       handed_on_by={k: v for k, v in self.handed_on_by.items() if k != ref})


Params = tuple[tuple[str, str], ...]

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

# ---------------------------------------------------------------- effects (imperative)


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
    mode: str  # "new" | "verify" | "rotate"
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

Result = tuple[Hotline, list[Effect]]

WAIT_BUCKETS = ((60, "<1m"), (300, "1-5m"), (900, "5-15m"), (3600, "15-60m"))
DURATION_BUCKETS = ((300, "<5m"), (900, "5-15m"), (1800, "15-30m"), (3600, "30-60m"))
ASKING, WANTED, INVITED = "asking:", "wanted:", "invited:"  # the steps of interpreter_request
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,3}$")


def bucket(seconds: float, buckets: tuple[tuple[int, str], ...]) -> str:
    """A coarse bucket for a wait or a duration: statistics never keep exact times."""
    for limit, name in buckets:
        if seconds < limit:
            return name
    return f"{buckets[-1][0] // 60}m+"


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
    # The notices and the alert follow when the bot's own join shows up (MemberJoined).
    return state.with_chat(chat), [AcceptInvite(event.room)]


def on_survivor_wrote(state: Hotline, event: SurvivorWrote, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or event.sender != chat.survivor or chat.phase is Phase.CLOSING:
        return state, []
    heard = replace(chat, survivor_at=now, warned=False, reminded=False)
    if chat.phase is Phase.ACTIVE and chat.case_room is not None:
        return state.with_chat(heard), [RelayToCase(chat.case_room, event.event_id, event.text)]
    # WAITING / INVITING: relayed as backlog when the advocate joins.
    return state.with_chat(heard), []


def on_survivor_profile(state: Hotline, event: SurvivorProfile, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    language = event.language.strip()
    if chat is None or chat.language is not None or not LANGUAGE_TAG.match(language):
        return state, []
    chat = replace(chat, language=language)
    effects: list[Effect] = []
    if chat.phase is Phase.WAITING and chat.alerted_at is not None:
        # Not yet announced: the language goes in its (grouped) alert.
        effects.append(Reply(state.rules.dispatch_room, "alert_language",
                             (("ref", chat.ref), ("language", language))))
    return state.with_chat(chat), effects


def on_survivor_notified(state: Hotline, event: SurvivorNotified, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or event.key != "rights" or chat.rights_delivered:
        return state, []
    return state.with_chat(replace(chat, rights_delivered=True)), []


def on_staff_wrote(state: Hotline, event: StaffWrote, now: float) -> Result:
    chat = state.by_case_room(event.room)
    if chat is None or chat.phase is not Phase.ACTIVE:
        return state, []
    speakers = {chat.advocate: Role.ADVOCATE, chat.supervisor: Role.SUPERVISOR, chat.interpreter: Role.INTERPRETER}
    role = speakers.get(event.sender)
    if role is None or not event.text.strip():
        return state, []
    if has_command_line(event.text):
        # A command on a later line: neither carried out nor relayed (no "!" line reaches the page).
        return state, [Reply(event.room, "command_not_alone")]
    chat = replace(chat, advocate_at=now, reminded=False)
    return state.with_chat(chat), [RelayToSurvivor(chat.survivor_room, event.event_id, event.text, role)]


def on_staff_edited(state: Hotline, event: StaffEdited, now: float) -> Result:
    """Edits are not relayed: the survivor already has the first version, and a changed line
    appearing twice is more confusing than a correction written as a new message."""
    chat = state.by_case_room(event.room)
    if chat is None or chat.phase is not Phase.ACTIVE:
        return state, []
    if event.sender not in (chat.advocate, chat.supervisor, chat.interpreter):
        return state, []
    return state, [Reply(event.room, "edit_not_relayed")]


def on_command_given(state: Hotline, event: CommandGiven, now: float) -> Result:
    command = event.command
    if isinstance(command, Invalid):
        return state, [Reply(event.room, command.reason, (("name", command.name),))]
    if isinstance(command, Help):
        return state, [ShowHelp(event.room, event.roles)]
    if isinstance(command, Claim):
        return _claim(state, event, command, now)
    if isinstance(command, Close):
        return _close_command(state, event, now)
    if isinstance(command, Say):
        return _say(state, event, command, now)
    if isinstance(command, Service):
        return _service(state, event, command)
    if isinstance(command, Stats):
        if StaffRole.ADMIN not in event.roles:
            return state, [Reply(event.room, "not_admin")]
        return state, [ShowStats(event.room, command.days)]
    if isinstance(command, Transfer):
        return _transfer(state, event, command, now)
    if isinstance(command, SupervisorRequest):
        return _supervisor_request(state, event)
    if isinstance(command, Join):
        return _join(state, event, command)
    if isinstance(command, InterpreterRequest):
        return _interpreter_request(state, event, command)
    if isinstance(command, Shift):
        return _shift(state, event, command, now)
    if isinstance(command, Chats):
        return _list_chats(state, event, now)
    if isinstance(command, (Devices, DeviceDecision, VerifyDevice, TrustIdentity)):
        if StaffRole.ADMIN not in event.roles or event.room != state.rules.admin_room:
            return state, [Reply(event.room, "not_admin")]
        if isinstance(command, Devices):
            return state, [ShowDevices(event.room)]
        if isinstance(command, TrustIdentity):
            return state, [PinIdentity(event.room, UserId(command.user))]
        if isinstance(command, VerifyDevice):
            return state, [ConfirmVerification(event.room, UserId(command.user), command.device)]
        return state, [DecideDevice(event.room, UserId(command.user), command.device, command.approve)]
    if isinstance(command, Codeword):
        return _codeword(state, event, command)
    if isinstance(command, Languages):
        if StaffRole.INTERPRETER not in event.roles:
            return state, [Reply(event.room, "not_interpreter")]
        return state, [SetLanguages(event.room, event.sender, command.languages)]
    raise IllegalTransition(f"unhandled command {command!r}")


def _transfer(state: Hotline, event: CommandGiven, command: Transfer, now: float) -> Result:
    chat, refusal = _assigned_chat(state, event)
    if chat is None:
        return state, refusal
    if chat.phase not in (Phase.ACTIVE, Phase.INVITING):
        return state, [Reply(event.room, "not_active")]
    target = UserId(command.to) if command.to else None
    if target is not None:
        if target == chat.advocate:
            return state, [Reply(event.room, "transfer_self")]
        if not event.target_roles & {StaffRole.ADVOCATE, StaffRole.SUPERVISOR}:
            return state, [Reply(event.room, "transfer_target", (("user", target),))]
    old_room = chat.case_room
    moved = replace(
        chat, advocate=target, case_room=None, supervisor=None, interpreter=None, invited=None,
        interpreter_request=None, transferred=True, handoff_note=command.note or None,
        phase=Phase.INVITING if target else Phase.WAITING, priority=target is None,
        claimed_at=now if target else None, alerted_at=None if target else now,
        reassured_at=now, escalated=False,
    )
    notice = "shift_change" if command.shift_change else "transfer_waiting"
    effects: list[Effect] = [Reply(event.room, "transferred_out", (("ref", chat.ref),))]
    if old_room is not None:
        effects.append(EraseCaseRoom(old_room))
    effects.append(NotifySurvivor(chat.survivor_room, notice))
    if target is not None:
        effects.append(OpenCaseRoom(chat.ref, target))
    else:
        # The note stays in the chat's state and is shown in the next case room, which the erase
        # reaches; the dispatch room is never erased, so it only learns that there is one.
        key = "alert_transfer_note" if command.note else "alert_transfer"
        effects.append(Reply(state.rules.dispatch_room, key, (("ref", chat.ref),)))
    assert chat.advocate is not None
    state = replace(state, handed_on_by={**state.handed_on_by, chat.ref: chat.advocate})
    return state.with_chat(moved), effects


def _supervisor_request(state: Hotline, event: CommandGiven) -> Result:
    chat, refusal = _assigned_chat(state, event)
    if chat is None:
        return state, refusal
    room = state.rules.supervisors_room or state.rules.dispatch_room
    return state, [Reply(room, "supervisor_wanted", (("ref", chat.ref),)), Reply(event.room, "supervisor_asked")]


def _join(state: Hotline, event: CommandGiven, command: Join) -> Result:
    chat = state.chats.get(command.ref)
    if chat is None or chat.phase is not Phase.ACTIVE or chat.case_room is None:
        return state, [Reply(event.room, "unknown_active_ref", (("ref", command.ref),))]
    if event.sender in (chat.advocate, chat.supervisor, chat.interpreter):
        return state, [Reply(event.room, "already_in", (("ref", chat.ref),))]
    joining = Reply(event.room, "joining", (("ref", chat.ref),))
    request = chat.interpreter_request or ""
    # An interpreter when the chat waits for one and they asked as one (from the interpreters
    # room, or they are not a supervisor); a supervisor otherwise. One invitation at a time.
    as_interpreter = (StaffRole.INTERPRETER in event.roles and request.startswith((WANTED, INVITED))
                      and (event.room == state.rules.interpreters_room or StaffRole.SUPERVISOR not in event.roles))
    if as_interpreter:
        pending = request.removeprefix(INVITED) if request.startswith(INVITED) else None
        if pending == event.sender:
            return state, [joining]
        if pending is not None:
            return state, [Reply(event.room, "already_joining", (("ref", chat.ref), ("user", pending)))]
        chat = replace(chat, interpreter_request=INVITED + event.sender)
    elif StaffRole.SUPERVISOR in event.roles:
        if chat.supervisor is not None:
            return state, [Reply(event.room, "supervisor_present", (("ref", chat.ref), ("user", chat.supervisor)))]
        if chat.invited == event.sender:
            return state, [joining]
        if chat.invited is not None:
            return state, [Reply(event.room, "already_joining", (("ref", chat.ref), ("user", chat.invited)))]
        chat = replace(chat, invited=event.sender)
    else:
        return state, [Reply(event.room, "join_refused")]
    return state.with_chat(chat), [InviteToCase(chat.case_room, event.sender), joining]


def _interpreter_request(state: Hotline, event: CommandGiven, command: InterpreterRequest) -> Result:
    chat, refusal = _assigned_chat(state, event)
    if chat is None:
        return state, refusal
    if chat.phase is not Phase.ACTIVE:
        return state, [Reply(event.room, "not_active")]
    if command.user is not None and StaffRole.INTERPRETER not in event.target_roles:
        return state, [Reply(event.room, "not_an_interpreter", (("user", command.user),))]
    if chat.interpreter is not None:
        return state, [Reply(event.room, "interpreter_present", (("user", chat.interpreter),))]
    if (chat.interpreter_request or "").startswith(INVITED):
        pending = (chat.interpreter_request or "").removeprefix(INVITED)
        return state, [Reply(event.room, "already_joining", (("ref", chat.ref), ("user", pending)))]
    wanted = command.user or command.language or ""
    chat = replace(chat, interpreter_request=ASKING + wanted)
    return state.with_chat(chat), [AskSurvivor(chat.survivor_room, "interpreter_consent"),
                                   Reply(event.room, "interpreter_asking")]


def _codeword(state: Hotline, event: CommandGiven, command: Codeword) -> Result:
    chat, refusal = _assigned_chat(state, event)
    if chat is None:
        return state, refusal
    if not state.rules.codewords_enabled:
        return state, [Reply(event.room, "codeword_off")]
    if chat.phase is not Phase.ACTIVE:
        return state, [Reply(event.room, "not_active")]
    if command.action == "verify" and chat.codeword_attempts >= state.rules.codeword_tries_per_chat:
        return state, [Reply(event.room, "codeword_chat_limit")]
    if command.action == "rotate" and chat.verified_case != command.case:
        return state, [Reply(event.room, "codeword_verify_first", (("case", command.case or ""),))]
    ask = command.action if command.case is None else f"{command.action}:{command.case}"
    question = "codeword_verify" if command.action == "verify" else "codeword_new"
    chat = replace(chat, codeword_ask=ask)
    return state.with_chat(chat), [AskSurvivor(chat.survivor_room, question), Reply(event.room, "codeword_asking")]


def on_codeword_checked(state: Hotline, event: CodewordChecked, now: float) -> Result:
    chat = state.chats.get(event.ref)
    if chat is None or not event.matched:
        return state, []
    return state.with_chat(replace(chat, verified_case=event.case)), []


def on_survivor_answered(state: Hotline, event: SurvivorAnswered, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.case_room is None:
        return state, []
    if event.question in ("codeword_new", "codeword_verify"):
        return _codeword_answer(state, chat, event)
    if event.question != "interpreter_consent":
        return state, []
    request = chat.interpreter_request or ""
    if not request.startswith(ASKING):
        return state, []
    wanted = request.removeprefix(ASKING)
    if event.value != "yes":
        chat = replace(chat, interpreter_request=None)
        return state.with_chat(chat), [Reply(chat.case_room, "interpreter_declined")]
    if wanted.startswith("@"):
        chat = replace(chat, interpreter_request=INVITED + wanted)
        return state.with_chat(chat), [Reply(chat.case_room, "interpreter_consented"),
                                       InviteToCase(chat.case_room, UserId(wanted))]
    chat = replace(chat, interpreter_request=WANTED + wanted)
    return state.with_chat(chat), [Reply(chat.case_room, "interpreter_consented"),
                                   AskInterpreters(chat.ref, wanted)]


def _codeword_answer(state: Hotline, chat: Chat, event: SurvivorAnswered) -> Result:
    assert chat.case_room is not None
    if chat.codeword_ask is None:
        return state, []
    mode, _, case = chat.codeword_ask.partition(":")
    if (event.question == "codeword_verify") != (mode == "verify"):
        return state, []
    attempts = chat.codeword_attempts + (1 if mode == "verify" else 0)
    chat = replace(chat, codeword_ask=None, codeword_attempts=attempts)
    if not event.value.strip():
        return state.with_chat(chat), [Reply(chat.case_room, "codeword_skipped")]
    return state.with_chat(chat), [CheckCodeword(chat.ref, chat.survivor_room, chat.case_room, mode, case or None,
                                                 event.value, event.event_id)]


def _shift(state: Hotline, event: CommandGiven, command: Shift, now: float) -> Result:
    if StaffRole.ADVOCATE not in event.roles:
        return state, [Reply(event.room, "not_advocate")]
    shifts = dict(state.shifts)
    reminded = state.shift_reminded - {event.sender}
    if command.until is None:
        shifts.pop(event.sender, None)
        return replace(state, shifts=shifts, shift_reminded=reminded), [Reply(event.room, "shift_cleared")]
    zone = ZoneInfo(state.rules.zone)
    local = datetime.fromtimestamp(now, zone)
    end = local.replace(hour=command.until[0], minute=command.until[1], second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)  # "until 02:00" said in the evening: tonight
    shifts[event.sender] = end.timestamp()
    until = f"{command.until[0]:02d}:{command.until[1]:02d}"
    return replace(state, shifts=shifts, shift_reminded=reminded), [
        Reply(event.room, "shift_set", (("until", until),))]


def _list_chats(state: Hotline, event: CommandGiven, now: float) -> Result:
    mine = state.chats_of(event.sender)
    if not mine:
        return state, [Reply(event.room, "no_chats")]
    items = "\n".join(f"{c.ref} · {c.phase} · open {_minutes(now - c.opened_at)} min" for c in mine)
    return state, [Reply(event.room, "chats_list", (("items", items),))]


def _claim(state: Hotline, event: CommandGiven, command: Claim, now: float) -> Result:
    if StaffRole.ADVOCATE not in event.roles:
        return state, [Reply(event.room, "not_advocate")]
    limit = state.rules.max_chats_per_advocate
    if len(state.chats_of(event.sender)) >= limit:
        return state, [Reply(event.room, "too_many_chats", (("max", str(limit)),))]
    shift_end = state.shifts.get(event.sender)
    if shift_end is not None and not command.force and shift_end - now <= state.rules.shift_guard:
        return state, [Reply(event.room, "shift_ending_claim", (("minutes", _minutes(max(shift_end - now, 0))),))]
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
    claimed = replace(chat, phase=Phase.INVITING, advocate=event.sender, claimed_at=now)
    return state.with_chat(claimed), [
        Reply(event.room, "claimed", (("ref", chat.ref),)),
        OpenCaseRoom(chat.ref, event.sender),
        Count("answered"),
        Count("wait", bucket(now - chat.opened_at, WAIT_BUCKETS)),
    ]


def _assigned_chat(state: Hotline, event: CommandGiven) -> tuple[Chat | None, list[Effect]]:
    """The chat of this case room if the sender is its advocate; otherwise the reply to give."""
    chat = state.by_case_room(event.room)
    if chat is None:
        return None, [Reply(event.room, "in_case_room")]
    if event.sender != chat.advocate:
        return None, [Reply(event.room, "not_your_chat")]
    return chat, []


def _close_command(state: Hotline, event: CommandGiven, now: float) -> Result:
    chat, refusal = _assigned_chat(state, event)
    if chat is None:
        return state, refusal
    if chat.phase is Phase.CLOSING:
        return state, []
    return _close(state, chat, CloseReason.ADVOCATE, now)


def _say(state: Hotline, event: CommandGiven, command: Say, now: float) -> Result:
    if command.key is None:
        return state, [ListCanned(event.room)]
    chat, refusal = _assigned_chat(state, event)
    if chat is None:
        return state, refusal
    if command.key not in state.rules.canned:
        return state, [Reply(event.room, "unknown_canned", (("key", command.key[:32]),))]
    if chat.phase is not Phase.ACTIVE:
        return state, [Reply(event.room, "not_active")]
    chat = replace(chat, advocate_at=now, reminded=False)
    assert chat.case_room is not None
    return state.with_chat(chat), [SendCanned(chat.survivor_room, chat.case_room, command.key, event.event_id)]


def _service(state: Hotline, event: CommandGiven, command: Service) -> Result:
    if StaffRole.ADMIN not in event.roles or event.room != state.rules.admin_room:
        return state, [Reply(event.room, "not_admin")]
    if command.open:
        return state, [SetService(closed=False), Reply(event.room, "service_opened")]
    return state, [SetService(closed=True, message=command.message),
                   Reply(event.room, "service_closed", (("message", command.message),))]


def _close(state: Hotline, chat: Chat, reason: CloseReason, now: float) -> Result:
    closing = replace(chat, phase=Phase.CLOSING)
    notice = NotifySurvivor(chat.survivor_room, "wait_expired", (("minutes", _minutes(now - chat.opened_at)),)) \
        if reason is CloseReason.UNANSWERED else NotifySurvivor(chat.survivor_room, "chat_ended")
    effects: list[Effect] = [notice]
    if chat.case_room is not None:
        effects.append(Reply(chat.case_room, f"closed_{reason}", (("ref", chat.ref),)))
    effects += [SignalClosed(chat.survivor_room), EraseChat(closing), Count(f"closed_{reason}")]
    if chat.phase is Phase.WAITING:
        effects.append(Count("abandoned"))
    if chat.claimed_at is not None:
        effects.append(Count("duration", bucket(now - chat.claimed_at, DURATION_BUCKETS)))
    return state.with_chat(closing), effects


def on_case_room_opened(state: Hotline, event: CaseRoomOpened, now: float) -> Result:
    chat = state.chats.get(event.ref)
    if chat is None or chat.phase is not Phase.INVITING:
        raise IllegalTransition(f"case room for {event.ref} in phase {chat and chat.phase}")
    return state.with_chat(replace(chat, case_room=event.room)), []


def on_member_joined(state: Hotline, event: MemberJoined, now: float) -> Result:
    if event.user == state.rules.bot:
        chat = state.by_survivor_room(event.room)
        if chat is None or chat.phase is not Phase.WAITING or chat.reassured_at is not None:
            return state, []  # not a new chat, or welcomed already
        chat = replace(chat, reassured_at=now)
        state = state.with_chat(chat)
        place = str(state.place_in_line(chat))
        # The alert first (now, or grouped with others shortly): it goes to another room's queue
        # and need not wait for the notices.
        state, alerts = _dispatch_alerts(state, now)
        return state, [
            *alerts,
            NotifySurvivor(chat.survivor_room, "rights"),
            NotifySurvivor(chat.survivor_room, "welcome", (("place", place),)),
            Count("started"),
        ]
    chat = state.by_case_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING:
        return state, []
    if chat.phase is Phase.ACTIVE:
        if event.user in (chat.advocate, chat.supervisor, chat.interpreter):
            return state, []  # already in and announced (a join seen again, e.g. after a restart)
        if chat.interpreter_request == INVITED + event.user:
            return _participant_joined(state, chat, event.user, StaffRole.INTERPRETER)
        if event.user == chat.invited:
            return _participant_joined(state, chat, event.user, StaffRole.SUPERVISOR)
    if event.user != chat.advocate or chat.phase is not Phase.INVITING:
        # Not invited by the rules, so never announced: removed before anything more is sent there.
        return state, [RemoveFromCase(event.room, event.user)]
    assert chat.case_room is not None
    # The silence clocks start now: what was written while waiting is answered from here on.
    active = replace(chat, phase=Phase.ACTIVE, survivor_at=now, warned=False, reminded=False)
    intro: Params = (("ref", chat.ref), ("language", chat.language or "not given"),
                     ("rights", "yes" if chat.rights_delivered else "no"))
    effects: list[Effect] = [Reply(chat.case_room, "case_intro", intro)]
    if chat.handoff_note:
        effects.append(Reply(chat.case_room, "handoff_note", (("note", chat.handoff_note),)))
    effects += [
        RelayBacklog(chat.survivor_room, chat.survivor, chat.case_room),
        # Told before the new person writes: the notice goes out before any relay from them.
        NotifySurvivor(chat.survivor_room, _joined_notice(state, chat)),
        Reply(chat.case_room, "safety_prompt"),
    ]
    if chat.disconnected_at is not None:
        effects.append(_disconnected_notice(state, chat))
    return state.with_chat(replace(active, handoff_note=None)), effects


def _joined_notice(state: Hotline, chat: Chat) -> str:
    if not chat.transferred:
        return "advocate_joined"
    return "same_advocate" if state.handed_on_by.get(chat.ref) == chat.advocate else "new_advocate"


def _participant_joined(state: Hotline, chat: Chat, user: UserId, role: StaffRole) -> Result:
    """Announced with the role they were invited in, once: the invitation is used up."""
    assert chat.case_room is not None
    if role is StaffRole.INTERPRETER:
        chat = replace(chat, interpreter=user, interpreter_request=None)
        key = "interpreter_joined"
    else:
        chat = replace(chat, supervisor=user, invited=None)
        key = "supervisor_joined"
    return state.with_chat(chat), [NotifySurvivor(chat.survivor_room, key),
                                   Reply(chat.case_room, f"staff_{key}", (("user", user),))]


def on_member_left(state: Hotline, event: MemberLeft, now: float) -> Result:
    """Someone left a case room, was removed, declined its invitation, or their account was closed."""
    chat = state.by_case_room(event.room)
    if chat is None or chat.phase not in (Phase.INVITING, Phase.ACTIVE):
        return state, []
    if event.user == chat.advocate:
        return _advocate_gone(state, chat, now)
    if chat.phase is not Phase.ACTIVE:
        return state, []
    assert chat.case_room is not None
    if event.user == chat.supervisor:
        return state.with_chat(replace(chat, supervisor=None)), [NotifySurvivor(chat.survivor_room, "supervisor_left")]
    if event.user == chat.interpreter:
        return state.with_chat(replace(chat, interpreter=None)), [NotifySurvivor(chat.survivor_room, "interpreter_left")]
    declined = [Reply(chat.case_room, "invitation_declined", (("user", event.user),))]
    if event.user == chat.invited:
        return state.with_chat(replace(chat, invited=None)), declined
    if chat.interpreter_request == INVITED + event.user:
        return state.with_chat(replace(chat, interpreter_request=None)), declined
    return state, []


def _advocate_gone(state: Hotline, chat: Chat, now: float) -> Result:
    """The advocate is no longer in the case room: the chat goes back to the front of the queue.
    The survivor is told if they had been talking with them; the case room is erased."""
    assert chat.case_room is not None
    moved = replace(
        chat, phase=Phase.WAITING, advocate=None, case_room=None, supervisor=None, interpreter=None, invited=None,
        interpreter_request=None, codeword_ask=None, priority=True, claimed_at=None, alerted_at=now,
        reassured_at=now, escalated=False, transferred=chat.transferred or chat.phase is Phase.ACTIVE,
    )
    effects: list[Effect] = [Reply(chat.case_room, "advocate_gone", (("ref", chat.ref),)),
                             EraseCaseRoom(chat.case_room)]
    if chat.phase is Phase.ACTIVE:
        effects.append(NotifySurvivor(chat.survivor_room, "advocate_gone"))
    effects.append(Reply(state.rules.dispatch_room, "alert_returned", (("ref", chat.ref),)))
    return state.with_chat(moved), effects


def on_survivor_ended(state: Hotline, event: SurvivorEnded, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING:
        return state, []
    return _close(state, chat, CloseReason.SURVIVOR, now)


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
    return Reply(chat.case_room, "survivor_disconnected", (("minutes", _minutes(state.rules.reconnect_grace)),))


def _minutes(seconds: float) -> str:
    return str(max(1, round(seconds / 60)))


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
    state, effects = _expire_unanswered(state, now)
    for ref in [c.ref for c in sorted(state.chats.values(), key=lambda c: c.opened_at)]:
        state, more = _timers(state, state.chats[ref], now)
        effects += more
    state, more = _dispatch_alerts(state, now)
    effects += more
    state, more = _escalations(state, now)
    effects += more
    for advocate, end in sorted(state.shifts.items()):
        if advocate in state.shift_reminded or end - now > state.rules.shift_guard:
            continue
        open_chats = [c for c in state.chats_of(advocate) if c.case_room is not None]
        if open_chats:
            state = replace(state, shift_reminded=state.shift_reminded | {advocate})
            minutes = (("minutes", _minutes(max(end - now, 0))),)
            effects += [Reply(c.case_room, "shift_reminder", minutes) for c in open_chats if c.case_room]
    return state, effects


def _timers(state: Hotline, chat: Chat, now: float) -> Result:
    rules, practice = state.rules, state.rules.practice
    if chat.phase is Phase.CLOSING:
        return state, []
    if chat.disconnected_at is not None:
        if now - chat.disconnected_at >= rules.reconnect_grace:
            return _close(state, chat, CloseReason.CONNECTION_LOST, now)
        return state, []  # a survivor who is away gets no notices and no inactivity close
    effects: list[Effect] = []
    if chat.phase is Phase.WAITING and chat.reassured_at is not None:
        # Alerts, re-alerts and escalations are grouped over all chats: _dispatch_alerts, _escalations.
        if now - chat.reassured_at >= practice.reassure_every:
            chat = replace(chat, reassured_at=now)
            effects.append(NotifySurvivor(chat.survivor_room, "still_waiting",
                                          (("place", str(state.place_in_line(chat))),)))
    elif chat.phase is Phase.ACTIVE and chat.survivor_at is not None and chat.case_room is not None:
        quiet = now - chat.survivor_at
        if quiet >= practice.inactivity_warning_after + practice.inactivity_close_after and chat.warned:
            return _close(state, chat, CloseReason.INACTIVITY, now)
        if quiet >= practice.inactivity_warning_after and not chat.warned:
            chat = replace(chat, warned=True)
            minutes = (("minutes", _minutes(practice.inactivity_close_after)),)
            effects += [NotifySurvivor(chat.survivor_room, "inactivity_warning", minutes),
                        Reply(chat.case_room, "inactivity_warned", minutes)]
        answered = chat.advocate_at is not None and chat.advocate_at >= chat.survivor_at
        if not answered and not chat.reminded and quiet >= practice.advocate_reminder_after:
            chat = replace(chat, reminded=True)
            effects.append(Reply(chat.case_room, "advocate_reminder", (("minutes", _minutes(quiet)),)))
    return state.with_chat(chat), effects


def _window_open(sent: tuple[float, ...], now: float, practice: Practice) -> bool:
    """Fewer than ``alert_burst`` posts of this kind in the last ``alert_window`` seconds."""
    return sum(1 for t in sent if now - t < practice.alert_window) < practice.alert_burst


def _sent(sent: tuple[float, ...], now: float, practice: Practice) -> tuple[float, ...]:
    return tuple(t for t in sent if now - t < practice.alert_window) + (now,)


def _dispatch_alerts(state: Hotline, now: float) -> Result:
    """Announce, in one alert, every waiting chat not yet announced or due again (within the burst)."""
    practice = state.rules.practice
    if not _window_open(state.alerts_sent, now, practice):
        return state, []
    due = [c for c in state.waiting()
           if c.reassured_at is not None and c.disconnected_at is None
           and (c.alerted_at is None or now - c.alerted_at >= practice.realert_after)]
    if not due:
        return state, []
    for chat in due:
        state = state.with_chat(replace(chat, alerted_at=now))
    state = replace(state, alerts_sent=_sent(state.alerts_sent, now, practice))
    if len(due) > 1:
        longest = int(_minutes(max(now - c.opened_at for c in due)))
        return state, [PostAlertGroup(tuple((c.ref, c.language or "") for c in due), longest)]
    chat = due[0]
    if chat.alerted_at is not None:
        return state, [PostAlert(chat.ref, int(_minutes(now - chat.opened_at)))]
    effects: list[Effect] = [PostAlert(chat.ref)]
    if chat.language:
        effects.append(Reply(state.rules.dispatch_room, "alert_language",
                             (("ref", chat.ref), ("language", chat.language))))
    return state, effects


def _escalations(state: Hotline, now: float) -> Result:
    """Chats unclaimed past ``escalate_after``, escalated once each, together (within the burst)."""
    practice = state.rules.practice
    if not _window_open(state.escalations_sent, now, practice):
        return state, []
    due = [c for c in state.waiting()
           if c.reassured_at is not None and c.disconnected_at is None and not c.escalated
           and now - c.opened_at >= practice.escalate_after]
    if not due:
        return state, []
    for chat in due:
        state = state.with_chat(replace(chat, escalated=True))
    state = replace(state, escalations_sent=_sent(state.escalations_sent, now, practice))
    longest = int(_minutes(max(now - c.opened_at for c in due)))
    if len(due) == 1:
        return state, [Escalate(due[0].ref, longest)]
    return state, [EscalateGroup(tuple(c.ref for c in due), longest)]


def _expire_unanswered(state: Hotline, now: float) -> Result:
    """Chats that waited ``max_wait`` with no advocate: the survivor is told the other ways to get
    help, the chat closes and is erased; dispatch gets one note for all of them (within the burst)."""
    practice = state.rules.practice
    if not _window_open(state.expiries_sent, now, practice):
        return state, []
    # A chat handed back to the queue by an advocate (transferred) is first in line and escalated;
    # it is not closed on the survivor, who has been talking with the hotline.
    due = [c for c in state.waiting() if not c.transferred and now - c.opened_at >= practice.max_wait]
    if not due:
        return state, []
    effects: list[Effect] = []
    for chat in sorted(due, key=lambda c: (c.opened_at, c.ref)):
        state, more = _close(state, chat, CloseReason.UNANSWERED, now)
        effects += more
    refs = ", ".join(c.ref for c in sorted(due, key=lambda c: (c.opened_at, c.ref)))
    effects.append(Reply(state.rules.dispatch_room, "closed_unanswered",
                         (("refs", refs), ("minutes", _minutes(practice.max_wait)))))
    return replace(state, expiries_sent=_sent(state.expiries_sent, now, practice)), effects


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
    SurvivorProfile: on_survivor_profile,
    SurvivorNotified: on_survivor_notified,
    StaffWrote: on_staff_wrote,
    StaffEdited: on_staff_edited,
    CommandGiven: on_command_given,
    CaseRoomOpened: on_case_room_opened,
    MemberJoined: on_member_joined,
    SurvivorEnded: on_survivor_ended,
    SurvivorDisconnected: on_survivor_disconnected,
    SurvivorReconnected: on_survivor_reconnected,
    SurvivorAnswered: on_survivor_answered,
    CodewordChecked: on_codeword_checked,
    MemberLeft: on_member_left,
    ClockTicked: on_clock_ticked,
    ChatErased: on_chat_erased,
}
