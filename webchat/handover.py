"""A chat handed over across a gateway restart: its whole client state, sealed, held by the page.

A chat's Matrix account lives in the gateway's memory only (nothing about a chat is written to
disk). When the gateway stops (SIGTERM), each chat with a page attached is handed to that page as
one opaque string: the chat's in-memory key store (its SQLite database: the Olm account, the Olm
and Megolm sessions, the device lists and their trust), its login, its room, its sync position,
its frame count and the ids of the survivor's messages already delivered. The page keeps the
string in a variable only and sends it back with ``resume``; the restarted gateway opens it and
the chat goes on.

The string is sealed with an authenticated secret-key box (libsodium's XSalsa20-Poly1305, through
PyNaCl). Its key is derived with keyed BLAKE2b from a secret only the gateway holds across
restarts (its application-service token) and from the chat's id and resume secret: a state opens
only on a gateway of this hotline and only together with its own chat id and secret, and any
change to it fails authentication. Nothing here is stored anywhere.

The state itself (sealing, opening) is pure; then come the two store helpers (SQLite and
matrix-nio's in-memory store) and, at the end, handing a running chat (webchat/session.py) over
and taking one back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import sqlite3
import struct
import time
import zlib
from typing import Any

import nacl.exceptions
import nacl.secret
import nacl.utils
import aiohttp
from nio.store import SqliteMemoryStore
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotline_runtime.matrix_sync import SessionGone, client_config
from hotline_runtime.nio_client import HotlineClient
from hotline_runtime.wire import Control
from webchat.session import ChatSession, ChatUnavailable, SendFailed
from webchat.settings import GatewaySettings

log = logging.getLogger(__name__)

VERSION = 1
PREFIX = f"h{VERSION}."
# The sealed state travels back inside the page's ``resume`` frame, which can have at most 64 KiB
# (webchat/protocol.py MAX_FRAME_BYTES): the state may take 60,000 characters of it. A chat whose
# state would be larger is not handed over (it ends as before); a larger state is refused.
MAX_STATE_CHARS = 60_000
# What the state may open up to (a sealed state is at most MAX_STATE_CHARS; this bounds zlib).
MAX_PLAIN_BYTES = 4 * 1024 * 1024
MAX_DELIVERED = 10_000

_ROOT_PERSON = b"hotline-handover"  # BLAKE2b personalisation (16 bytes): this use only
_CHAT_PERSON = b"hotline-chat-key"


class BadState(Exception):
    """A state that cannot be used: too large, malformed, not sealed by this hotline, for another
    chat, or too old. The message names the reason, never content from the state."""


class Snapshot(BaseModel):
    """Everything a restarted gateway needs to carry on with one chat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chat: str = Field(min_length=1, max_length=128)
    secret: str = Field(min_length=1, max_length=128, repr=False)
    user_id: str = Field(min_length=3, max_length=255)
    device_id: str = Field(min_length=1, max_length=255)
    access_token: str = Field(min_length=1, max_length=1024, repr=False)
    room_id: str = Field(min_length=3, max_length=255)
    position: str = Field(min_length=1, max_length=1024)  # the sync's next_batch after the last handled response
    seq: int = Field(ge=0)  # the last frame number the page was sent
    delivered: tuple[str, ...] = Field(max_length=MAX_DELIVERED)  # ids of survivor messages delivered
    sealed_at: float  # Unix time, to refuse a state older than the bot's reconnect grace
    store: bytes = Field(min_length=1, repr=False)  # the key store's SQLite database (sqlite3 serialize)


def root_key(server_secret: str) -> bytes:
    """The handover key of this hotline, from a secret only its gateway holds across restarts."""
    if not server_secret:
        raise ValueError("the handover needs a secret")
    return hashlib.blake2b(server_secret.encode(), digest_size=32, person=_ROOT_PERSON).digest()


def _chat_key(root: bytes, chat: str, secret: str) -> bytes:
    material = json.dumps([chat, secret]).encode()  # unambiguous: no two pairs give the same bytes
    return hashlib.blake2b(material, key=root, digest_size=nacl.secret.SecretBox.KEY_SIZE,
                           person=_CHAT_PERSON).digest()


