"""Staff text → command. Pure: no I/O, no Matrix client (only the plain content of an event).

A message that starts with ``!`` is one command and is never relayed to the survivor; a message
with a line starting with ``!`` further down is not relayed either (see ``has_command_line``), so
no ``!`` line a staff member writes ever reaches the page. Unknown commands and bad arguments come
back as ``Invalid`` with a reason, so the bot can say what went wrong instead of relaying or
ignoring the message.

``written(content)`` reads a message as its author meant it: a reply without the quoted original
that clients put in front of it (the reply fallback of the Matrix spec's rich replies), and an
edit (``m.replace``) as its new text, never as the ``* …`` fallback body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.ids import ChatRef, normalize_ref

PREFIX = "!"


@dataclass(frozen=True)
class Claim:
    ref: ChatRef | None  # None: the oldest waiting chat
    force: bool = False  # claim even in the last minutes of one's shift


@dataclass(frozen=True)
class Transfer:
    to: str | None = None  # a Matrix ID, or None: back to the queue, first in line
    note: str = ""
    shift_change: bool = False  # !handoff


@dataclass(frozen=True)
class SupervisorRequest:
    pass


@dataclass(frozen=True)
class Join:
    ref: ChatRef


@dataclass(frozen=True)
class InterpreterRequest:
    language: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class Shift:
    until: tuple[int, int] | None  # (hour, minute) in the program's time zone; None: shift ended


@dataclass(frozen=True)
class Chats:
    pass


@dataclass(frozen=True)
class Devices:
    pass


@dataclass(frozen=True)
class DeviceDecision:
    approve: bool
    user: str
    device: str


@dataclass(frozen=True)
class TrustIdentity:
    """An admin pins a staff member's current cross-signing identity (after a reset, or under
    the strict policy)."""

    user: str


@dataclass(frozen=True)
class Codeword:
    action: str  # "new" | "verify" | "rotate"
    case: str | None = None  # C-XXXX for verify and rotate


@dataclass(frozen=True)
class VerifyDevice:
    """An admin confirms that the emojis on a staff device match those the bot posted."""

    user: str
    device: str


@dataclass(frozen=True)
class Languages:
    languages: tuple[str, ...]


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Say:
    key: str | None  # None: list the canned messages


@dataclass(frozen=True)
class Service:
    open: bool
    message: str = ""


@dataclass(frozen=True)
class Stats:
    days: int  # the last N days, today included


@dataclass(frozen=True)
class Invalid:
    """A line that starts with ``!`` but is not a valid command."""

    name: str
    reason: str  # a key of bot.messages.STAFF


Command = (
    Claim | Close | Help | Say | Service | Stats | Transfer | SupervisorRequest | Join | InterpreterRequest
    | Shift | Chats | Devices | DeviceDecision | VerifyDevice | TrustIdentity | Languages | Codeword | Invalid
)

STATS_PERIODS = {"today": 1, "week": 7, "7d": 7, "month": 30, "30d": 30, "90d": 90, "year": 365}
MAX_SERVICE_MESSAGE = 500


def is_command(text: str) -> bool:
    return text.lstrip().startswith(PREFIX)


def has_command_line(text: str) -> bool:
    """A line after the first starts with ``!``: a command put in the middle of a message."""
    return any(line.lstrip().startswith(PREFIX) for line in text.splitlines()[1:])


@dataclass(frozen=True)
class Written:
    """What a staff message says, as meant."""

    text: str
    edit: bool = False  # an edit (m.replace) of an earlier message: ``text`` is the new text


def written(content: Mapping[str, Any]) -> Written:
    """The text of a message's content: a reply without its fallback, an edit as its new text.

    Only the plain ``body`` is read (and relayed): a formatted body and its ``<mx-reply>`` block
    never reach the survivor.
    """
    relation = content.get("m.relates_to")
    relation = relation if isinstance(relation, Mapping) else {}
    if relation.get("rel_type") == "m.replace":
        new = content.get("m.new_content")
        body = new.get("body") if isinstance(new, Mapping) else None
        text = body if isinstance(body, str) else ""
        # A replacement carries no reply relation; a client that still quotes the original in it
        # writes the fallback's first line as "> <@user:server> …".
        return Written(strip_reply_fallback(text) if FALLBACK_HEADER.match(text) else text, edit=True)
    body = content.get("body")
    text = body if isinstance(body, str) else ""
    in_reply = relation.get("m.in_reply_to")
    return Written(strip_reply_fallback(text) if isinstance(in_reply, Mapping) else text)


FALLBACK_HEADER = re.compile(r"^> (\* )?<[^>\n]*>")


def strip_reply_fallback(body: str) -> str:
    """The body of a reply without the quoted original: the leading lines that start with ``>``,
    and the blank line after them (the spec's rich replies: "Stripping the fallback")."""
    lines = body.split("\n")
    start = 0
    while start < len(lines) and lines[start].startswith(">"):
        start += 1
    if start and start < len(lines) and not lines[start].strip():
        start += 1
    return "\n".join(lines[start:])


def parse(text: str) -> Command | None:
    """None if the text is not a command (it is a message to relay)."""
    if not is_command(text):
        return None
    words = text.strip()[len(PREFIX) :].split()
    if not words:
        return Invalid(name="", reason="unknown_command")
    name, args = words[0].lower(), words[1:]
    parser = PARSERS.get(name)
    if parser is None:
        return Invalid(name=name[:32], reason="unknown_command")
    return parser(name, args, text)


def _claim(name: str, args: list[str], text: str) -> Command:
    force = bool(args) and args[-1].lower() == "force"
    args = args[:-1] if force else args
    if not args:
        return Claim(ref=None, force=force)
    ref = normalize_ref(args[0])
    if ref is None or len(args) > 1:
        return Invalid(name=name, reason="bad_ref")
    return Claim(ref=ref, force=force)


def _no_arguments(command: Command) -> Callable[[str, list[str], str], Command]:
    return lambda name, args, text: command if not args else Invalid(name=name, reason="no_arguments")


def _join(name: str, args: list[str], text: str) -> Command:
    ref = normalize_ref(args[0]) if len(args) == 1 else None
    return Join(ref) if ref else Invalid(name=name, reason="bad_ref")


def _interpreter(name: str, args: list[str], text: str) -> Command:
    if len(args) != 1:
        return Invalid(name=name, reason="interpreter_usage")
    if _is_user_id(args[0]):
        return InterpreterRequest(user=args[0])
    if not LANGUAGE_WORD.match(args[0]):
        return Invalid(name=name, reason="interpreter_usage")
    return InterpreterRequest(language=args[0].lower())


def _verify(name: str, args: list[str], text: str) -> Command:
    if len(args) != 2 or not _is_user_id(args[0]) or not DEVICE_ID.match(args[1]):
        return Invalid(name=name, reason="verify_usage")
    return VerifyDevice(user=args[0], device=args[1])


def _trust(name: str, args: list[str], text: str) -> Command:
    if len(args) != 1 or not _is_user_id(args[0]):
        return Invalid(name=name, reason="trust_usage")
    return TrustIdentity(user=args[0])


def _device_decision(name: str, args: list[str], text: str) -> Command:
    if len(args) != 2 or not _is_user_id(args[0]) or not DEVICE_ID.match(args[1]):
        return Invalid(name=name, reason="device_usage")
    return DeviceDecision(approve=name == "approve", user=args[0], device=args[1])


def _languages(name: str, args: list[str], text: str) -> Command:
    if not args or not all(LANGUAGE_WORD.match(a) for a in args) or len(args) > 20:
        return Invalid(name=name, reason="languages_usage")
    return Languages(tuple(a.lower() for a in args))


def _say(name: str, args: list[str], text: str) -> Command:
    if len(args) > 1:
        return Invalid(name=name, reason="say_one_key")
    return Say(key=args[0].lower() if args else None)


def _stats(name: str, args: list[str], text: str) -> Command:
    if not args:
        return Stats(days=7)
    days = STATS_PERIODS.get(args[0].lower())
    if days is None or len(args) > 1:
        return Invalid(name=name, reason="bad_period")
    return Stats(days=days)


LANGUAGE_WORD = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,3}$")
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.+=/-]{1,64}$")
MAX_NOTE = 1000


