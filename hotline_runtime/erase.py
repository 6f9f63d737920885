"""The Matrix side of erasing a chat (docs/privacy.md): redact a room's messages, forget its keys.

Used by the bot when a chat is erased and by ``hotline admin sweep`` for what a stopped bot left
behind: one recipe, so that both erase the same things.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from typing import Any

from nio import AsyncClient, RoomMessagesError, RoomRedactError

from hotline_runtime.errors import MatrixError

REDACT_CONCURRENCY = 16  # redactions in flight at once while erasing
HISTORY_PAGE = 100


async def history(client: AsyncClient, room_id: str, page: int = HISTORY_PAGE) -> AsyncIterator[Any]:
    """The room's events, newest first (decrypted where the client has the keys)."""
    token: str | None = None
    while True:
        response = await client.room_messages(room_id, start=token, limit=page)
        if isinstance(response, RoomMessagesError):
            raise MatrixError("room messages", response.status_code)
        for event in response.chunk:
            yield event
        if not response.chunk or not response.end or response.end == token:
            return
        token = response.end


def needs_redaction(source: dict[str, Any]) -> bool:
    """A message event whose content is still there: not state, not a redaction, not redacted."""
    if "state_key" in source or source.get("type") == "m.room.redaction":
        return False
    return "redacted_because" not in source.get("unsigned", {}) and bool(source.get("content"))


async def redact(client: AsyncClient, room_id: str, event_id: str) -> None:
    response = await client.room_redact(room_id, event_id)
    if isinstance(response, RoomRedactError):
        raise MatrixError("redact", response.status_code)


async def redact_all(client: AsyncClient, room_id: str) -> int:
    """Redact every message event in the room (clients then drop the content); returns how many.
    The client needs only an access token (no encryption): redacting does not read the content."""
    targets = [event.event_id async for event in history(client, room_id)
               if needs_redaction(getattr(event, "source", {}) or {})]
    limit = asyncio.Semaphore(REDACT_CONCURRENCY)

    async def one(event_id: str) -> None:
        async with limit:
            await redact(client, room_id, event_id)

    await asyncio.gather(*(one(event_id) for event_id in targets))
    return len(targets)


def forget_room_keys(client: AsyncClient, room_ids: list[str]) -> int:
    """Crypto-shredding: drop the rooms' Megolm sessions from the client's memory and from its
    crypto store. Returns how many stored sessions were deleted."""
    olm = client.olm
    assert olm is not None and client.store is not None
    for room_id in room_ids:
        olm.outbound_group_sessions.pop(room_id, None)
        olm.inbound_group_store._entries.pop(room_id, None)
        client.encrypted_rooms.discard(room_id)
        client.rooms.pop(room_id, None)
    return shred_room_sessions(client.store.database.connection(), room_ids)


def shred_room_sessions(db: sqlite3.Connection, room_ids: Iterable[str]) -> int:
    """Delete the rooms' Megolm sessions (and what hangs off them) and their encrypted-room marks
    from a matrix-nio crypto store, overwriting the deleted rows on disk. Returns how many
    sessions were deleted. Works on the live client's connection and on a store file alike."""
    rooms = list(room_ids)
    if not rooms:
        return 0
    db.execute("PRAGMA foreign_keys = ON")  # the forwarding chains of the sessions go with them
    db.execute("PRAGMA secure_delete = ON")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    marks = ",".join("?" for _ in rooms)
    removed = 0
    if "megolminboundsessions" in tables:
        removed = db.execute(f"DELETE FROM megolminboundsessions WHERE room_id IN ({marks})", rooms).rowcount
    if "encryptedrooms" in tables:
        db.execute(f"DELETE FROM encryptedrooms WHERE room_id IN ({marks})", rooms)
    if db.in_transaction:
        db.commit()
    return removed
