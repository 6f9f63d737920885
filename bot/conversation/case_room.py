"""The case room: who is in it, what they write, and what happens when someone joins or leaves.

Who is in a case room: the advocate, at most one supervisor and one interpreter, each let in by
one invitation at a time, and announced to the survivor with that role exactly once when they
join. Anyone else who joins is removed. An advocate who leaves the case room (or is removed, or
whose account is closed) sends the chat back to WAITING, first in line.
"""

from __future__ import annotations

from dataclasses import replace

from bot.commands import has_command_line
from bot.conversation.common import Result, disconnected_notice
from bot.conversation.effects import (
    Effect,
    EraseCaseRoom,
    NotifySurvivor,
    Params,
    RelayBacklog,
    RelayToSurvivor,
    RemoveFromCase,
    Reply,
)
from bot.conversation.events import CaseRoomOpened, MemberJoined, MemberLeft, StaffEdited, StaffWrote
from bot.conversation.state import Chat, Hotline, IllegalTransition, Phase, StaffRole
from bot.ids import UserId
from hotline_runtime.wire import Role


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

def on_case_room_opened(state: Hotline, event: CaseRoomOpened, now: float) -> Result:
    chat = state.chats.get(event.ref)
    if chat is None or chat.phase is not Phase.INVITING:
        raise IllegalTransition(f"case room for {event.ref} in phase {chat and chat.phase}")
    return state.with_chat(replace(chat, case_room=event.room)), []


def on_case_member_joined(state: Hotline, event: MemberJoined, now: float) -> Result:
    """Someone other than the bot joined a room: the advocate, an invited supervisor or interpreter, or an intruder."""
    chat = state.by_case_room(event.room)
    if chat is None or chat.phase is Phase.CLOSING:
        return state, []
    if chat.phase is Phase.ACTIVE:
        if event.user in (chat.advocate, chat.supervisor, chat.interpreter):
            return state, []  # already in and announced (a join seen again, e.g. after a restart)
        if chat.invited_interpreter == event.user:
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
        effects.append(disconnected_notice(state, chat))
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
    if chat.invited_interpreter == event.user:
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


