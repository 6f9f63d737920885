"""Who gets the bot's room keys, and whose messages it acts on: the device trust policy.

The policy decides; bot/devices.py (part of the Matrix adapter) marks the devices. The emoji
verification and the announcements to the admins are in bot/verification.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.devices import Device
from hotline_runtime.cross_signing import KeysApi, master_key, signed_devices

if TYPE_CHECKING:
    from bot.matrix import BotMatrix

log = logging.getLogger(__name__)


HOLD_NOT_CROSS_SIGNED = "not_cross_signed"  # the device is not signed by its owner's identity
HOLD_IDENTITY_CHANGED = "identity_changed"  # the owner's identity is not the one the bot pinned
HOLD_IDENTITY_UNVERIFIED = "identity_unverified"  # strict policy: no identity pinned on first sight
HOLD_SURVIVOR_DEVICES = "survivor_devices"  # a survivor account with more than one device
PINNED = "identity:"  # store meta key prefix: a staff member's pinned master key
REVOKED = "revoked:"  # store meta key prefix: a device an admin revoked by hand (user and device)


class TrustPolicy:
    """Who gets the bot's room keys, and whose messages the bot acts on (privacy rule 4).

    Cross-signing is the basis, as in today's Element (MSC4153):
    - Staff: each staff member's master key is pinned when the bot first sees it (trust on first
      use), or by an admin (``!trust``). A staff device is trusted when it is signed by the pinned
      identity's self-signing key. A device that is not cross-signed, or any device of an identity
      that changed, gets no keys and is announced to the admins, who can still decide by hand
      (``!approve`` / ``!revoke``). ``trust_unsigned`` (demos only) also trusts devices that are
      not cross-signed. ``strict``: no identity is pinned on first sight except admins'; the others
      wait for ``!trust`` or a device's emoji verification confirmed by an admin.
    - A survivor account: its single device, trusted on first sight; an account with more than
      one device gets no keys at all (the gateway makes exactly one).
    - Anyone else, and the bot's own other devices: held back.
    """

    def __init__(self, store: Any, is_survivor_account: Any, trust_unsigned: bool,
                 on_held_back: Any = None, *, strict: bool = False, is_admin: Any = None) -> None:
        self._store = store
        self._is_survivor = is_survivor_account
        self._trust_unsigned = trust_unsigned
        self.on_held_back = on_held_back  # the announcer (bot/verification.py)
        self._strict = strict
        self._is_admin = is_admin or (lambda user_id: False)
        self.keys: KeysApi | None = None  # set once the bot has logged in
        self._seen_masters: dict[str, str | None] = {}  # the master key last seen per staff member

    def is_survivor(self, user_id: str) -> bool:
        return bool(self._is_survivor(user_id))

    async def apply(self, matrix: BotMatrix, room_id: str) -> None:
        await self.review(matrix, matrix.room_users(room_id))

    async def pinned(self, user_id: str) -> str | None:
        return await self._store.get_meta(PINNED + user_id)

    async def pin(self, matrix: BotMatrix, user_id: str) -> str | None:
        """An admin's ``!trust``: pin the user's current identity and decide their devices again.
        Returns the pinned master key, or None if the user has no cross-signing identity."""
        assert self.keys is not None
        query = await self.keys.query([user_id])
        current = master_key(query, user_id)
        if current is None:
            return None
        await self._store.set_meta(PINNED + user_id, current)
        self._seen_masters[user_id] = current
        signed = signed_devices(query, user_id, current)
        for device in matrix.devices.devices_of(user_id):
            if signed.get(device.id) == device.ed25519:
                matrix.devices.approve(device)
        return current

    async def decide(self, matrix: BotMatrix, user_id: str, device_id: str, *, approve: bool) -> bool:
        """An admin's ``!approve`` / ``!revoke``: kept, so that a revoked device stays revoked
        even when it is cross-signed later. False if the user has no such device."""
        if not matrix.devices.decide_device(user_id, device_id, approve=approve):
            return False
        key = f"{REVOKED}{user_id} {device_id}"
        await self._store.set_meta(key, "" if approve else "revoked")
        return True

    async def review(self, matrix: BotMatrix, user_ids: list[str], changed: frozenset[str] = frozenset()) -> None:
        """Decide every undecided device of these users, and look again at the identities of the
        users in ``changed`` (their device lists changed: a new device, or an identity reset)."""
        staff = []
        for user_id in user_ids:
            devices = matrix.devices.devices_of(user_id)
            undecided = [d for d in devices if not matrix.devices.is_decided(d)]
            if user_id == matrix.user_id or (self._is_survivor(user_id) and len(devices) > 1):
                reason = "" if user_id == matrix.user_id else HOLD_SURVIVOR_DEVICES
                await self._hold_back(matrix, user_id, undecided, reason, None)
            elif self._is_survivor(user_id):
                for device in undecided:
                    matrix.devices.verify(device)
            elif undecided or user_id in changed:
                staff.append(user_id)
        if not staff:
            return
        assert self.keys is not None, "the trust policy needs the bot's login"
        query = await self.keys.query(staff)
        for user_id in staff:
            await self._decide_staff(matrix, user_id, query)

    async def _decide_staff(self, matrix: BotMatrix, user_id: str, query: dict[str, Any]) -> None:
        current = master_key(query, user_id)
        pinned = await self.pinned(user_id)
        if pinned is None and current is not None and (not self._strict or self._is_admin(user_id)):
            await self._store.set_meta(PINNED + user_id, current)
            log.info("pinned the cross-signing identity of a staff member on first sight")
            pinned = current
        devices = matrix.devices.devices_of(user_id)
        first_look = user_id not in self._seen_masters
        if pinned is not None and current != pinned and (first_look or self._seen_masters[user_id] != current):
            # An identity reset (or a new one): every device is held back, also those trusted
            # before, until an admin trusts the new identity or approves a device by hand.
            self._seen_masters[user_id] = current
            await self._hold_back(matrix, user_id, devices, HOLD_IDENTITY_CHANGED, current, everything=True)
            return
        self._seen_masters[user_id] = current
        signed = signed_devices(query, user_id, pinned) if pinned is not None and current == pinned else {}
        # A session is cross-signed a moment after its keys appear (Element signs it right after
        # sign-in): a device held back for that reason gets keys once it is signed, unless an
        # admin revoked it.
        for device in devices:
            if (matrix.devices.is_held_back(device) and signed.get(device.id) == device.ed25519
                    and not await self._store.get_meta(f"{REVOKED}{user_id} {device.id}")):
                matrix.devices.approve(device)
                log.info("a staff device that was held back is cross-signed now and gets keys")
        for device in [d for d in devices if not matrix.devices.is_decided(d)]:
            if signed.get(device.id) == device.ed25519:
                matrix.devices.verify(device)
            elif self._trust_unsigned and (pinned is None or current == pinned):
                matrix.devices.verify(device)
            else:
                reason = HOLD_IDENTITY_UNVERIFIED if pinned is None and current is not None else HOLD_NOT_CROSS_SIGNED
                await self._hold_back(matrix, user_id, [device], reason, current)

    async def _hold_back(self, matrix: BotMatrix, user_id: str, devices: list[Device], reason: str,
                         master: str | None, *, everything: bool = False) -> None:
        for device in devices:
            if everything:
                matrix.devices.revoke(device)
            else:
                matrix.devices.hold_back(device)
            log.warning("held back keys from a device (%s)", reason or "the bot's own other device")
            if self.on_held_back is not None and reason:
                await self.on_held_back(user_id, device.id, reason, master)
