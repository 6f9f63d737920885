"""Staff devices as the admins see them: emoji verification (confirmed by an admin with
``!verify``), held-back devices announced in the admin room, and staff messages acted on only
from a trusted device (the sender told once per device when not)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.conversation import ConfirmVerification, Reply
from bot.ids import RoomId
from bot.matrix import (
    BotMatrix,
    KeyVerificationCancel,
    KeyVerificationEvent,
    KeyVerificationKey,
    KeyVerificationMac,
    KeyVerificationStart,
)
from bot.sender import Sender
from bot.staff import Staff
from bot.tasks import Tasks
from bot.trust import TrustPolicy
from hotline_runtime.cross_signing import fingerprint

log = logging.getLogger(__name__)

ANNOUNCE_GRACE_SECONDS = 5.0  # a new session is cross-signed right after it appears


class Verification:
    def __init__(self, matrix: BotMatrix, staff: Staff, sender: Sender, tasks: Tasks, trust: TrustPolicy,
                 is_survivor_account: Any) -> None:
        self.matrix = matrix
        self.devices = matrix.devices
        self.staff = staff
        self.sender = sender
        self.tasks = tasks
        self.trust = trust
        self._is_survivor = is_survivor_account
        self._announced_devices: set[tuple[str, str, str]] = set()
        self._told_devices: set[tuple[str, str, str]] = set()  # (notice, user, device) told in a room

    # ------------------------------------------------------------------ emoji verification

    async def on_event(self, event: KeyVerificationEvent) -> None:
        """Emoji verification started by a staff member's client; an admin confirms with !verify."""
        sas = self.devices.verification(event.transaction_id)
        if sas is None or event.sender not in self.staff.members():
            return
        device = sas.other_olm_device
        params = (("user", device.user_id), ("device", device.id))
        admin_room = self.staff.admin_room
        if isinstance(event, KeyVerificationStart):
            await self.devices.accept_verification(event.transaction_id)
        elif isinstance(event, KeyVerificationKey) and admin_room:
            emojis = ", ".join(f"{emoji} {name}" for emoji, name in sas.get_emoji())
            await self.sender.reply(Reply(admin_room, "verification_emojis", (*params, ("emojis", emojis))))
        elif isinstance(event, KeyVerificationMac) and sas.verified:
            await self._verified(sas, admin_room)
        elif isinstance(event, KeyVerificationCancel) and admin_room:
            await self.sender.reply(Reply(admin_room, "verification_cancelled", params))

    async def _verified(self, sas: Any, room: RoomId | None) -> None:
        device = sas.other_olm_device
        self.devices.decide_device(device.user_id, device.id, approve=True)
        log.info("staff device %s of %s verified with emojis", device.id, device.user_id)
        if room:
            await self.sender.reply(Reply(room, "verification_done", (("user", device.user_id), ("device", device.id))))

    async def confirm(self, effect: ConfirmVerification) -> None:
        params = (("user", effect.user), ("device", effect.device))
        sas = self.devices.find_verification(effect.user, effect.device)
        if sas is None:
            await self.sender.reply(Reply(effect.room, "verification_none", params))
            return
        await self.devices.confirm_verification(sas.transaction_id)
        if sas.verified:
            await self._verified(sas, effect.room)
        else:
            await self.sender.reply(Reply(effect.room, "verification_waiting", params))

    # ------------------------------------------------------------------ held-back devices

    async def held_back(self, user_id: str, device_id: str, reason: str, master: str | None) -> None:
        """The trust policy held back a device: the admins are told (once, after a grace)."""
        if self._is_survivor(user_id) or (user_id, device_id, reason) in self._announced_devices:
            return
        self._announced_devices.add((user_id, device_id, reason))
        log.warning("staff device %s of %s held back (%s)", device_id, user_id, reason)
        if self.staff.admin_room:
            params = (("user", user_id), ("device", device_id), ("fingerprint", fingerprint(master or "")))
            self.tasks.spawn(self._announce_held_back(user_id, device_id, Reply(self.staff.admin_room,
                                                                                f"device_{reason}", params)),
                             "announce a held-back device")

    async def _announce_held_back(self, user_id: str, device_id: str, reply: Reply) -> None:
        """Announced to the admins only if still held back a little later: a new session is
        usually cross-signed by its owner's client a moment after it appears."""
        await asyncio.sleep(ANNOUNCE_GRACE_SECONDS)
        device = next((d for d in self.devices.devices_of(user_id) if d.id == device_id), None)
        if device is not None and self.devices.is_held_back(device):
            await self.sender.reply(reply)

    # ------------------------------------------------------------------ staff messages

    async def from_trusted_device(self, room: RoomId, event: Any) -> bool:
        """Staff text counts only from a device the trust policy trusts, as today's Element reads
        only messages from devices their owner verified: a password alone (a new, unverified
        session) cannot claim, close or write to a survivor. The sender is told once per device."""
        device = self.devices.sending_device(room, event)
        if device is None:
            await self.devices.refresh_devices(event.sender)  # a session the bot has not seen yet
            device = self.devices.sending_device(room, event)
        if device is not None:
            await self.trust.review(self.matrix, [event.sender])
            if self.devices.is_trusted(device):
                return True
        log.warning("ignored a staff message from a session that is not trusted")
        await self.tell_sender_once(room, "staff_device_untrusted", event.sender, device.id if device else "?")
        return False

    async def tell_sender_once(self, room: RoomId, key: str, user: str, device: str) -> None:
        if (key, user, device) in self._told_devices:
            return
        self._told_devices.add((key, user, device))
        await self.sender.reply(Reply(room, key, (("user", user), ("device", device))))
