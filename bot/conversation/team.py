"""Bringing others into a chat and handing it on: !transfer and !handoff, !supervisor, !join,
!interpreter (after the survivor's consent). Who may run each is checked first (permissions.py);
!join checks it itself once the chat is found."""

from __future__ import annotations

from dataclasses import replace

from bot.commands import InterpreterRequest, Join, SupervisorRequest, Transfer
from bot.conversation.common import Result
from bot.conversation.effects import (
    AskInterpreters,
    AskSurvivor,
    Effect,
    EraseCaseRoom,
    InviteToCase,
    NotifySurvivor,
    OpenCaseRoom,
    Reply,
)
from bot.conversation.events import CommandGiven, SurvivorAnswered
from bot.conversation.permissions import own_chat, refusal
from bot.conversation.state import (
    AskingInterpreters,
    AskingSurvivor,
    Chat,
    Hotline,
    InterpreterInvited,
    Phase,
    StaffRole,
)
from bot.ids import UserId
from hotline_runtime.wire import AskQuestion


def on_transfer(state: Hotline, event: CommandGiven, command: Transfer, now: float) -> Result:
    chat = own_chat(state, event)
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


def on_supervisor_request(state: Hotline, event: CommandGiven, command: SupervisorRequest, now: float) -> Result:
    chat = own_chat(state, event)
    room = state.rules.supervisors_room or state.rules.dispatch_room
    return state, [Reply(room, "supervisor_wanted", (("ref", chat.ref),)), Reply(event.room, "supervisor_asked")]


def on_join(state: Hotline, event: CommandGiven, command: Join, now: float) -> Result:
    """An unknown ref, or one's own chat, is answered the same for everyone; then the roles."""
    chat = state.chats.get(command.ref)
    if chat is None or chat.phase is not Phase.ACTIVE or chat.case_room is None:
        return state, [Reply(event.room, "unknown_active_ref", (("ref", command.ref),))]
    if event.sender in (chat.advocate, chat.supervisor, chat.interpreter):
        return state, [Reply(event.room, "already_in", (("ref", chat.ref),))]
    refused = refusal(state, event, late=True)
    if refused:
        return state, refused
    # An interpreter when the chat waits for one and they asked as one (from the interpreters
    # room, or they are not a supervisor); a supervisor otherwise. One invitation at a time.
    as_interpreter = (StaffRole.INTERPRETER in event.roles
                      and isinstance(chat.interpreter_request, (AskingInterpreters, InterpreterInvited))
                      and (event.room == state.rules.interpreters_room or StaffRole.SUPERVISOR not in event.roles))
    if as_interpreter:
        return _invite(state, event, chat, chat.invited_interpreter, StaffRole.INTERPRETER)
    if StaffRole.SUPERVISOR in event.roles:
        if chat.supervisor is not None:
            return state, [Reply(event.room, "supervisor_present", (("ref", chat.ref), ("user", chat.supervisor)))]
        return _invite(state, event, chat, chat.invited, StaffRole.SUPERVISOR)
    return state, [Reply(event.room, "join_refused")]


def _invite(state: Hotline, event: CommandGiven, chat: Chat, pending: UserId | None, role: StaffRole) -> Result:
    """One invitation at a time: the sender's own again is only acknowledged."""
    assert chat.case_room is not None
    joining = Reply(event.room, "joining", (("ref", chat.ref),))
    if pending == event.sender:
        return state, [joining]
    if pending is not None:
        return state, [Reply(event.room, "already_joining", (("ref", chat.ref), ("user", pending)))]
    if role is StaffRole.INTERPRETER:
        chat = replace(chat, interpreter_request=InterpreterInvited(event.sender))
    else:
        chat = replace(chat, invited=event.sender)
    return state.with_chat(chat), [InviteToCase(chat.case_room, event.sender), joining]


def on_interpreter_request(state: Hotline, event: CommandGiven, command: InterpreterRequest, now: float) -> Result:
    chat = own_chat(state, event)
    if chat.phase is not Phase.ACTIVE:
        return state, [Reply(event.room, "not_active")]
    if command.user is not None and StaffRole.INTERPRETER not in event.target_roles:
        return state, [Reply(event.room, "not_an_interpreter", (("user", command.user),))]
    if chat.interpreter is not None:
        return state, [Reply(event.room, "interpreter_present", (("user", chat.interpreter),))]
    pending = chat.invited_interpreter
    if pending is not None:
        return state, [Reply(event.room, "already_joining", (("ref", chat.ref), ("user", pending)))]
    wanted = command.user or command.language or ""
    chat = replace(chat, interpreter_request=AskingSurvivor(wanted))
    return state.with_chat(chat), [AskSurvivor(chat.survivor_room, AskQuestion.INTERPRETER_CONSENT),
                                   Reply(event.room, "interpreter_asking")]


def on_interpreter_consent(state: Hotline, chat: Chat, event: SurvivorAnswered) -> Result:
    """The survivor's Yes or No to an interpreter."""
    assert chat.case_room is not None
    step = chat.interpreter_request
    if not isinstance(step, AskingSurvivor):
        return state, []
    wanted = step.wanted
    if event.value != "yes":
        chat = replace(chat, interpreter_request=None)
        return state.with_chat(chat), [Reply(chat.case_room, "interpreter_declined")]
    if wanted.startswith("@"):
        chat = replace(chat, interpreter_request=InterpreterInvited(UserId(wanted)))
        return state.with_chat(chat), [Reply(chat.case_room, "interpreter_consented"),
                                       InviteToCase(chat.case_room, UserId(wanted))]
    chat = replace(chat, interpreter_request=AskingInterpreters(wanted))
    return state.with_chat(chat), [Reply(chat.case_room, "interpreter_consented"),
                                   AskInterpreters(chat.ref, wanted)]
