"""What several handlers share: the result type, coarse buckets, minutes, and closing a chat."""

from __future__ import annotations

import re
from dataclasses import replace

from bot.conversation.effects import Count, Effect, EraseChat, NotifySurvivor, Reply, SignalClosed
from bot.conversation.state import Chat, CloseReason, Hotline, Phase

Result = tuple[Hotline, list[Effect]]

WAIT_BUCKETS = ((60, "<1m"), (300, "1-5m"), (900, "5-15m"), (3600, "15-60m"))
DURATION_BUCKETS = ((300, "<5m"), (900, "5-15m"), (1800, "15-30m"), (3600, "30-60m"))
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,3}$")


def bucket(seconds: float, buckets: tuple[tuple[int, str], ...]) -> str:
    """A coarse bucket for a wait or a duration: statistics never keep exact times."""
    for limit, name in buckets:
        if seconds < limit:
            return name
    return f"{buckets[-1][0] // 60}m+"


EXCERPT_CHARS = 60


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of a message, to name it back to its writer: white space folded, cut at a word
    boundary when there is one in the second half, "…" where anything was left out."""
    folded = " ".join(text.split())
    if len(folded) <= limit:
        return folded
    cut = folded[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space >= limit // 2 else cut).rstrip() + "…"


def minutes(seconds: float) -> str:
    return str(max(1, round(seconds / 60)))


def close(state: Hotline, chat: Chat, reason: CloseReason, now: float) -> Result:
    """The chat ends: the survivor is told, the case room too, and the erase starts."""
    closing = replace(chat, phase=Phase.CLOSING)
    notice = NotifySurvivor(chat.survivor_room, "wait_expired", (("minutes", minutes(now - chat.opened_at)),)) \
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


def close_unused(state: Hotline, chat: Chat) -> Result:
    """A chat opened ahead ends before anyone started it: nobody to tell (no page, no case room),
    nothing for the chat statistics; the gateway is told and everything is erased."""
    closing = replace(chat, phase=Phase.CLOSING)
    return state.with_chat(closing), [SignalClosed(chat.survivor_room), EraseChat(closing), Count("ready_unused")]


def disconnected_notice(state: Hotline, chat: Chat) -> Reply:
    assert chat.case_room is not None
    return Reply(chat.case_room, "survivor_disconnected", (("minutes", minutes(state.rules.reconnect_grace)),))
