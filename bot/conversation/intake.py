"""The survivor's side: a new chat, its welcome, what the survivor writes, and their connection.

A chat is opened with the survivor account's invitation, often ahead of anyone needing it (the
gateway keeps a few ready): it is READY, and staff never see it. The bot's own join in that room
brings the rights notice. The chat starts when the gateway sends the survivor's profile (the
survivor pressed "Start chat"): then dispatch gets the alert and the survivor the welcome with
their place in line; the rights notice always comes before the welcome, whichever of the join and
the profile the bot sees first. A chat opened ahead that ends before it starts is let go silently.
A survivor whose page drops has ``Rules.reconnect_grace`` to come back (see clock.py).
"""

from __future__ import annotations

from dataclasses import replace

from bot.conversation.case_room import on_case_member_joined
from bot.conversation.clock import dispatch_alerts
from bot.conversation.common import LANGUAGE_TAG, Result, close, close_unused, disconnected_notice, excerpt
from bot.conversation.effects import AcceptInvite, Count, Effect, NotifySurvivor, RelayToCase, Reply
from bot.conversation.events import (
    InviteReceived,
    MemberJoined,
    RelayFailed,
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
    chat = Chat(ref=event.ref, survivor_room=event.room, survivor=event.inviter, opened_at=now, phase=Phase.READY)
    # The rights notice follows when the bot's own join shows up (MemberJoined); the alert and the
    # welcome when the survivor starts (SurvivorProfile).
    return state.with_chat(chat), [AcceptInvite(event.room)]


def on_survivor_wrote(state: Hotline, event: SurvivorWrote, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or event.sender != chat.survivor or chat.phase in (Phase.READY, Phase.CLOSING):
        return state, []
    heard = replace(chat, survivor_at=now, warned=False, reminded=False)
    if chat.phase is Phase.ACTIVE and chat.case_room is not None:
        return state.with_chat(heard), [RelayToCase(chat.case_room, event.event_id, event.text)]
    # WAITING / INVITING: relayed as backlog when the advocate joins.
    return state.with_chat(heard), []


def on_relay_failed(state: Hotline, event: RelayFailed, now: float) -> Result:
    """A relay did not get through. The advocate's line that did not reach the survivor: the case
    room is told, to send it again. The survivor's line that did not reach the case room while an
    advocate is there: the survivor is told which one, to send it again (the page had shown it as
    delivered: it is stored in the survivor room), and the case room that it is missing. A chat
    that has moved on (the advocate gone) needs nothing: the next advocate is shown the survivor
    room's history."""
    incident = (("incident", event.incident),)
    chat = state.by_survivor_room(event.room)
    if chat is not None and chat.case_room is not None and chat.phase is not Phase.CLOSING:
        return state, [Reply(chat.case_room, "relay_failed", incident)]
    chat = state.by_case_room(event.room)
    if chat is None or chat.phase is not Phase.ACTIVE:
        return state, []
    return state, [NotifySurvivor(chat.survivor_room, "not_passed_on", (("excerpt", excerpt(event.text)),)),
                   Reply(event.room, "survivor_relay_failed", incident)]


def on_survivor_profile(state: Hotline, event: SurvivorProfile, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    language = event.language.strip()
    valid = bool(LANGUAGE_TAG.match(language))
    if chat is not None and chat.phase is Phase.READY:
        return _start(state, chat, language if valid else None, now)
    if chat is None or chat.language is not None or not valid:
        return state, []
    chat = replace(chat, language=language)
    effects: list[Effect] = []
    if chat.phase is Phase.WAITING and chat.alerted_at is not None:
        # Not yet announced: the language goes in its (grouped) alert.
        effects.append(Reply(state.rules.dispatch_room, "alert_language",
                             (("ref", chat.ref), ("language", language))))
    return state.with_chat(chat), effects


def _start(state: Hotline, ready: Chat, language: str | None, now: float) -> Result:
    """The survivor pressed "Start chat": the chat joins the queue. The wait counts from now."""
    rights = [] if ready.rights_sent else [NotifySurvivor(ready.survivor_room, "rights")]
    chat = replace(ready, phase=Phase.WAITING, opened_at=now, reassured_at=now, rights_sent=True, language=language)
    state = state.with_chat(chat)
    place = str(state.place_in_line(chat))
    # The alert first (now, or grouped with others shortly): it goes to another room's queue
    # and need not wait for the notices.
    state, alerts = dispatch_alerts(state, now)
    return state, [
        *alerts,
        *rights,
        NotifySurvivor(chat.survivor_room, "welcome", (("place", place),)),
        Count("started"),
    ]


def on_survivor_notified(state: Hotline, event: SurvivorNotified, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or event.key != "rights" or chat.rights_delivered:
        return state, []
    return state.with_chat(replace(chat, rights_delivered=True)), []


def on_member_joined(state: Hotline, event: MemberJoined, now: float) -> Result:
    if event.user != state.rules.bot:
        return on_case_member_joined(state, event, now)
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is not Phase.READY or chat.rights_sent:
        return state, []  # not a new chat, or the rights notice is on its way already
    return state.with_chat(replace(chat, rights_sent=True)), [NotifySurvivor(chat.survivor_room, "rights")]


def on_survivor_ended(state: Hotline, event: SurvivorEnded, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING:
        return state, []
    if chat.phase is Phase.READY:
        return close_unused(state, chat)  # the gateway let go of a chat nobody started
    return close(state, chat, CloseReason.SURVIVOR, now)


def on_survivor_disconnected(state: Hotline, event: SurvivorDisconnected, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase in (Phase.READY, Phase.CLOSING) or chat.disconnected_at is not None:
        return state, []
    chat = replace(chat, disconnected_at=now)
    effects: list[Effect] = []
    if chat.phase is Phase.ACTIVE:
        effects.append(disconnected_notice(state, chat))
    return state.with_chat(chat), effects


def on_survivor_reconnected(state: Hotline, event: SurvivorReconnected, now: float) -> Result:
    chat = state.by_survivor_room(event.room)
    if chat is None or chat.phase in (Phase.READY, Phase.CLOSING) or chat.disconnected_at is None:
        return state, []
    chat = replace(chat, disconnected_at=None)
    effects: list[Effect] = []
    if chat.phase is Phase.ACTIVE and chat.case_room is not None:
        effects.append(Reply(chat.case_room, "survivor_reconnected"))
    return state.with_chat(chat), effects


