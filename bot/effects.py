"""Carrying out the core's effects: ONE table (``HANDLERS``, at the end) from effect type to its
handler, and to the room whose ordered outbox it goes through when it only sends into one room.

Adding an effect: write its handler (here, or in bot/staff_effects.py for the staff's tools) and
add one row to ``HANDLERS``. A handler returns the events it produced (for the rules), or None.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import messages, staff_effects
from bot.codewords import Codewords
from bot.conversation import (
    AcceptInvite,
    AskInterpreters,
    AskSurvivor,
    CaseRoomOpened,
    CheckCodeword,
    CodewordChecked,
    ConfirmVerification,
    Count,
    DecideDevice,
    Effect,
    EraseCaseRoom,
    EraseChat,
    Escalate,
    EscalateGroup,
    Event,
    IllegalTransition,
    InviteToCase,
    ListCanned,
    MemberJoined,
    NotifySurvivor,
    OpenCaseRoom,
    PinIdentity,
    PostAlert,
    PostAlertGroup,
    RelayBacklog,
    RelayToCase,
    RelayToSurvivor,
    RemoveFromCase,
    Reply,
    SendCanned,
    SetLanguages,
    SetService,
    ShowDevices,
    ShowHelp,
    ShowStats,
    SignalClosed,
    SurvivorNotified,
)
from bot.erase import Eraser
from bot.ids import RoomId, UserId
from bot.matrix import TEXT_EVENTS, BotMatrix, txn_id_for
from bot.messages import Catalog
from bot.sender import Sender
from bot.settings import BotSettings
from bot.staff import Staff
from bot.store import Store
from bot.trust import TrustPolicy
from bot.verification import Verification
from hotline_runtime.errors import HotlineError
from hotline_runtime.wire import CONTROL_EVENT, ROLE_FIELD, Control, Role

log = logging.getLogger(__name__)

ALERT_LISTS_AT_MOST = 30  # refs in one grouped alert; the rest are counted ("!claim" takes the oldest)


class Effects:
    """What the handlers work with; ``carry_out`` and ``sends_to`` look an effect up in HANDLERS."""

    def __init__(self, settings: BotSettings, catalog: Catalog, store: Store, matrix: BotMatrix, sender: Sender,
                 staff: Staff, trust: TrustPolicy, verification: Verification, eraser: Eraser,
                 codewords: Codewords) -> None:
        self.settings = settings
        self.catalog = catalog
        self.zone = ZoneInfo(settings.timezone)
        self.store = store
        self.matrix = matrix
        self.sender = sender
        self.staff = staff
        self.trust = trust
        self.verification = verification
        self.eraser = eraser
        self.codewords = codewords

    async def carry_out(self, effect: Effect) -> list[Event]:
        way = HANDLERS.get(type(effect))
        if way is None:
            raise IllegalTransition(f"unknown effect {effect!r}")
        return await way.run(self, effect) or []

    def sends_to(self, effect: Effect) -> RoomId | None:
        """The room an effect only sends into (or joins); None for effects carried out at once."""
        way = HANDLERS.get(type(effect))
        return way.room(self, effect) if way is not None and way.room is not None else None

    @property
    def dispatch_room(self) -> RoomId:
        return RoomId(self.settings.dispatch_room)

    @property
    def supervisors_room(self) -> RoomId:
        return RoomId(self.settings.supervisors_room or self.settings.dispatch_room)

    def today(self) -> str:
        return datetime.now(self.zone).date().isoformat()

    async def reply(self, reply: Reply) -> None:
        await self.sender.reply(reply)


Produced = Awaitable[list[Event] | None]


@dataclass(frozen=True)
class Way:
    """How one effect type is carried out."""

    run: Callable[[Effects, Any], Produced]
    room: Callable[[Effects, Any], RoomId] | None = None  # set: through that room's outbox, in order


# ------------------------------------------------------------------ the room an effect sends into

def _own_room(fx: Effects, effect: Any) -> RoomId:
    return RoomId(effect.room)


def _survivor_room(fx: Effects, effect: Any) -> RoomId:
    return RoomId(effect.survivor_room)


def _case_room(fx: Effects, effect: Any) -> RoomId:
    return RoomId(effect.case_room)


def _dispatch_room(fx: Effects, effect: Any) -> RoomId:
    return fx.dispatch_room


def _supervisors_room(fx: Effects, effect: Any) -> RoomId:
    return fx.supervisors_room


# ------------------------------------------------------------------ alerts and escalations

def _group_params(items: list[str], minutes: int) -> tuple[tuple[str, str], ...]:
    shown = ", ".join(items[:ALERT_LISTS_AT_MOST])
    if len(items) > ALERT_LISTS_AT_MOST:
        shown += f" and {len(items) - ALERT_LISTS_AT_MOST} more"
    return (("count", str(len(items))), ("minutes", str(minutes)), ("refs", shown))


async def post_alert(fx: Effects, effect: PostAlert) -> None:
    params = (("ref", effect.ref), ("minutes", str(effect.waited_minutes)))
    key = "alert_repeat" if effect.waited_minutes else "alert"
    await fx.reply(Reply(fx.dispatch_room, key, params))


async def post_alert_group(fx: Effects, effect: PostAlertGroup) -> None:
    await fx.reply(Reply(fx.dispatch_room, "alert_group", _group_params(
        [f"{ref} ({language})" if language else ref for ref, language in effect.chats],
        effect.longest_minutes)))


async def escalate_group(fx: Effects, effect: EscalateGroup) -> None:
    await fx.reply(Reply(fx.supervisors_room, "escalation_group",
                         _group_params(list(effect.refs), effect.longest_minutes)))


async def escalate(fx: Effects, effect: Escalate) -> None:
    params = (("ref", effect.ref), ("minutes", str(effect.waited_minutes)))
    await fx.reply(Reply(fx.supervisors_room, "escalation", params))


async def reply(fx: Effects, effect: Reply) -> None:
    await fx.reply(effect)


# ------------------------------------------------------------------ the survivor's side

async def notify_survivor(fx: Effects, effect: NotifySurvivor) -> list[Event]:
    if effect.key == "advocate_gone":
        await fx.sender.stop_typing(effect.room)
    text = fx.catalog.survivor_text(effect.key, effect.params)
    await fx.sender.send(effect.room, {"msgtype": "m.notice", "body": text, ROLE_FIELD: Role.HOTLINE})
    return [SurvivorNotified(effect.room, effect.key)]


async def send_canned(fx: Effects, effect: SendCanned) -> None:
    text = fx.catalog.canned_text(effect.key)
    content = {"msgtype": "m.text", "body": text, ROLE_FIELD: Role.ADVOCATE}
    await fx.sender.send(effect.survivor_room, content, txn_id=txn_id_for(effect.source, "canned"))
    await fx.reply(Reply(effect.case_room, "canned_sent", (("text", text),)))


async def ask_survivor(fx: Effects, effect: AskSurvivor) -> None:
    await fx.sender.send(effect.room, {"action": Control.ASK, "question": effect.question}, event_type=CONTROL_EVENT)


async def signal_closed(fx: Effects, effect: SignalClosed) -> None:
    await fx.sender.send(effect.room, {"action": Control.CLOSED}, event_type=CONTROL_EVENT)


async def check_codeword(fx: Effects, effect: CheckCodeword) -> list[Event]:
    # The code word leaves the room first: redacted now, purged with the room at the end.
    try:
        await fx.matrix.redact(effect.survivor_room, effect.source)
    except HotlineError as error:
        log.error("could not redact a code word answer yet: %s", error)
    today = datetime.now(fx.zone).date()
    if effect.mode == "new":
        outcome = await fx.codewords.create(effect.value, today)
    elif effect.mode == "rotate" and effect.case:
        outcome = await fx.codewords.rotate(effect.case, effect.value, today)
    else:
        outcome = await fx.codewords.verify(effect.case or "", effect.value, today)
    params = (("case", outcome.case), ("set_on", outcome.set_on), ("until", outcome.until))
    await fx.reply(Reply(effect.case_room, outcome.key, params))
    if outcome.key in ("codeword_set", "codeword_rotated"):
        text = fx.catalog.survivor_text(outcome.key, (("case", outcome.case),))
        await fx.sender.send(effect.survivor_room, {"msgtype": "m.notice", "body": text, ROLE_FIELD: Role.HOTLINE})
    return [CodewordChecked(effect.ref, outcome.case, outcome.matched)]


# ------------------------------------------------------------------ relays

async def relay_to_case(fx: Effects, effect: RelayToCase) -> None:
    body = messages.staff_text("survivor_label", text=effect.text)
    await fx.sender.send(effect.room, {"msgtype": "m.text", "body": body}, txn_id=txn_id_for(effect.source, "to-case"))


async def relay_to_survivor(fx: Effects, effect: RelayToSurvivor) -> None:
    content = {"msgtype": "m.text", "body": effect.text, ROLE_FIELD: effect.role}
    await fx.sender.send(effect.room, content, txn_id=txn_id_for(effect.source, "to-survivor"))


async def relay_backlog(fx: Effects, effect: RelayBacklog) -> None:
    """The conversation so far, oldest first: the survivor's words and the staff's replies."""
    backlog = []
    async for event in fx.matrix.history(effect.survivor_room):
        if not isinstance(event, TEXT_EVENTS) or not getattr(event, "decrypted", False):
            continue
        role = event.source.get("content", {}).get(ROLE_FIELD)
        if event.sender == effect.survivor:
            backlog.append((event.event_id, messages.staff_text("survivor_label", text=event.body)))
        elif event.sender == fx.matrix.user_id and role in (Role.ADVOCATE, Role.INTERPRETER, Role.SUPERVISOR):
            backlog.append((event.event_id, f"{str(role).capitalize()} (earlier): {event.body}"))
    for event_id, body in reversed(backlog):
        # The same transaction id as a live relay of that event: never delivered twice.
        txn = txn_id_for(event_id, "to-case")
        await fx.sender.send(effect.case_room, {"msgtype": "m.text", "body": body}, txn_id=txn)


# ------------------------------------------------------------------ rooms

async def accept_invite(fx: Effects, effect: AcceptInvite) -> list[Event]:
    """Join; the rules hear of the bot's join as soon as it can send there (the rights notice
    then goes out at once), not when the join comes back in the bot's next sync. That sync's
    own MemberJoined is then a repeat, which the rules ignore."""
    ready = await fx.matrix.join(effect.room)
    return [MemberJoined(effect.room, UserId(fx.matrix.user_id))] if ready else []


async def open_case_room(fx: Effects, effect: OpenCaseRoom) -> list[Event]:
    room = await fx.matrix.create_private_room(invite=[effect.advocate])
    return [CaseRoomOpened(effect.ref, RoomId(room))]


async def invite_to_case(fx: Effects, effect: InviteToCase) -> None:
    await fx.matrix.invite(effect.room, effect.user)


async def remove_from_case(fx: Effects, effect: RemoveFromCase) -> None:
    if effect.user in fx.matrix.room_members(effect.room):
        await fx.matrix.kick(effect.room, effect.user)
        log.warning("removed someone who joined a case room without the bot's invitation")
        await fx.reply(Reply(effect.room, "removed_uninvited", (("user", effect.user),)))


async def erase_chat(fx: Effects, effect: EraseChat) -> None:
    fx.eraser.erase_chat(effect.chat)


async def erase_case_room(fx: Effects, effect: EraseCaseRoom) -> None:
    fx.eraser.erase_case_room(effect.room)


# ------------------------------------------------------------------ the table

HANDLERS: dict[type, Way] = {
    # AcceptInvite through the room's outbox too: when several survivors start at once, the bot
    # joins their rooms side by side instead of one after another.
    AcceptInvite: Way(accept_invite, _own_room),
    PostAlert: Way(post_alert, _dispatch_room),
    PostAlertGroup: Way(post_alert_group, _dispatch_room),
    Escalate: Way(escalate, _supervisors_room),
    EscalateGroup: Way(escalate_group, _supervisors_room),
    Reply: Way(reply, _own_room),
    NotifySurvivor: Way(notify_survivor, _own_room),
    SendCanned: Way(send_canned, _survivor_room),
    AskSurvivor: Way(ask_survivor, _own_room),
    SignalClosed: Way(signal_closed, _own_room),
    CheckCodeword: Way(check_codeword, _survivor_room),
    RelayToCase: Way(relay_to_case, _own_room),
    RelayToSurvivor: Way(relay_to_survivor, _own_room),
    RelayBacklog: Way(relay_backlog, _case_room),
    OpenCaseRoom: Way(open_case_room),
    InviteToCase: Way(invite_to_case),
    RemoveFromCase: Way(remove_from_case),
    EraseChat: Way(erase_chat),
    EraseCaseRoom: Way(erase_case_room),
    # The staff's tools (bot/staff_effects.py).
    ListCanned: Way(staff_effects.list_canned, _own_room),
    ShowHelp: Way(staff_effects.show_help, _own_room),
    ShowStats: Way(staff_effects.show_stats, _own_room),
    ShowDevices: Way(staff_effects.show_devices, _own_room),
    Count: Way(staff_effects.count),
    SetService: Way(staff_effects.set_service),
    DecideDevice: Way(staff_effects.decide_device),
    PinIdentity: Way(staff_effects.pin_identity),
    ConfirmVerification: Way(staff_effects.confirm_verification),
    SetLanguages: Way(staff_effects.set_languages),
    AskInterpreters: Way(staff_effects.ask_interpreters),
}