def _is_user_id(word: str) -> bool:
    return word.startswith("@") and ":" in word and len(word) <= 255


def _transfer(name: str, args: list[str], text: str) -> Command:
    shift_change = name == "handoff"
    rest = text.strip()[len(PREFIX):].split(None, 1)[1:]
    remainder = rest[0].strip() if rest else ""
    to = None
    if args and _is_user_id(args[0]):
        to = args[0]
        remainder = remainder[len(to):].strip()
    if len(remainder) > MAX_NOTE:
        return Invalid(name=name, reason="note_too_long")
    return Transfer(to=to, note=remainder, shift_change=shift_change)


def _codeword(name: str, args: list[str], text: str) -> Command:
    if args == ["new"] or [a.lower() for a in args] == ["new"]:
        return Codeword("new")
    if len(args) == 2 and args[0].lower() in {"verify", "rotate"}:
        case = normalize_case(args[1])
        if case is None:
            return Invalid(name="codeword", reason="codeword_usage")
        return Codeword(args[0].lower(), case)
    return Invalid(name="codeword", reason="codeword_usage")


def normalize_case(text: str) -> str | None:
    """``c-k7q3`` → ``C-K7Q3``; None if it cannot be a case reference."""
    text = text.strip().upper()
    ref = normalize_ref(text[2:]) if text.startswith("C-") else None
    return f"C-{ref}" if ref else None


