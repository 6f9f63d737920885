"""Handlers of the staff's tools: help, canned replies, statistics, the service switch, devices
and identities, interpreters. Listed in the one table of bot/effects.py (``HANDLERS``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot import messages
from bot.conversation import (
    AskInterpreters,
    ConfirmVerification,
    Count,
    DecideDevice,
    ListCanned,
    PinIdentity,
    Reply,
    SetLanguages,
    SetService,
    ShowDevices,
    ShowHelp,
    ShowStats,
)
from bot.ids import RoomId
from hotline_runtime.cross_signing import fingerprint
from hotline_runtime.errors import HotlineError
from hotline_runtime.wire import SERVICE_STATE

if TYPE_CHECKING:
    from bot.effects import Effects


async def show_help(fx: Effects, effect: ShowHelp) -> None:
    await fx.sender.send(effect.room, {"msgtype": "m.notice", "body": messages.help_text(effect.roles)})


async def list_canned(fx: Effects, effect: ListCanned) -> None:
    items = "\n".join(f"{key} — {fx.catalog.canned_text(key)[:60]}…" for key in sorted(fx.catalog.canned))
    await fx.reply(Reply(effect.room, "canned_list", (("items", items),)))


async def count(fx: Effects, effect: Count) -> None:
    await fx.store.count(fx.today(), effect.metric, effect.bucket)


async def show_stats(fx: Effects, effect: ShowStats) -> None:
    first = (datetime.now(fx.zone).date() - timedelta(days=effect.days - 1)).isoformat()
    totals: dict[tuple[str, str], int] = {}
    for _, metric, bucket_name, n in await fx.store.stats_since(first):
        totals[(metric, bucket_name)] = totals.get((metric, bucket_name), 0) + n
    lines = [f"{metric}{' · ' + b if b else ''}: {n}" for (metric, b), n in sorted(totals.items())]
    table = "\n".join(lines) or "(nothing counted yet)"
    await fx.reply(Reply(effect.room, "stats", (("days", str(effect.days)), ("table", table))))


async def set_service(fx: Effects, effect: SetService) -> None:
    if not fx.settings.service_room:
        raise HotlineError("no service room is configured (HOTLINE_SERVICE_ROOM)")
    content = {"closed": effect.closed, "message": effect.message}
    await fx.matrix.put_state(fx.settings.service_room, SERVICE_STATE, content)


async def show_devices(fx: Effects, effect: ShowDevices) -> None:
    items = "\n".join(f"{user} {device}" for user, device in fx.matrix.devices.held_back_devices(fx.staff.members()))
    await fx.reply(Reply(effect.room, "devices_list", (("items", items or "(none)"),)))


async def decide_device(fx: Effects, effect: DecideDevice) -> None:
    params = (("user", effect.user), ("device", effect.device))
    if not await fx.trust.decide(fx.matrix, effect.user, effect.device, approve=effect.approve):
        await fx.reply(Reply(effect.room, "device_unknown", params))
    else:
        await fx.reply(Reply(effect.room, "device_approved" if effect.approve else "device_revoked", params))


async def pin_identity(fx: Effects, effect: PinIdentity) -> None:
    master = await fx.trust.pin(fx.matrix, effect.user)
    params = (("user", effect.user), ("fingerprint", fingerprint(master or "")))
    await fx.reply(Reply(effect.room, "identity_trusted" if master else "identity_none", params))


async def confirm_verification(fx: Effects, effect: ConfirmVerification) -> None:
    await fx.verification.confirm(effect)


async def set_languages(fx: Effects, effect: SetLanguages) -> None:
    await fx.store.set_meta(f"languages:{effect.user}", " ".join(effect.languages))
    await fx.reply(Reply(effect.room, "languages_set", (("languages", ", ".join(effect.languages)),)))


async def ask_interpreters(fx: Effects, effect: AskInterpreters) -> None:
    room = fx.settings.interpreters_room or fx.settings.dispatch_room
    who = []
    for user in sorted(fx.matrix.room_members(room) - {fx.matrix.user_id}):
        languages = (await fx.store.get_meta(f"languages:{user}") or "").split()
        if effect.language in languages or effect.language.split("-")[0] in languages:
            who.append(user)
    mention = f"Interpreters for it: {', '.join(who)}. " if who else ""
    params = (("ref", effect.ref), ("language", effect.language), ("who", mention))
    await fx.reply(Reply(RoomId(room), "interpreter_wanted", params))
