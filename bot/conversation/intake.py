"""The survivor's side: a new chat, its welcome, what the survivor writes, and their connection.

A chat starts with the survivor account's invitation; the bot's own join in that room brings the
survivor the rights notice and the welcome, and dispatch the alert. A survivor whose page drops
has ``Rules.reconnect_grace`` to come back (see bot/conversation/clock.py).
"""

from __future__ import annotations

from dataclasses import replace

from bot.conversation.case_room import on_case_member_joined
from bot.conversation.clock import dispatch_alerts
from bot.conversation.common import LANGUAGE_TAG, Result, close, disconnected_notice
from bot.conversation.effects import AcceptInvite, Count, Effect, NotifySurvivor, RelayToCase, Reply
from bot.conversation.events import (
    InviteReceived,
    MemberJoined,
    SurvivorDisconnected,
    SurvivorEnded,
    SurvivorNotified,
    SurvivorProfile,
    SurvivorReconnected,
    SurvivorWrote,
)
from bot.conversation.state import Chat, CloseReason, Hotline, IllegalTransition, Phase


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


def on_member_joined(state: Hotline, event: MemberJoined, now: float) -> Result:
    if event.user != state.rules.bot:
        return on_case_member_joined(state, event, now)
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is not Phase.WAITING or chat.reassured_at is not None:
        return state, []  # not a new chat, or welcomed already
    chat = replace(chat, reassured_at=now)
    state = state.with_chat(chat)
    place = str(state.place_in_line(chat))
    # The alert first (now, or grouped with others shortly): it goes to another room's queue
    # and need not wait for the notices.
    state, alerts = dispatch_alerts(state, now)
    return state, [
        *alerts,
        NotifySurvivor(chat.survivor_room, "rights"),
        NotifySurvivor(chat.survivor_room, "welcome", (("place", place),)),
        Count("started"),
    ]


def on_survivor_ended(state: Hotline, event: SurvivorEnded, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING:
        return state, []
    return close(state, chat, CloseReason.SURVIVOR, now)


def on_survivor_disconnected(state: Hotline, event: SurvivorDisconnected, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING or chat.disconnected_at is not None:
        return state, []
    chat = replace(chat, disconnected_at=now)
    effects: list[Effect] = []
    if chat.phase is Phase.ACTIVE:
        effects.append(disconnected_notice(state, chat))
    return state.with_chat(chat), effects


def on_survivor_reconnected(state: Hotline, event: SurvivorReconnected, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING or chat.disconnected_at is None:
        return state, []
    chat = replace(chat, disconnected_at=None)
    effects: list[Effect] = []
    if chat.phase is Phase.ACTIVE and chat.case_room is not None:
        effects.append(Reply(chat.case_room, "survivor_reconnected"))
    return state.with_chat(chat), effects