def _shift(name: str, args: list[str], text: str) -> Command:
    if len(args) == 1 and args[0].lower() == "end":
        return Shift(until=None)
    if len(args) != 2 or args[0].lower() != "until":
        return Invalid(name="shift", reason="shift_usage")
    match = re.match(r"^(\d{1,2}):(\d{2})$", args[1])
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return Invalid(name="shift", reason="shift_usage")
    return Shift(until=(int(match.group(1)), int(match.group(2))))


def _service(name: str, args: list[str], text: str) -> Command:
    if not args or args[0].lower() not in {"open", "close"}:
        return Invalid(name="service", reason="service_usage")
    if args[0].lower() == "open":
        return Service(open=True) if len(args) == 1 else Invalid(name="service", reason="service_usage")
    # The message is the rest of the line, as typed (several words, any script).
    message = text.strip()[len(PREFIX):].split(None, 2)[2:] or [""]
    message_text = message[0].strip()
    if not message_text:
        return Invalid(name="service", reason="service_usage")
    if len(message_text) > MAX_SERVICE_MESSAGE:
        return Invalid(name="service", reason="service_message_long")
    return Service(open=False, message=message_text)


# The word after "!" → its parser (name, arguments, whole text). Who may run each, and where:
# bot/conversation/permissions.py.
PARSERS: dict[str, Callable[[str, list[str], str], Command]] = {
    "claim": _claim,
    "transfer": _transfer,
    "handoff": _transfer,
    "supervisor": _no_arguments(SupervisorRequest()),
    "join": _join,
    "interpreter": _interpreter,
    "shift": _shift,
    "chats": _no_arguments(Chats()),
    "devices": _no_arguments(Devices()),
    "verify": _verify,
    "trust": _trust,
    "approve": _device_decision,
    "revoke": _device_decision,
    "codeword": _codeword,
    "languages": _languages,
    "close": _no_arguments(Close()),
    "help": lambda name, args, text: Help(),
    "say": _say,
    "service": _service,
    "stats": _stats,
}
