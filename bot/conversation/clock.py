"""The clock: every timer runs on ``ClockTicked``.

Reassurance while waiting, grouped dispatch alerts, re-alerts and escalations, the longest wait
(then the survivor is told the other ways to get help and the chat closes), the inactivity
warning and close, the advocate reminder, the reconnect grace period and the shift reminder. A chat
opened ahead (READY) has no timer but its age: past ``Practice.ready_max_age`` it is let go silently.

Dispatch alerts are grouped: at most ``Practice.alert_burst`` alerts (and as many escalations and
notes of chats closed unanswered) in any ``Practice.alert_window``. Chats are announced at once
until then; chats that start after that within the window are announced together in one alert
that lists their refs, so that many chats at once (a flood) cannot bury the dispatch room.
"""

from __future__ import annotations

from dataclasses import replace

from bot.conversation.common import Result, close, close_unused, minutes
from bot.conversation.effects import Effect, Escalate, EscalateGroup, NotifySurvivor, PostAlert, PostAlertGroup, Reply
from bot.conversation.events import ClockTicked
from bot.conversation.state import Chat, CloseReason, Hotline, Phase, Practice


def on_clock_ticked(state: Hotline, event: ClockTicked, now: float) -> Result:
    state, effects = _expire_unanswered(state, now)
    for ref in [c.ref for c in sorted(state.chats.values(), key=lambda c: c.opened_at)]:
        state, more = _timers(state, state.chats[ref], now)
        effects += more
    state, more = dispatch_alerts(state, now)
    effects += more
    state, more = _escalations(state, now)
    effects += more
    for advocate, end in sorted(state.shifts.items()):
        if advocate in state.shift_reminded or end - now > state.rules.shift_guard:
            continue
        open_chats = [c for c in state.chats_of(advocate) if c.case_room is not None]
        if open_chats:
            state = replace(state, shift_reminded=state.shift_reminded | {advocate})
            left = (("minutes", minutes(max(end - now, 0))),)
            effects += [Reply(c.case_room, "shift_reminder", left) for c in open_chats if c.case_room]
    return state, effects


def _timers(state: Hotline, chat: Chat, now: float) -> Result:
    rules, practice = state.rules, state.rules.practice
    if chat.phase is Phase.CLOSING:
        return state, []
    if chat.phase is Phase.READY:  # opened ahead, not started: only its age counts
        return close_unused(state, chat) if now - chat.opened_at >= practice.ready_max_age else (state, [])
    if chat.disconnected_at is not None:
        if now - chat.disconnected_at >= rules.reconnect_grace:
            return close(state, chat, CloseReason.CONNECTION_LOST, now)
        return state, []  # a survivor who is away gets no notices and no inactivity close
    effects: list[Effect] = []
    if chat.phase is Phase.WAITING and chat.reassured_at is not None:
        # Alerts, re-alerts and escalations are grouped over all chats: dispatch_alerts, _escalations.
        if now - chat.reassured_at >= practice.reassure_every:
            chat = replace(chat, reassured_at=now)
            effects.append(NotifySurvivor(chat.survivor_room, "still_waiting",
                                          (("place", str(state.place_in_line(chat))),)))
    elif chat.phase is Phase.ACTIVE and chat.survivor_at is not None and chat.case_room is not None:
        quiet = now - chat.survivor_at
        if quiet >= practice.inactivity_warning_after + practice.inactivity_close_after and chat.warned:
            return close(state, chat, CloseReason.INACTIVITY, now)
        if quiet >= practice.inactivity_warning_after and not chat.warned:
            chat = replace(chat, warned=True)
            closes_in = (("minutes", minutes(practice.inactivity_close_after)),)
            effects += [NotifySurvivor(chat.survivor_room, "inactivity_warning", closes_in),
                        Reply(chat.case_room, "inactivity_warned", closes_in)]
        answered = chat.advocate_at is not None and chat.advocate_at >= chat.survivor_at
        if not answered and not chat.reminded and quiet >= practice.advocate_reminder_after:
            chat = replace(chat, reminded=True)
            effects.append(Reply(chat.case_room, "advocate_reminder", (("minutes", minutes(quiet)),)))
    return state.with_chat(chat), effects


def _window_open(sent: tuple[float, ...], now: float, practice: Practice) -> bool:
    """Fewer than ``alert_burst`` posts of this kind in the last ``alert_window`` seconds."""
    return sum(1 for t in sent if now - t < practice.alert_window) < practice.alert_burst


def _sent(sent: tuple[float, ...], now: float, practice: Practice) -> tuple[float, ...]:
    return tuple(t for t in sent if now - t < practice.alert_window) + (now,)


def dispatch_alerts(state: Hotline, now: float) -> Result:
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
        longest = int(minutes(max(now - c.opened_at for c in due)))
        return state, [PostAlertGroup(tuple((c.ref, c.language or "") for c in due), longest)]
    chat = due[0]
    if chat.alerted_at is not None:
        return state, [PostAlert(chat.ref, int(minutes(now - chat.opened_at)))]
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
    longest = int(minutes(max(now - c.opened_at for c in due)))
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
        state, more = close(state, chat, CloseReason.UNANSWERED, now)
        effects += more
    refs = ", ".join(c.ref for c in sorted(due, key=lambda c: (c.opened_at, c.ref)))
    effects.append(Reply(state.rules.dispatch_room, "closed_unanswered",
                         (("refs", refs), ("minutes", minutes(practice.max_wait)))))
    return replace(state, expiries_sent=_sent(state.expiries_sent, now, practice)), effects


