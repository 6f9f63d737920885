"""Staff text → command. Pure: no I/O, no Matrix.

A line that starts with ``!`` is a command and is never relayed to the survivor. Unknown
commands and bad arguments come back as ``Invalid`` with a reason, so the bot can say what went
wrong instead of relaying or ignoring the line.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.ids import ChatRef, normalize_ref

PREFIX = "!"


@dataclass(frozen=True)
class Claim:
    ref: ChatRef | None  # None: the oldest waiting chat


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


Command = Claim | Close | Help | Say | Service | Stats | Invalid

STATS_PERIODS = {"today": 1, "week": 7, "7d": 7, "month": 30, "30d": 30, "90d": 90, "year": 365}
MAX_SERVICE_MESSAGE = 500


def is_command(text: str) -> bool:
    return text.lstrip().startswith(PREFIX)


def parse(text: str) -> Command | None:
    """None if the text is not a command (it is a message to relay)."""
    if not is_command(text):
        return None
    words = text.strip()[len(PREFIX) :].split()
    if not words:
        return Invalid(name="", reason="unknown_command")
    name, args = words[0].lower(), words[1:]
    if name == "claim":
        if not args:
            return Claim(ref=None)
        ref = normalize_ref(args[0])
        if ref is None or len(args) > 1:
            return Invalid(name=name, reason="bad_ref")
        return Claim(ref=ref)
    if name == "close":
        return Close() if not args else Invalid(name=name, reason="no_arguments")
    if name == "help":
        return Help()
    if name == "say":
        if len(args) > 1:
            return Invalid(name=name, reason="say_one_key")
        return Say(key=args[0].lower() if args else None)
    if name == "service":
        return _service(text, args)
    if name == "stats":
        if not args:
            return Stats(days=7)
        days = STATS_PERIODS.get(args[0].lower())
        if days is None or len(args) > 1:
            return Invalid(name=name, reason="bad_period")
        return Stats(days=days)
    return Invalid(name=name[:32], reason="unknown_command")


def _service(text: str, args: list[str]) -> Command:
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
