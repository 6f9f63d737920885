"""Part of the bot's Matrix adapter: the devices the bot knows and its trust marks on them.

The trust policy (bot/trust.py) decides; this module only reads and marks devices in the
matrix-nio client that bot/matrix.py owns. A decision takes effect with new room keys from the
next message on.
"""

from __future__ import annotations

from typing import Any

from hotline_runtime import e2ee

Device = Any  # a matrix-nio OlmDevice: user_id, id, ed25519, curve25519


class Devices:
    def __init__(self, client: Any) -> None:
        self.client = client  # the nio client of bot/matrix.py

    def devices_of(self, user_id: str) -> list[Device]:
        return e2ee.other_devices(self.client, user_id)

    def held_back_devices(self, users: set[str]) -> list[tuple[str, str]]:
        olm = self.client.olm
        return sorted((user, device.id) for user in users for device in self.devices_of(user)
                      if olm.is_device_blacklisted(device))

    def decide_device(self, user_id: str, device_id: str, *, approve: bool) -> bool:
        """Approve (verify) or revoke (hold back) a staff device; False if there is no such device."""
        device = next((d for d in self.devices_of(user_id) if d.id == device_id), None)
        if device is None:
            return False
        (e2ee.approve_device if approve else e2ee.revoke_device)(self.client, device)
        return True

    def is_decided(self, device: Device) -> bool:
        return e2ee.is_decided(self.client, device)

    def verify(self, device: Device) -> None:
        self.client.verify_device(device)

    def hold_back(self, device: Device) -> None:
        self.client.blacklist_device(device)

    def approve(self, device: Device) -> None:
        """Trust a device that was held back, with new room keys from the next message on."""
        self.decide_device(device.user_id, device.id, approve=True)

    def revoke(self, device: Device) -> None:
        """Hold back a device that may have been trusted, with new room keys from the next message on."""
        self.decide_device(device.user_id, device.id, approve=False)

    async def refresh_devices(self, user_id: str) -> None:
        """Fetch a user's device keys now (a message came from a device the bot does not know yet)."""
        self.client.olm.users_for_key_query.add(user_id)
        await self.client.keys_query()

    def device_by_key(self, user_id: str, curve25519: str | None) -> Device | None:
        return next((d for d in self.devices_of(user_id) if d.curve25519 == curve25519), None)

    def is_trusted(self, device: Device) -> bool:
        return bool(self.client.olm.is_device_verified(device))

    def is_held_back(self, device: Device) -> bool:
        return bool(self.client.olm.is_device_blacklisted(device))

    def sending_device(self, room_id: str, event: Any) -> Device | None:
        """The device that sent a decrypted event, found by the Megolm session's keys (the event's
        own ``device_id`` field is optional and not to be relied on). None if unknown or forwarded."""
        return e2ee.sending_device(self.client, room_id, event)

    # ------------------------------------------------------------------ emoji verification

    def verification(self, transaction_id: str) -> Any | None:
        """The emoji verification (nio's Sas) with that transaction id, if the bot has it."""
        return self.client.key_verifications.get(transaction_id)

    def find_verification(self, user_id: str, device_id: str) -> Any | None:
        for sas in self.client.key_verifications.values():
            other = sas.other_olm_device
            if other.user_id == user_id and other.id == device_id and not sas.canceled:
                return sas
        return None

    async def accept_verification(self, transaction_id: str) -> None:
        await self.client.accept_key_verification(transaction_id)

    async def confirm_verification(self, transaction_id: str) -> None:
        await self.client.confirm_short_auth_string(transaction_id)
