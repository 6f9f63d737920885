"""The bot's routing database (SQLite through aiosqlite): open chats and the bot's own login.

Routing state only: room IDs, phase, coarse times, the assigned advocate. Never content. A chat's
row is deleted when the chat is erased. ``secure_delete`` overwrites deleted rows on disk.
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path

import aiosqlite

from bot.conversation import Chat, Phase
from bot.ids import ChatRef

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

TIMES = {"opened_at", "claimed_at", "alerted_at", "reassured_at", "survivor_at", "advocate_at"}
COLUMNS = tuple(f.name for f in fields(Chat))
CODEWORD_SCHEMA = """
CREATE TABLE IF NOT EXISTS codewords (
    case_ref TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    set_on TEXT NOT NULL,
    rotated_on TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL
);
"""
STATS_SCHEMA = """
CREATE TABLE IF NOT EXISTS stats_daily (
    day TEXT NOT NULL,
    metric TEXT NOT NULL,
    bucket TEXT NOT NULL DEFAULT '',
    count INTEGER NOT NULL,
    PRIMARY KEY (day, metric, bucket)
);
"""


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
        await db.executescript(SCHEMA + STATS_SCHEMA + CODEWORD_SCHEMA)
        await _add_missing_columns(db)
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def load_chats(self) -> dict[ChatRef, Chat]:
        chats: dict[ChatRef, Chat] = {}
        async with self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM chats") as cursor:
            async for row in cursor:
                values = {k: v for k, v in zip(COLUMNS, row, strict=True) if v is not None}
                values["phase"] = Phase(values["phase"])
                for flag in ("rights_delivered", "escalated", "warned", "reminded"):
                    if flag in values:
                        values[flag] = bool(values[flag])
                chat = Chat(**values)
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
            for name in TIMES:
                if row[name] is not None:
                    row[name] = coarse(row[name])
            if row["disconnected_at"] is not None:
                row["disconnected_at"] = coarse(row["disconnected_at"], up=True)
            row["phase"] = str(row["phase"])
            row["handoff_note"] = None  # staff-written text stays in memory only
            await self._db.execute(
                f"INSERT OR REPLACE INTO chats ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                tuple(row[c] for c in COLUMNS),
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

    async def delete_meta(self, key: str) -> None:
        await self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        await self._db.commit()

    async def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        async with self._db.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                                    (len(prefix), prefix)) as cursor:
            return {key: value for key, value in await cursor.fetchall()}

    async def is_enrolled(self, user_id: str) -> bool:
        async with self._db.execute(
            "SELECT 1 FROM enrolled_staff WHERE user_id = ?", (user_id,)
        ) as cursor:
            return await cursor.fetchone() is not None

    async def enroll(self, user_id: str) -> None:
        await self._db.execute("INSERT OR IGNORE INTO enrolled_staff (user_id) VALUES (?)", (user_id,))
        await self._db.commit()

    async def count(self, day: str, metric: str, bucket: str = "", n: int = 1) -> None:
        await self._db.execute(
            "INSERT INTO stats_daily (day, metric, bucket, count) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (day, metric, bucket) DO UPDATE SET count = count + excluded.count",
            (day, metric, bucket, n),
        )
        await self._db.commit()

    async def codeword_cases(self) -> set[str]:
        async with self._db.execute("SELECT case_ref FROM codewords") as cursor:
            return {row[0] async for row in cursor}

    async def codeword_get(self, case: str) -> dict[str, object] | None:
        async with self._db.execute(
            "SELECT digest, set_on, rotated_on, failures, locked_until FROM codewords WHERE case_ref = ?", (case,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return dict(zip(("digest", "set_on", "rotated_on", "failures", "locked_until"), row, strict=True))

    async def codeword_save(self, case: str, digest: str, set_on: str, rotated_on: str) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO codewords (case_ref, digest, set_on, rotated_on, failures, locked_until) "
            "VALUES (?, ?, ?, ?, 0, NULL)",
            (case, digest, set_on, rotated_on),
        )
        await self._db.commit()

    async def codeword_failed(self, case: str, failures: int, locked_until: float | None) -> None:
        await self._db.execute(
            "UPDATE codewords SET failures = ?, locked_until = ? WHERE case_ref = ?", (failures, locked_until, case)
        )
        await self._db.commit()

    async def stats_since(self, first_day: str) -> list[tuple[str, str, str, int]]:
        async with self._db.execute(
            "SELECT day, metric, bucket, count FROM stats_daily WHERE day >= ? ORDER BY day, metric, bucket",
            (first_day,),
        ) as cursor:
            return [tuple(row) async for row in cursor]  # type: ignore[misc]


async def _add_missing_columns(db: aiosqlite.Connection) -> None:
    """Databases made by an older version get the columns added since (all nullable)."""
    async with db.execute("PRAGMA table_info(chats)") as cursor:
        present = {row[1] async for row in cursor}
    for name in COLUMNS:
        if name not in present:
            kind = "REAL" if name.endswith("_at") else "INTEGER" if name in {
                "rights_delivered", "escalated", "warned", "reminded"} else "TEXT"
            await db.execute(f"ALTER TABLE chats ADD COLUMN {name} {kind}")
