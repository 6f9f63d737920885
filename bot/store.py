"""The bot's routing database (SQLite through aiosqlite): open chats and the bot's own login.

Routing state only: room IDs, phase, coarse times, the assigned advocate. Never content. A chat's
row is deleted when the chat is erased. ``secure_delete`` overwrites deleted rows on disk.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import aiosqlite

from bot.conversation import Chat, Phase
from bot.ids import ChatRef, RoomId, UserId

SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    ref TEXT PRIMARY KEY,
    survivor_room TEXT NOT NULL UNIQUE,
    survivor TEXT NOT NULL,
    opened_at REAL NOT NULL,
    phase TEXT NOT NULL,
    advocate TEXT,
    case_room TEXT UNIQUE,
    disconnected_at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS enrolled_staff (user_id TEXT PRIMARY KEY);
"""

COLUMNS = (
    "ref",
    "survivor_room",
    "survivor",
    "opened_at",
    "phase",
    "advocate",
    "case_room",
    "disconnected_at",
)


def coarse(timestamp: float, *, up: bool = False) -> float:
    """Times are kept to the minute: enough for timers, less to learn from.

    ``up`` rounds to the next minute, so that a timer started then never runs short.
    """
    minutes = -(-timestamp // 60) if up else timestamp // 60
    return float(minutes * 60)


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)
        os.chmod(path, 0o600)
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA secure_delete = ON")
        await db.execute("PRAGMA journal_mode = DELETE")
        await db.executescript(SCHEMA)
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def load_chats(self) -> dict[ChatRef, Chat]:
        chats: dict[ChatRef, Chat] = {}
        async with self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM chats") as cursor:
            async for row in cursor:
                values = dict(zip(COLUMNS, row, strict=True))
                chat = Chat(
                    ref=ChatRef(values["ref"]),
                    survivor_room=RoomId(values["survivor_room"]),
                    survivor=UserId(values["survivor"]),
                    opened_at=values["opened_at"],
                    phase=Phase(values["phase"]),
                    advocate=values["advocate"] and UserId(values["advocate"]),
                    case_room=values["case_room"] and RoomId(values["case_room"]),
                    disconnected_at=values["disconnected_at"],
                )
                chats[chat.ref] = chat
        return chats

    async def save_changes(self, before: dict[ChatRef, Chat], after: dict[ChatRef, Chat]) -> None:
        """Write the difference between two states in one transaction."""
        removed = [ref for ref in before if ref not in after]
        changed = [chat for ref, chat in after.items() if before.get(ref) != chat]
        if not removed and not changed:
            return
        for ref in removed:
            await self._db.execute("DELETE FROM chats WHERE ref = ?", (ref,))
        placeholders = ", ".join("?" for _ in COLUMNS)
        for chat in changed:
            row = asdict(chat)
            row["opened_at"] = coarse(row["opened_at"])
            if row["disconnected_at"] is not None:
                row["disconnected_at"] = coarse(row["disconnected_at"], up=True)
            await self._db.execute(
                f"INSERT OR REPLACE INTO chats ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                tuple(str(row[c]) if c == "phase" else row[c] for c in COLUMNS),
            )
        await self._db.commit()

    async def get_meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
        )
        await self._db.commit()

    async def is_enrolled(self, user_id: str) -> bool:
        async with self._db.execute(
            "SELECT 1 FROM enrolled_staff WHERE user_id = ?", (user_id,)
        ) as cursor:
            return await cursor.fetchone() is not None

    async def enroll(self, user_id: str) -> None:
        await self._db.execute("INSERT OR IGNORE INTO enrolled_staff (user_id) VALUES (?)", (user_id,))
        await self._db.commit()
