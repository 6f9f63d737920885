"""A new chat's account and room, made by the gateway (webchat/session.py opens the chat with them).

The survivor account is registered in the application service's namespace, with no password; the
survivor room is encrypted and invite-only, with the bot invited and in charge. While the room is
made, the account's device keys go up and the bot's devices are made ready for the first send.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import aiohttp
from nio import AsyncClient, RoomVisibility
from nio.store import SqliteMemoryStore

from hotline_runtime.client_api import ClientApi, ClientApiError
from hotline_runtime.e2ee import claim_sessions
from hotline_runtime.matrix_sync import client_config, keep_keys, mute_push
from hotline_runtime.nio_client import HotlineClient
from webchat.bot_identity import PinnedBot
from webchat.settings import GatewaySettings

log = logging.getLogger(__name__)


class ChatUnavailable(Exception):
    """The chat could not be set up (homeserver down, bot not answering, refused)."""


async def register(settings: GatewaySettings, http: aiohttp.ClientSession) -> tuple[str, str, str]:
    """A new survivor account in the application service's namespace: no password."""
    localpart = settings.survivor_prefix + secrets.token_hex(12)
    api = ClientApi(http, settings.homeserver, settings.as_token.get_secret_value(), timeout=30)
    body = {"type": "m.login.application_service", "username": localpart}
    try:
        _, data = await api.call("POST", "/_matrix/client/v3/register", body)
    except ClientApiError as error:
        raise ChatUnavailable(f"registration refused ({error.errcode or error.status})" if error.answered
                              else f"the homeserver did not answer ({error.cause})") from None
    return data["user_id"], data["device_id"], data["access_token"]


async def open_account(settings: GatewaySettings, http: aiohttp.ClientSession) -> AsyncClient:
    """A new survivor account logged in on one device (its keys in memory only), notifications off."""
    user_id, device_id, token = await register(settings, http)
    client = HotlineClient(settings.homeserver, user_id, device_id=device_id,
                           config=client_config(store=SqliteMemoryStore))
    client.restore_login(user_id, device_id, token)
    try:
        # Notifications off first, before anyone is invited who could write to this account.
        await mute_push(client)
    except BaseException:
        await client.close()
        raise
    return client


async def prepare_keys(client: AsyncClient, bot: PinnedBot, http: aiohttp.ClientSession, homeserver: str) -> None:
    """This device's keys up (raises if they cannot be); then, ahead of the first send, the bot's
    devices fetched and decided by its pinned identity, and an Olm session claimed with each one
    trusted. Only the upload must succeed: whatever else is missing, the first send does again."""
    await keep_keys(client)
    olm = client.olm
    assert olm is not None
    try:
        olm.users_for_key_query.add(bot.user_id)
        await client.keys_query()
        await bot.decide(client, http, homeserver, [bot.user_id])
        await claim_sessions(client, bot.user_id, olm.is_device_verified)
    except Exception as error:  # the first send fetches, decides and claims again
        log.info("the bot's keys were not ready ahead of the first send (%s)", type(error).__name__)


async def create_room(client: AsyncClient, bot: str) -> Any:
    """The survivor room: encrypted, invite-only, the bot invited and in charge."""
    return await client.room_create(
        visibility=RoomVisibility.private,
        invite=[bot],
        initial_state=[
            {"type": "m.room.encryption", "state_key": "",
             "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": "m.room.history_visibility", "state_key": "",
             "content": {"history_visibility": "shared"}},
            {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
        ],
        power_level_override={
            "users": {bot: 100},
            "invite": 100,
            "kick": 100,
            "ban": 100,
            "redact": 50,
            "state_default": 100,
        },
    )