def seal(snapshot: Snapshot, root: bytes) -> str:
    """The page's opaque string for ``snapshot`` (raises BadState if over MAX_STATE_CHARS)."""
    # The fields as JSON, then the store's bytes as they are: 4 bytes of header length first.
    header = json.dumps(snapshot.model_dump(mode="json", exclude={"store"}), separators=(",", ":")).encode()
    plain = zlib.compress(struct.pack(">I", len(header)) + header + snapshot.store, 9)
    box = nacl.secret.SecretBox(_chat_key(root, snapshot.chat, snapshot.secret))
    sealed = PREFIX + base64.urlsafe_b64encode(bytes(box.encrypt(plain))).decode().rstrip("=")
    if len(sealed) > MAX_STATE_CHARS:
        raise BadState(f"the state has {len(sealed)} characters, more than {MAX_STATE_CHARS}")
    return sealed


def unseal(state: str, chat: str, secret: str, root: bytes, *, now: float, max_age: float) -> Snapshot:
    """Open a page's state for the chat it says it resumes. Raises BadState."""
    if len(state) > MAX_STATE_CHARS:
        raise BadState(f"a state has at most {MAX_STATE_CHARS} characters")
    if not state.startswith(PREFIX):
        raise BadState("not a state of this version")
    encoded = state[len(PREFIX):]
    try:
        sealed = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise BadState("not base64") from None
    try:
        compressed = nacl.secret.SecretBox(_chat_key(root, chat, secret)).decrypt(sealed)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise BadState("not sealed by this hotline for this chat") from None
    try:
        inflate = zlib.decompressobj()
        plain = inflate.decompress(compressed, MAX_PLAIN_BYTES)
        if inflate.unconsumed_tail or not inflate.eof:
            raise BadState("the state opens to too much")
        (length,) = struct.unpack_from(">I", plain)
        if length > len(plain) - 4:
            raise BadState("malformed")
        body: Any = json.loads(plain[4:4 + length])
        if not isinstance(body, dict):
            raise BadState("malformed")
        snapshot = Snapshot.model_validate({**body, "store": plain[4 + length:]})
    except (zlib.error, ValueError, struct.error, ValidationError):
        raise BadState("malformed") from None
    if snapshot.chat != chat or snapshot.secret != secret:  # cannot happen with the chat's own key
        raise BadState("for another chat")
    if not 0 <= now - snapshot.sealed_at <= max_age:
        raise BadState("too old")
    return snapshot


# ---------------------------------------------------------------------- the key store


def store_image(connection: sqlite3.Connection) -> bytes:
    """The in-memory key store as bytes (compacted first: freed pages are zeroed and dropped)."""
    connection.execute("VACUUM")
    return connection.serialize()


def restoring_store(image: bytes) -> type[SqliteMemoryStore]:
    """A matrix-nio store class for one restored chat: nio's in-memory SQLite store, filled with
    ``image`` before nio's Olm machine loads the account from it.

    nio builds its store as ``store(user_id, device_id, store_path, pickle_key, store_name)`` for
    any class other than SqliteMemoryStore itself; the path and name are not used (the database
    stays in memory)."""

    class RestoredMemoryStore(SqliteMemoryStore):
        def __init__(self, user_id: str, device_id: str, _path: str = "", pickle_key: str = "",
                     _name: str = "") -> None:
            super().__init__(user_id, device_id, pickle_key)

        def __post_init__(self) -> None:
            super().__post_init__()  # an empty in-memory database with nio's tables
            self.database.connection().deserialize(image)
            self.database.execute_sql("PRAGMA secure_delete = 1")

    return RestoredMemoryStore


# ---------------------------------------------------------------------- across a gateway restart


