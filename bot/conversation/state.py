"""The routing state: a chat's phase and fields, the program's rules, and the hotline as a whole.

Every phase change goes through ``TRANSITIONS`` (checked by ``Hotline.with_chat`` and
``Hotline.without``): a move that is not in the table raises ``IllegalTransition`` and the state
is unchanged, as h11 does with its own state table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from bot.ids import ChatRef, RoomId, UserId


class Phase(StrEnum):
    READY = "ready"  # opened ahead: the bot is in the survivor room, nobody has started the chat
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


class IllegalTransition(Exception):
    """An event that cannot happen in the chat's current phase. The state is unchanged."""


# Every allowed phase change, and why it happens. ``None`` is "no chat": not opened yet, or erased.
# A chat may also stay in its phase while its other fields change (e.g. !transfer to a colleague
# before the advocate joined: INVITING again, with another advocate).
TRANSITIONS: dict[tuple[Phase | None, Phase | None], str] = {
    (None, Phase.READY): "a survivor account's invitation (a chat opened ahead, or on demand)",
    (Phase.READY, Phase.WAITING): "the survivor started: the profile arrived",
    (Phase.READY, Phase.CLOSING): "a chat opened ahead ended before anyone started it (the gateway let it go, "
                                  "or it reached ready_max_age)",
    (Phase.WAITING, Phase.INVITING): "!claim: the case room is made and the advocate invited",
    (Phase.INVITING, Phase.ACTIVE): "the advocate joined the case room",
    (Phase.INVITING, Phase.WAITING): "!transfer to the queue, or the advocate left or declined",
    (Phase.ACTIVE, Phase.WAITING): "!transfer to the queue, or the advocate left",
    (Phase.ACTIVE, Phase.INVITING): "!transfer to a colleague",
    (Phase.WAITING, Phase.CLOSING): "the survivor ended, dropped or waited the longest wait",
    (Phase.INVITING, Phase.CLOSING): "closed before the advocate joined",
    (Phase.ACTIVE, Phase.CLOSING): "!close, the survivor ended, dropped or went silent",
    (Phase.CLOSING, None): "erased",
}


def check_transition(ref: ChatRef, before: Phase | None, after: Phase | None) -> None:
    if before is not after and (before, after) not in TRANSITIONS:
        raise IllegalTransition(f"{ref}: {before or 'no chat'} → {after or 'erased'} is not allowed")


# ---------------------------------------------------------------- sub-states (typed records)


@dataclass(frozen=True)
class AskingSurvivor:
    """The survivor is asked whether an interpreter may join; ``wanted`` is a language or an @user."""

    wanted: str


@dataclass(frozen=True)
class AskingInterpreters:
    """The survivor said yes: the interpreters are asked for ``language``."""

    language: str


@dataclass(frozen=True)
class InterpreterInvited:
    """An interpreter is invited to the case room and has not joined yet."""

    user: UserId


InterpreterStep = AskingSurvivor | AskingInterpreters | InterpreterInvited

# The stored form of each step (bot/store.py keeps these texts in the routing database).
_STEP_PREFIXES: tuple[tuple[str, type[InterpreterStep]], ...] = (
    ("asking:", AskingSurvivor), ("wanted:", AskingInterpreters), ("invited:", InterpreterInvited),
)


def step_to_text(step: InterpreterStep | None) -> str | None:
    if step is None:
        return None
    prefix = next(p for p, kind in _STEP_PREFIXES if isinstance(step, kind))
    value = step.wanted if isinstance(step, AskingSurvivor) else \
        step.language if isinstance(step, AskingInterpreters) else step.user
    return prefix + value


def step_from_text(text: str | None) -> InterpreterStep | None:
    """The step from its stored form; None for a form this version does not know."""
    for prefix, kind in _STEP_PREFIXES:
        if text is not None and text.startswith(prefix):
            return kind(text.removeprefix(prefix))  # type: ignore[arg-type]
    return None


class CodewordMode(StrEnum):
    NEW = "new"
    VERIFY = "verify"
    ROTATE = "rotate"


@dataclass(frozen=True)
class CodewordAsk:
    """The survivor's page is asking for a code word: a new one, or the one of ``case``."""

    mode: CodewordMode
    case: str | None = None  # C-XXXX for verify and rotate

    def to_text(self) -> str:
        """The stored form: ``new``, ``verify:C-XXXX`` or ``rotate:C-XXXX``."""
        return self.mode.value if self.case is None else f"{self.mode.value}:{self.case}"

    @classmethod
    def from_text(cls, text: str | None) -> CodewordAsk | None:
        mode, _, case = (text or "").partition(":")
        if mode not in set(CodewordMode):
            return None
        return cls(CodewordMode(mode), case or None)


# ---------------------------------------------------------------- the chat, the rules, the hotline


@dataclass(frozen=True)
class Chat:
    ref: ChatRef
    survivor_room: RoomId
    survivor: UserId
    opened_at: float  # READY: when the bot was invited; from WAITING on: when the survivor started
    phase: Phase = Phase.WAITING
    advocate: UserId | None = None
    case_room: RoomId | None = None
    disconnected_at: float | None = None
    language: str | None = None
    rights_delivered: bool = False  # the rights notice reached the survivor room
    rights_sent: bool = False  # the rights notice was handed to the sender (once per chat)
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
    interpreter_request: InterpreterStep | None = None  # bringing in an interpreter
    codeword_ask: CodewordAsk | None = None  # while the page asks for a code word
    codeword_attempts: int = 0  # verifications tried in this chat
    verified_case: str | None = None  # the case whose code word matched in this chat

    @property
    def invited_interpreter(self) -> UserId | None:
        step = self.interpreter_request
        return step.user if isinstance(step, InterpreterInvited) else None


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
    ready_max_age: float = 6 * 3600.0  # a chat opened ahead and not started this long is let go, silently


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
        """The hotline with this chat new or changed; its phase change must be in TRANSITIONS."""
        before = self.chats.get(chat.ref)
        check_transition(chat.ref, before.phase if before else None, chat.phase)
        return replace(self, chats={**self.chats, chat.ref: chat})

    def without(self, ref: ChatRef) -> Hotline:
        """The hotline once the chat is erased (only a closing chat is)."""
        before = self.chats.get(ref)
        if before is not None:
            check_transition(ref, before.phase, None)
        return replace(self, chats={k: v for k, v in self.chats.items() if k != ref},
                       handed_on_by={k: v for k, v in self.handed_on_by.items() if k != ref})
