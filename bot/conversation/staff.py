"""Staff commands about one's own work and the service: claim, close, say, shift, chats, and the
admin's commands. Who may run each, and where, is checked before these run (permissions.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.commands import (
    Chats,
    Claim,
    Close,
    DeviceDecision,
    Devices,
    Help,
    Languages,
    Say,
    Service,
    Shift,
    Stats,
    TrustIdentity,
    VerifyDevice,
)
from bot.conversation.common import WAIT_BUCKETS, Result, bucket, close, minutes
from bot.conversation.effects import (
    ConfirmVerification,
    Count,
    DecideDevice,
    ListCanned,
    OpenCaseRoom,
    PinIdentity,
    Reply,
    SendCanned,
    SetLanguages,
    SetService,
    ShowDevices,
    ShowHelp,
    ShowStats,
)
from bot.conversation.events import CommandGiven
from bot.conversation.permissions import own_chat
from bot.conversation.state import CloseReason, Hotline, Phase
from bot.ids import UserId


def on_claim(state: Hotline, event: CommandGiven, command: Claim, now: float) -> Result:
    limit = state.rules.max_chats_per_advocate
    if len(state.chats_of(event.sender)) >= limit:
        return state, [Reply(event.room, "too_many_chats", (("max", str(limit)),))]
    shift_end = state.shifts.get(event.sender)
    if shift_end is not None and not command.force and shift_end - now <= state.rules.shift_guard:
        return state, [Reply(event.room, "shift_ending_claim", (("minutes", minutes(max(shift_end - now, 0))),))]
    if command.ref is None:
        chat = state.oldest_waiting()
        if chat is None:
            return state, [Reply(event.room, "nothing_waiting")]
    else:
        chat = state.chats.get(command.ref)
        if chat is None or chat.phase is Phase.READY:  # a chat nobody started is not there for staff
            return state, [Reply(event.room, "unknown_ref", (("ref", command.ref),))]
        if chat.phase is not Phase.WAITING:
            return state, [Reply(event.room, "already_taken", (("ref", chat.ref),))]
    claimed = replace(chat, phase=Phase.INVITING, advocate=event.sender, claimed_at=now)
    return state.with_chat(claimed), [
        Reply(event.room, "claimed", (("ref", chat.ref),)),
        OpenCaseRoom(chat.ref, event.sender),
        Count("answered"),
        Count("wait", bucket(now - chat.opened_at, WAIT_BUCKETS)),
    ]


def on_close(state: Hotline, event: CommandGiven, command: Close, now: float) -> Result:
    chat = own_chat(state, event)
    if chat.phase is Phase.CLOSING:
        return state, []
    return close(state, chat, CloseReason.ADVOCATE, now)


def on_say(state: Hotline, event: CommandGiven, command: Say, now: float) -> Result:
    if command.key is None:
        return state, [ListCanned(event.room)]
    chat = own_chat(state, event)
    if command.key not in state.rules.canned:
        return state, [Reply(event.room, "unknown_canned", (("key", command.key[:32]),))]
    if chat.phase is not Phase.ACTIVE:
        return state, [Reply(event.room, "not_active")]
    chat = replace(chat, advocate_at=now, reminded=False)
    assert chat.case_room is not None
    return state.with_chat(chat), [SendCanned(chat.survivor_room, chat.case_room, command.key, event.event_id)]


def on_shift(state: Hotline, event: CommandGiven, command: Shift, now: float) -> Result:
    shifts = dict(state.shifts)
    reminded = state.shift_reminded - {event.sender}
    if command.until is None:
        shifts.pop(event.sender, None)
        return replace(state, shifts=shifts, shift_reminded=reminded), [Reply(event.room, "shift_cleared")]
    zone = ZoneInfo(state.rules.zone)
    local = datetime.fromtimestamp(now, zone)
    end = local.replace(hour=command.until[0], minute=command.until[1], second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)  # "until 02:00" said in the evening: tonight
    shifts[event.sender] = end.timestamp()
    until = f"{command.until[0]:02d}:{command.until[1]:02d}"
    return replace(state, shifts=shifts, shift_reminded=reminded), [
        Reply(event.room, "shift_set", (("until", until),))]


def on_chats(state: Hotline, event: CommandGiven, command: Chats, now: float) -> Result:
    mine = state.chats_of(event.sender)
    if not mine:
        return state, [Reply(event.room, "no_chats")]
    items = "\n".join(f"{c.ref} · {c.phase} · open {minutes(now - c.opened_at)} min" for c in mine)
    return state, [Reply(event.room, "chats_list", (("items", items),))]


def on_help(state: Hotline, event: CommandGiven, command: Help, now: float) -> Result:
    return state, [ShowHelp(event.room, event.roles)]


def on_service(state: Hotline, event: CommandGiven, command: Service, now: float) -> Result:
    if command.open:
        return state, [SetService(closed=False), Reply(event.room, "service_opened")]
    return state, [SetService(closed=True, message=command.message),
                   Reply(event.room, "service_closed", (("message", command.message),))]


def on_stats(state: Hotline, event: CommandGiven, command: Stats, now: float) -> Result:
    return state, [ShowStats(event.room, command.days)]


def on_devices(state: Hotline, event: CommandGiven, command: Devices, now: float) -> Result:
    return state, [ShowDevices(event.room)]


def on_device_decision(state: Hotline, event: CommandGiven, command: DeviceDecision, now: float) -> Result:
    return state, [DecideDevice(event.room, UserId(command.user), command.device, command.approve)]


def on_verify_device(state: Hotline, event: CommandGiven, command: VerifyDevice, now: float) -> Result:
    return state, [ConfirmVerification(event.room, UserId(command.user), command.device)]


def on_trust_identity(state: Hotline, event: CommandGiven, command: TrustIdentity, now: float) -> Result:
    return state, [PinIdentity(event.room, UserId(command.user))]


def on_languages(state: Hotline, event: CommandGiven, command: Languages, now: float) -> Result:
    return state, [SetLanguages(event.room, event.sender, command.languages)]
