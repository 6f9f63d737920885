"""The bot's sign-in: its saved device reused (keys and device survive restarts), its own
cross-signing identity published, and this device signed by it (today's Element trusts only
devices their owner cross-signed)."""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot import identity
from bot.matrix import BotMatrix
from bot.settings import BotSettings
from bot.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedIn:
    device_id: str
    token: str
    identity_restored: bool  # the bot's identity was published again: the admins are told


async def sign_in(settings: BotSettings, store: Store, matrix: BotMatrix, http: aiohttp.ClientSession) -> SignedIn:
    saved = await _saved_login(store)
    device_id, token = await matrix.login(settings.bot_password.get_secret_value(), saved)
    if saved is None:
        await store.set_meta("device_id", device_id)
        await store.set_meta("access_token", token)
        retired = retire_old_stores(settings.data_dir / "crypto", settings.bot_user_id, device_id)
        if retired:
            log.info("a new device: %d files of the bot's earlier devices' crypto stores overwritten and deleted",
                     retired)
    await matrix.mute_push()
    restored = await _cross_sign(settings, matrix, http, device_id, token)
    return SignedIn(device_id, token, restored)


async def _cross_sign(settings: BotSettings, matrix: BotMatrix, http: aiohttp.ClientSession, device_id: str,
                      token: str) -> bool:
    """The bot's identity on the homeserver, and this device signed by it."""
    hs, password = settings.homeserver, settings.bot_password.get_secret_value()
    own = await identity.load_or_create(http, hs, token, settings.data_dir, settings.bot_user_id)
    await matrix.upload_keys_if_needed()
    restored = await identity.publish(http, hs, token, password, own)
    await identity.sign_device(http, hs, token, own, device_id)
    log.info("the bot's device is cross-signed")
    return bool(restored)


def retire_old_stores(crypto_dir: Path, user_id: str, device_id: str) -> int:
    """The crypto-store files of the bot's earlier devices, once a new login has replaced them:
    overwritten with zeros, then deleted. They hold the keys and device lists of chats the new
    device never reads (chats open across the new login included; their erase forgets them from
    the new device's store only). Returns how many files went."""
    keep = f"{user_id}_{device_id}."
    retired = 0
    for path in crypto_dir.glob(f"{glob.escape(user_id)}_*"):
        if path.name.startswith(keep) or not path.is_file():
            continue
        size = path.stat().st_size
        with path.open("r+b") as file:
            file.write(bytes(size))
            file.flush()
            os.fsync(file.fileno())
        path.unlink()
        retired += 1
    return retired


async def _saved_login(store: Store) -> tuple[str, str] | None:
    device_id = await store.get_meta("device_id")
    token = await store.get_meta("access_token")
    return (device_id, token) if device_id and token else None
