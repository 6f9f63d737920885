"""The bot's cross-signing identity: kept in its data directory, published on the homeserver.

Created once (by ``hotline admin setup``, the demo, or the bot's first start), never replaced
silently: every start checks that the homeserver still holds this identity and signs the bot's
current device with it. Only ``hotline admin bot-identity --replace`` makes a new one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import aiohttp

from hotline_runtime.cross_signing import CrossSigningError, Identity, KeysApi, master_key

log = logging.getLogger(__name__)

IDENTITY_FILE = "cross-signing.json"


def identity_path(data_dir: Path) -> Path:
    return data_dir / IDENTITY_FILE


def create(data_dir: Path, user_id: str) -> Identity:
    """The saved identity, or a new one saved (0600) in the data directory."""
    path = identity_path(data_dir)
    identity = Identity.load(path, user_id)
    if identity is None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        identity = Identity.generate(user_id)
        identity.save(path)
        log.info("created the bot's cross-signing identity")
    return identity


async def publish(http: aiohttp.ClientSession, homeserver: str, token: str, password: str | None,
                  identity: Identity) -> bool:
    """Make sure the homeserver holds ``identity`` for the bot. Returns True if it had another one,
    which is then put back (someone replaced it without the bot's keys: staff clients will show a
    change; the gateway trusts only the pinned identity either way)."""
    api = KeysApi(http, homeserver, token)
    query = await api.query([identity.user_id])
    if identity.matches(query):
        return False
    replaced = master_key(query, identity.user_id) is not None
    if replaced:
        log.error("the homeserver holds another cross-signing identity for the bot; putting the bot's own back")
    await api.upload_identity(identity, password)
    return replaced


async def sign_device(http: aiohttp.ClientSession, homeserver: str, token: str, identity: Identity,
                      device_id: str) -> None:
    if not await KeysApi(http, homeserver, token).sign_device(identity, device_id):
        raise CrossSigningError("the bot's device has no keys on the homeserver to sign")


def replace(data_dir: Path, user_id: str) -> Identity:
    """A new identity in place of the saved one (the old file is kept beside it, 0600)."""
    path = identity_path(data_dir)
    if path.exists():
        os.replace(path, path.with_name(path.name + ".replaced"))
    identity = Identity.generate(user_id)
    identity.save(path)
    return identity


async def load_or_create(http: aiohttp.ClientSession, homeserver: str, token: str, data_dir: Path,
                         user_id: str) -> Identity:
    """The bot's identity from its data directory; a new one only if the homeserver has none either.

    If the homeserver holds an identity for the bot but the data directory has no keys, the keys
    were lost (or someone else made that identity): the bot stops instead of replacing it, since
    the gateway and staff clients trust the identity they know."""
    saved = Identity.load(identity_path(data_dir), user_id)
    if saved is not None:
        return saved
    query = await KeysApi(http, homeserver, token).query([user_id])
    if master_key(query, user_id) is not None:
        raise CrossSigningError(
            f"the homeserver holds a cross-signing identity for {user_id}, but {identity_path(data_dir)} is "
            "missing: restore it from the backup (docs/backup.md), or make a new identity with "
            "`hotline admin bot-identity --replace` (see docs/admin-guide.md)")
    return create(data_dir, user_id)