async def hand_over(session: ChatSession, root: bytes, timeout: float = 10.0) -> bool:
    """The gateway is stopping: hand ``session`` to its page.

    Stops the sync between two responses, tells the bot the page is disconnected (its reconnect
    grace runs: a page that never comes back is closed and erased as before), seals the chat's
    whole client state and sends it to the attached page in a ``restarting`` frame, then lets the
    client go without logging out or leaving the room. Nothing more is sent from this process
    afterwards: the send lock stays held, so the sealed keys are the last word. False (and the
    chat untouched apart from its sync) when there is no page to hand it to or it cannot be
    handed over; such a chat then ends as before.
    """
    client = session.client
    if client is None or session.room_id is None or session.ended.is_set() or session.page.attached is None:
        return False
    try:
        async with asyncio.timeout(timeout):
            position = await session.stop_sync()
            if position is None or session.page.attached is None:
                return False
            await session.signal(Control.DISCONNECTED)
            await session.send_lock.acquire()
    except (TimeoutError, SendFailed) as why:
        log.warning("a chat could not be handed over (%s)", type(why).__name__)
        return False
    try:
        state = seal(Snapshot(
            chat=session.chat_id, secret=session.secret, user_id=client.user_id, device_id=client.device_id,
            access_token=client.access_token, room_id=session.room_id, position=position,
            seq=session.page.seq, delivered=tuple(sorted(session.delivered)), sealed_at=time.time(),
            store=store_image(client.store.database.connection()),
        ), root)
    except Exception as why:  # e.g. over the size limit: the chat ends as before
        log.warning("a chat could not be handed over (%s)", why if isinstance(why, BadState) else type(why).__name__)
        session.send_lock.release()
        return False
    sink = session.page.attached
    session.handed_over = True
    session.let_go()  # nothing to leave or log out: the chat goes on elsewhere
    try:
        if sink is not None:
            await sink({"type": "restarting", "state": state})
    except Exception:
        pass  # the page is gone with the state: the bot's grace closes the chat
    finally:
        session.ended.set()  # for this process only: the page resumes it on the next gateway
        session.page.clear()
        session.delivered.clear()
        await client.close()
    return True


async def restore(settings: GatewaySettings, http: aiohttp.ClientSession, snapshot: Snapshot) -> ChatSession:
    """A chat handed over by the gateway before a restart, on this gateway now. Raises
    SessionGone if its account is gone (the chat is over), ChatUnavailable if it cannot continue
    (the homeserver cannot be reached, or no answer from the bot in time)."""
    session = ChatSession(settings, http)
    session.chat_id, session.secret, session.room_id = snapshot.chat, snapshot.secret, snapshot.room_id
    session.delivered = set(snapshot.delivered)
    session.page.continue_from(snapshot.seq)
    # Any path will do: nio builds every store class but its own SqliteMemoryStore only when
    # given one. The restored store keeps its database in memory.
    client = HotlineClient(settings.homeserver, snapshot.user_id, device_id=snapshot.device_id,
                           store_path="memory", config=client_config(store=restoring_store(snapshot.store)))
    session.client = client
    try:
        client.restore_login(snapshot.user_id, snapshot.device_id, snapshot.access_token)
        if client.olm is None or not client.olm.account.shared:  # a new account: not the chat's keys
            raise ChatUnavailable("the restored keys could not be loaded")
        whoami = await client.whoami()
        if getattr(whoami, "status_code", None) in ("M_UNKNOWN_TOKEN", "M_USER_DEACTIVATED", "M_FORBIDDEN"):
            raise SessionGone(whoami.status_code)
        if getattr(whoami, "user_id", None) != snapshot.user_id:
            raise ChatUnavailable("the homeserver did not confirm the account")
        session.start_sync(snapshot.position)
        await _room_back(session, settings.bot_join_timeout_seconds)
    except BaseException:
        session.let_go()  # never leave the room: the bot closes the chat
        await session.cancel_sync()
        session.ended.set()
        await client.close()
        raise
    return session


async def _room_back(session: ChatSession, timeout: float) -> None:
    """Wait for the room's state, which comes with the first sync (in full, from the saved
    position): the bot in the room, or the chat ended meanwhile."""
    joined = asyncio.ensure_future(session.bot_joined.wait())
    ended = asyncio.ensure_future(session.ended.wait())
    try:
        await asyncio.wait({joined, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        joined.cancel()
        ended.cancel()
    if not session.bot_joined.is_set() and not session.ended.is_set():
        raise ChatUnavailable("the chat's room did not come back in time")
