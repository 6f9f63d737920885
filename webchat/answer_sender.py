"""Pooled answers (webchat/answers.py) to the service room as ``ANSWERS_EVENT``, encrypted.

For each batch the gateway's sender user logs in a fresh device whose keys live in memory only,
shares the room key with the bot's devices only (those signed by its pinned identity), sends,
and logs the device out again. If anything fails, nothing is sent (never in clear) and the batch
waits for the next try.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import MatrixRoom
from nio.store import SqliteMemoryStore

from hotline_runtime.client_api import ClientApi, ClientApiError
from hotline_runtime.e2ee import send_encrypted
from hotline_runtime.errors import EncryptionUnavailable
from hotline_runtime.matrix_sync import client_config, keep_keys
from hotline_runtime.nio_client import HotlineClient
from hotline_runtime.wire import ANSWERS_EVENT
from webchat.answers import AnswerPool, batch_content
from webchat.bot_identity import PinnedBot
from webchat.settings import GatewaySettings

log = logging.getLogger(__name__)

APP_SERVICE_LOGIN = "m.login.application_service"


class AnswerSender:
    def __init__(self, settings: GatewaySettings, http: aiohttp.ClientSession, pool: AnswerPool) -> None:
        self.settings = settings
        self.pool = pool
        self._http = http
        self._api = ClientApi(http, settings.homeserver, settings.as_token.get_secret_value(), timeout=10)
        self._send_lock = asyncio.Lock()

    async def send_due(self, today: date) -> None:
        """Send the batches that are due; what cannot be sent goes back to the pool."""
        if not self.settings.service_room:
            return
        async with self._send_lock:
            due = self.pool.take_due(today)
            for number, (day, counts) in enumerate(due):
                try:
                    await self._send_encrypted(batch_content(day, counts))
                except Exception as error:
                    log.warning("pooled answers not sent yet (%s); trying again later", error)
                    for later_day, later in due[number:]:
                        self.pool.put_back(later_day, later)
                    return
                log.info("pooled answers sent (%d submissions)", counts.submissions)

    async def _login(self) -> tuple[str, str, str]:
        """A fresh device of the gateway's sender user (registered on first use)."""
        _, who = await self._api.call("GET", "/_matrix/client/v3/account/whoami")
        user_id = who["user_id"]
        # A device needs an account row; the application service's own user has none until it
        # is registered (no password: only the application service token can log it in).
        register = {"type": APP_SERVICE_LOGIN, "username": user_id[1:].split(":", 1)[0], "inhibit_login": True}
        status, data = await self._api.request("POST", "/_matrix/client/v3/register", register)
        if status != 200 and data.get("errcode") != "M_USER_IN_USE":
            raise ClientApiError("POST", "/_matrix/client/v3/register", status, str(data.get("errcode") or ""))
        body = {"type": APP_SERVICE_LOGIN, "identifier": {"type": "m.id.user", "user": user_id}}
        _, data = await self._api.call("POST", "/_matrix/client/v3/login", body)
        return data["user_id"], data["device_id"], data["access_token"]

    async def _room_is_encrypted(self, token: str) -> bool:
        room = quote(self.settings.service_room, safe="")
        status, data = await self._api.call("GET", f"/_matrix/client/v3/rooms/{room}/state/m.room.encryption/",
                                            token=token, ok=(404,))
        return status != 404 and data.get("algorithm") == "m.megolm.v1.aes-sha2"

    async def _send_encrypted(self, content: dict[str, Any]) -> None:
        # An application service's own user may not /sync (Synapse refuses it), so the room is
        # set up from its state and members directly instead.
        user_id, device_id, token = await self._login()
        client = HotlineClient(self.settings.homeserver, user_id, device_id=device_id,
                               config=client_config(store=SqliteMemoryStore))
        client.restore_login(user_id, device_id, token)
        room_id = self.settings.service_room
        bot = PinnedBot(self.settings.bot_user_id, self.settings.bot_master_key)

        async def only_the_bot(users: list[str]) -> None:
            if not await bot.decide_until_trusted(client, self._http, self.settings.homeserver, users):
                raise EncryptionUnavailable("no device of the bot to share the answers with")

        try:
            await keep_keys(client)
            if not await self._room_is_encrypted(token):
                raise EncryptionUnavailable("the service room is not encrypted; answers are never sent in clear")
            client.rooms[room_id] = MatrixRoom(room_id, user_id, encrypted=True)
            await send_encrypted(client, room_id, content, event_type=ANSWERS_EVENT, trust=only_the_bot,
                                 must_read=lambda user: user == self.settings.bot_user_id)
        finally:
            try:
                await asyncio.wait_for(client.logout(), 10)  # the device and its keys go away
            except Exception:
                pass
            await client.close()
