"""The bot as the gateway knows it: its Matrix ID and its pinned cross-signing master key.

The gateway shares survivor room keys with, and accepts messages from, only the bot devices whose
self-signing signature chains to the master key written into its settings at setup
(``HOTLINE_BOT_MASTER_KEY``). A device added to the bot account any other way (a reset password,
an admin's login as the bot, a stolen token) gets nothing, and is logged by type only.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from nio import AsyncClient
from nio.crypto import OlmDevice

from hotline_runtime.cross_signing import CrossSigningError, KeysApi, signed_devices
from hotline_runtime.e2ee import approve_device, other_devices
from hotline_runtime.retry import Backoff

log = logging.getLogger(__name__)


RECHECK_SECONDS = 2.0  # how often an unsigned device of the bot is looked at again
# The bot signs a new session a moment after it appears: looked at again three times, once per recheck.
SIGNED_RETRY = Backoff(RECHECK_SECONDS, cap=RECHECK_SECONDS, factor=1.0, tries=3)


class PinnedBot:
    def __init__(self, user_id: str, master_key: str) -> None:
        self.user_id = user_id
        self.master_key = master_key
        self._signed: dict[str, str] = {}  # device id → Ed25519 key, as last fetched
        self._fetched_at = -RECHECK_SECONDS

    async def trusts(self, http: aiohttp.ClientSession, homeserver: str, token: str, device: OlmDevice) -> bool:
        """Whether this device of the bot account is signed by the pinned identity. A device that
        is not is looked at again at most every RECHECK_SECONDS (it may be signed a moment later)."""
        if device.user_id != self.user_id:
            return False
        now = time.monotonic()
        if self._signed.get(device.id) != device.ed25519 and now - self._fetched_at >= RECHECK_SECONDS:
            try:
                query = await KeysApi(http, homeserver, token).query([self.user_id])
            except CrossSigningError as error:
                log.warning("the bot's cross-signing keys could not be fetched (%s)", error)
                return False
            self._signed, self._fetched_at = signed_devices(query, self.user_id, self.master_key), now
        return self._signed.get(device.id) == device.ed25519

    async def decide(self, client: AsyncClient, http: aiohttp.ClientSession, homeserver: str,
                     users: list[str]) -> int:
        """Verify the bot's signed devices and hold back every other device of ``users`` (the
        client's own aside); a held-back device of the bot is looked at again, since the bot signs
        a new session only after it appears. Returns how many devices of the bot are trusted."""
        olm = client.olm
        assert olm is not None
        trusted = 0
        for user_id in users:
            for device in other_devices(client, user_id):
                if olm.is_device_verified(device):
                    trusted += user_id == self.user_id
                elif user_id != self.user_id:
                    if not olm.is_device_blacklisted(device):
                        client.blacklist_device(device)
                elif await self.trusts(http, homeserver, client.access_token, device):
                    if olm.is_device_blacklisted(device):
                        approve_device(client, device)  # with a new room key, shared with it too
                    else:
                        client.verify_device(device)
                    trusted += 1
                elif not olm.is_device_blacklisted(device):
                    client.blacklist_device(device)
                    log.warning("a device of the bot account is not signed by the bot's pinned identity; "
                                "it gets no keys and its messages are ignored")
        return trusted

    async def decide_until_trusted(self, client: AsyncClient, http: aiohttp.ClientSession, homeserver: str,
                                   users: list[str]) -> int:
        """``decide``, waiting a little for a device of the bot to be signed if none is yet."""
        for delay in (*SIGNED_RETRY.delays(), None):
            trusted = await self.decide(client, http, homeserver, users)
            if trusted or delay is None:
                return trusted
            await asyncio.sleep(delay)
        return 0
