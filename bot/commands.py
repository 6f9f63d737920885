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
class Invalid:
    """A line that starts with ``!`` but is not a valid command."""

    name: str
    reason: str  # a key of bot.messages.STAFF


Command = Claim | Close | Help | Invalid


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
    return Invalid(name=name[:32], reason="unknown_command")
