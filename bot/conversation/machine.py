"""The machine: ``apply(state, event, now)`` hands each event to its rule; ``recover`` after a restart.

Each event type has one handler (``HANDLERS``), each command one rule (``COMMANDS``), run only
once the permission table allows it (permissions.py). Phase changes are checked against
``state.TRANSITIONS`` wherever a chat is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.commands import (
    Chats,
    Claim,
    Close,
    Codeword,
    DeviceDecision,
    Devices,
    Help,
    InterpreterRequest,
    Invalid,
    Join,
    Languages,
    Say,
    Service,
    Shift,
    Stats,
    SupervisorRequest,
    Transfer,
    TrustIdentity,
    VerifyDevice,
)
from bot.conversation import case_room, clock, codeword, intake, staff, team
from bot.conversation.common import Result
from bot.conversation.effects import Effect, EraseChat, OpenCaseRoom, Reply
from bot.conversation.events import (
    CaseRoomOpened,
    ChatErased,
    ClockTicked,
    CodewordChecked,
    CommandGiven,
    Event,
    InviteReceived,
    MemberJoined,
    MemberLeft,
    RelayFailed,
    StaffEdited,
    StaffWrote,
    SurvivorAnswered,
    SurvivorDisconnected,
    SurvivorEnded,
    SurvivorNotified,
    SurvivorProfile,
    SurvivorReconnected,
    SurvivorWrote,
)
from bot.conversation.permissions import refusal
from bot.conversation.state import Hotline, IllegalTransition, Phase


def apply(state: Hotline, event: Event, now: float) -> Result:
    handler = HANDLERS[type(event)]
    return handler(state, event, now)


def recover(state: Hotline) -> list[Effect]:
    """After a restart: the effects of interrupted work, so that it is finished, not lost."""
    effects: list[Effect] = []
    for chat in sorted(state.chats.values(), key=lambda c: c.opened_at):
        if chat.phase is Phase.CLOSING:
            effects.append(EraseChat(chat))
        elif chat.phase is Phase.INVITING and chat.case_room is None and chat.advocate:
            effects.append(OpenCaseRoom(chat.ref, chat.advocate))
    return effects


def on_command_given(state: Hotline, event: CommandGiven, now: float) -> Result:
    command = event.command
    if isinstance(command, Invalid):
        return state, [Reply(event.room, command.reason, (("name", command.name),))]
    rule = COMMANDS.get(type(command))
    if rule is None:
        raise IllegalTransition(f"unhandled command {command!r}")
    refused = refusal(state, event)
    if refused:
        return state, refused
    return rule(state, event, command, now)


def on_chat_erased(state: Hotline, event: ChatErased, now: float) -> Result:
    chat = state.chats.get(event.ref)
    if chat is None:
        return state, []
    if chat.phase is not Phase.CLOSING:
        raise IllegalTransition(f"{event.ref} erased while {chat.phase}")
    return state.without(event.ref), []


COMMANDS: dict[type, Callable[[Hotline, CommandGiven, Any, float], Result]] = {
    Claim: staff.on_claim,
    Close: staff.on_close,
    Say: staff.on_say,
    Shift: staff.on_shift,
    Chats: staff.on_chats,
    Help: staff.on_help,
    Service: staff.on_service,
    Stats: staff.on_stats,
    Devices: staff.on_devices,
    DeviceDecision: staff.on_device_decision,
    VerifyDevice: staff.on_verify_device,
    TrustIdentity: staff.on_trust_identity,
    Languages: staff.on_languages,
    Transfer: team.on_transfer,
    SupervisorRequest: team.on_supervisor_request,
    Join: team.on_join,
    InterpreterRequest: team.on_interpreter_request,
    Codeword: codeword.on_codeword,
}

HANDLERS: dict[type, Callable[[Hotline, Any, float], Result]] = {
    InviteReceived: intake.on_invite_received,
    SurvivorWrote: intake.on_survivor_wrote,
    SurvivorProfile: intake.on_survivor_profile,
    SurvivorNotified: intake.on_survivor_notified,
    RelayFailed: intake.on_relay_failed,
    StaffWrote: case_room.on_staff_wrote,
    StaffEdited: case_room.on_staff_edited,
    CommandGiven: on_command_given,
    CaseRoomOpened: case_room.on_case_room_opened,
    MemberJoined: intake.on_member_joined,
    SurvivorEnded: intake.on_survivor_ended,
    SurvivorDisconnected: intake.on_survivor_disconnected,
    SurvivorReconnected: intake.on_survivor_reconnected,
    SurvivorAnswered: codeword.on_survivor_answered,
    CodewordChecked: codeword.on_codeword_checked,
    MemberLeft: case_room.on_member_left,
    ClockTicked: clock.on_clock_ticked,
    ChatErased: on_chat_erased,
}
