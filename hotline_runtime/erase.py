"""The Matrix side of erasing a chat (docs/privacy.md): redact a room's messages, forget its keys.

Used by the bot when a chat is erased and by ``hotline admin sweep`` for what a stopped bot left
behind: one recipe, so that both erase the same things.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from typing import Any
from urllib.parse import quote, urlencode
from uuid import uuid4

from nio import AsyncClient, RoomMessagesError, RoomRedactError

from hotline_runtime.client_api import ClientApi
from hotline_runtime.errors import MatrixError

# Redactions in flight at once while erasing. Synapse persists a room's events in batches, so more
# at once costs it less CPU per redaction, up to about 64 (docs/performance.md, "Time to erase",
# fifth pass: 1,000 redactions on SQLite cost it 10.7–12.7 s of CPU 16 at a time, 8.6–10.8 s 64 at
# a time).
REDACT_CONCURRENCY = 64
HISTORY_PAGE = 100
# What the erase asks /messages for: membership changes and earlier redactions never need redacting,
# so the homeserver leaves them out. No lazy-loaded members either: the erase reads no state.
REDACTABLE_FILTER: dict[str, Any] = {"not_types": ["m.room.member", "m.room.redaction"]}


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


def messages_path(room_id: str, token: str | None, page: int = HISTORY_PAGE) -> str:
    """The /messages request for one page of the erase's listing, newest first."""
    query: dict[str, Any] = {"dir": "b", "limit": page, "filter": json.dumps(REDACTABLE_FILTER, separators=(",", ":"))}
    if token is not None:
        query["from"] = token
    return f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages?{urlencode(query)}"


async def redactable(api: ClientApi, room_id: str, page: int = HISTORY_PAGE) -> AsyncIterator[str]:
    """The ids of the room's events that still need redacting, newest first, a page at a time.
    The events are read as the homeserver sends them: nothing is decrypted."""
    token: str | None = None
    while True:
        data = await api.get(messages_path(room_id, token, page))
        chunk = data.get("chunk") or []
        for event in chunk:
            if isinstance(event, dict) and needs_redaction(event) and isinstance(event.get("event_id"), str):
                yield event["event_id"]
        end = data.get("end")
        if not chunk or not isinstance(end, str) or end == token:
            return
        token = end


async def redact_event(api: ClientApi, room_id: str, event_id: str) -> None:
    """Redact one event through the client API (no reason given: it would be stored in clear)."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/redact/{quote(event_id, safe='')}/erase-{uuid4().hex}"
    await api.call("PUT", path, {})


async def redact_all(api: ClientApi, room_id: str, *, concurrency: int = REDACT_CONCURRENCY) -> int:
    """Redact every message event in the room (clients then drop the content); returns how many.
    Only an access token is needed: redacting does not read the content. The redactions start
    with the first page of the listing, ``concurrency`` at a time, while the next pages are read;
    the first failure stops the others and is raised (a retry lists only what is left)."""
    running: set[asyncio.Task[None]] = set()
    count = 0
    try:
        async with aclosing(redactable(api, room_id)) as listing:
            async for event_id in listing:
                if len(running) >= concurrency:
                    done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                running.add(asyncio.create_task(redact_event(api, room_id, event_id)))
                count += 1
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return count


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
