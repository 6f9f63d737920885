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

Pure apart from the two store helpers at the end (SQLite and matrix-nio's in-memory store).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sqlite3
import struct
import zlib
from typing import Any

import nacl.exceptions
import nacl.secret
import nacl.utils
from nio.store import SqliteMemoryStore
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
