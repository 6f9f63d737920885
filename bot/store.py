"""The bot's routing database (SQLite through aiosqlite): open chats and the bot's own login.

Routing state only: room IDs, phase, coarse times, the assigned advocate. Never content. A chat's
row is deleted when the chat is erased. ``secure_delete`` overwrites deleted rows on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import aiosqlite

from bot.conversation import Chat, CodewordAsk, Phase, step_from_text, step_to_text
from hotline_runtime.errors import HotlineError
from bot.ids import ChatRef


class StoreError(HotlineError):
    """The routing database cannot be used by this version of the bot (the message says why)."""


# The schema: every table once, as this version has it, each STRICT (SQLite refuses a value of
# another type instead of converting it). A new database is made from it; one made by an older
# version (``PRAGMA user_version``) is brought to exactly it by MIGRATIONS, in one transaction
# (tests/test_store.py checks both ways end in the same tables). ``chats`` has one column per
# field of ``bot.conversation.Chat``, declared with its type; tests/test_store.py checks they agree.
SCHEMA: dict[str, str] = {
    "chats": """CREATE TABLE chats (
    ref TEXT NOT NULL PRIMARY KEY,
    survivor_room TEXT NOT NULL UNIQUE,
    survivor TEXT NOT NULL,
    opened_at REAL NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('ready', 'waiting', 'inviting', 'active', 'closing')),
    advocate TEXT,
    case_room TEXT UNIQUE,
    disconnected_at REAL,
    language TEXT,
    rights_delivered INTEGER NOT NULL CHECK (rights_delivered IN (0, 1)),
    rights_sent INTEGER NOT NULL CHECK (rights_sent IN (0, 1)),
    claimed_at REAL,
    alerted_at REAL,
    escalated INTEGER NOT NULL CHECK (escalated IN (0, 1)),
    reassured_at REAL,
    survivor_at REAL,
    warned INTEGER NOT NULL CHECK (warned IN (0, 1)),
    advocate_at REAL,
    reminded INTEGER NOT NULL CHECK (reminded IN (0, 1)),
    priority INTEGER NOT NULL CHECK (priority IN (0, 1)),
    transferred INTEGER NOT NULL CHECK (transferred IN (0, 1)),
    handoff_note TEXT CHECK (handoff_note IS NULL),
    supervisor TEXT,
    interpreter TEXT,
    invited TEXT,
    interpreter_request TEXT,
    codeword_ask TEXT,
    codeword_attempts INTEGER NOT NULL CHECK (codeword_attempts >= 0),
    verified_case TEXT
) STRICT""",
    # The bot's own values by key: its login (``device_id``, ``access_token``), the sync
    # position, and the key prefixes below.
    "meta": """CREATE TABLE meta (
    key TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT""",
    # Counts per day, never per chat (docs/privacy.md).
    "stats_daily": """CREATE TABLE stats_daily (
    day TEXT NOT NULL,
    metric TEXT NOT NULL,
    bucket TEXT NOT NULL DEFAULT '',
    count INTEGER NOT NULL,
    PRIMARY KEY (day, metric, bucket)
) STRICT""",
    # A case's code word, as a slow hash (bot/codewords.py), and its lock after failed tries.
    "codewords": """CREATE TABLE codewords (
    case_ref TEXT NOT NULL PRIMARY KEY,
    digest TEXT NOT NULL,
    set_on TEXT NOT NULL,
    rotated_on TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL
) STRICT""",
}

# Prefixes of ``meta`` keys that others read (hotline admin, tests): a handed-on case room whose
# erase is not done yet ("erase:" + room id).
PENDING_ERASE = "erase:"

COLUMNS = tuple(f.name for f in fields(Chat))
TIMES = ("opened_at", "claimed_at", "alerted_at", "reassured_at", "survivor_at", "advocate_at")
FLAGS = ("rights_delivered", "rights_sent", "escalated", "warned", "reminded", "priority", "transferred")
COUNTS = ("codeword_attempts",)
_DEFAULTS = {f.name: f.default for f in fields(Chat)}


def _legacy_value(name: str, present: set[str]) -> str:
    """The SQL that reads one column from a version-0 table (types guessed from names, some
    columns missing), as the typed value: flags '0'/'1' (text) → 0/1, counts → integers."""
    if name not in present:
        default = _DEFAULTS[name]
        return "NULL" if default is None else repr(int(default)) if name in FLAGS + COUNTS else f"'{default}'"
    if name in FLAGS:
        return f"(COALESCE(CAST({name} AS INTEGER), 0) != 0)"
    if name in COUNTS:
        return f"MAX(COALESCE(CAST({name} AS INTEGER), 0), 0)"
    if name in TIMES or name == "disconnected_at":
        return f"CAST({name} AS REAL)"
    if name == "handoff_note":
        return "NULL"
    return f"CAST({name} AS TEXT)"


# ``chats`` as versions 1 to 3 made it (version 4 added 'ready' and ``rights_sent``).
_VERSION_1_CHATS = """CREATE TABLE chats (
    ref TEXT NOT NULL PRIMARY KEY, survivor_room TEXT NOT NULL UNIQUE, survivor TEXT NOT NULL,
    opened_at REAL NOT NULL, phase TEXT NOT NULL CHECK (phase IN ('waiting', 'inviting', 'active', 'closing')),
    advocate TEXT, case_room TEXT UNIQUE, disconnected_at REAL, language TEXT,
    rights_delivered INTEGER NOT NULL CHECK (rights_delivered IN (0, 1)), claimed_at REAL, alerted_at REAL,
    escalated INTEGER NOT NULL CHECK (escalated IN (0, 1)), reassured_at REAL, survivor_at REAL,
    warned INTEGER NOT NULL CHECK (warned IN (0, 1)), advocate_at REAL,
    reminded INTEGER NOT NULL CHECK (reminded IN (0, 1)),
    priority INTEGER NOT NULL CHECK (priority IN (0, 1)), transferred INTEGER NOT NULL CHECK (transferred IN (0, 1)),
    handoff_note TEXT CHECK (handoff_note IS NULL), supervisor TEXT, interpreter TEXT, invited TEXT,
    interpreter_request TEXT, codeword_ask TEXT, codeword_attempts INTEGER NOT NULL CHECK (codeword_attempts >= 0),
    verified_case TEXT
) STRICT"""
_VERSION_1_COLUMNS = tuple(name for name in COLUMNS if name != "rights_sent")

# The tables other than ``chats`` as version 1 made them (not STRICT yet; version 3 made them so).
_VERSION_1_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS enrolled_staff (user_id TEXT PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS stats_daily (
        day TEXT NOT NULL,
        metric TEXT NOT NULL,
        bucket TEXT NOT NULL DEFAULT '',
        count INTEGER NOT NULL,
        PRIMARY KEY (day, metric, bucket)
    )""",
    """CREATE TABLE IF NOT EXISTS codewords (
        case_ref TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        set_on TEXT NOT NULL,
        rotated_on TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        locked_until REAL
    )""",
)


def _to_version_1(db: sqlite3.Connection) -> None:
    """Version 0 (no user_version): ``chats`` made by CREATE TABLE plus columns added later with a
    type guessed from the name, so ``priority``, ``transferred`` and ``codeword_attempts`` were
    TEXT and came back as '0'/'1'. Rebuild it typed and STRICT, keeping every open chat.

    This makes ``chats`` as version 1 had it (``_VERSION_1_CHATS``); later versions change it."""
    for statement in _VERSION_1_TABLES:
        db.execute(statement)
    legacy = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chats'").fetchone()
    if legacy is None:
        db.execute(_VERSION_1_CHATS)
        return
    present = {row[1] for row in db.execute("PRAGMA table_info(chats)")}
    db.execute("ALTER TABLE chats RENAME TO chats_version_0")
    db.execute(_VERSION_1_CHATS)
    values = ", ".join(_legacy_value(name, present) for name in _VERSION_1_COLUMNS)
    db.execute(f"INSERT INTO chats ({', '.join(_VERSION_1_COLUMNS)}) SELECT {values} FROM chats_version_0")
    db.execute("DROP TABLE chats_version_0")


def _to_version_2(db: sqlite3.Connection) -> None:
    """Staff trust is by cross-signing now: the identities the bot pinned are ``identity:`` rows of
    ``meta``; the list of staff "enrolled" by their first devices is no longer used."""
    db.execute("DROP TABLE IF EXISTS enrolled_staff")


def _to_version_3(db: sqlite3.Connection) -> None:
    """``meta``, ``stats_daily`` and ``codewords`` STRICT like ``chats``: rebuilt from SCHEMA with
    every row, each value cast to its column's type (what the bot wrote had those types already)."""
    copies = {
        "meta": ("CAST(key AS TEXT), CAST(value AS TEXT)", "key IS NOT NULL"),
        "stats_daily": ("day, metric, bucket, CAST(count AS INTEGER)", "1"),
        "codewords": ("CAST(case_ref AS TEXT), digest, set_on, rotated_on, CAST(failures AS INTEGER), "
                      "CAST(locked_until AS REAL)", "case_ref IS NOT NULL"),
    }
    for table, (values, kept) in copies.items():
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_version_2")
        db.execute(SCHEMA[table])
        db.execute(f"INSERT INTO {table} SELECT {values} FROM {table}_version_2 WHERE {kept}")
        db.execute(f"DROP TABLE {table}_version_2")


def _to_version_4(db: sqlite3.Connection) -> None:
    """Chats opened ahead: the phase 'ready' (the bot is in the room, nobody started the chat) and
    ``rights_sent`` (the rights notice went out, so the bot's join and the survivor's start do not
    send it twice). Rebuilt from SCHEMA with every row. A chat still waiting for the bot's join (no
    welcome yet: ``reassured_at`` empty) becomes 'ready', so that the join and the start, seen again
    from the sync, bring its notices; every other chat had its rights notice sent."""
    db.execute("ALTER TABLE chats RENAME TO chats_version_3")
    db.execute(SCHEMA["chats"])
    unstarted = "(phase = 'waiting' AND reassured_at IS NULL)"
    values = ", ".join(
        f"CASE WHEN {unstarted} THEN 'ready' ELSE phase END" if name == "phase"
        else f"NOT {unstarted}" if name == "rights_sent" else name for name in COLUMNS)
    db.execute(f"INSERT INTO chats ({', '.join(COLUMNS)}) SELECT {values} FROM chats_version_3")
    db.execute("DROP TABLE chats_version_3")


# MIGRATIONS[n] takes a database from version n to version n + 1. Append; never edit one that
# has shipped (a database in the field may be at any version).
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _to_version_1, _to_version_2, _to_version_3, _to_version_4)
VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Bring the database up to VERSION in one transaction; the version it had before. A new
    (empty) database is made from SCHEMA as it is."""
    db.execute("BEGIN IMMEDIATE")
    try:
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > VERSION:
            raise StoreError(f"the routing database is at version {found}, newer than this bot "
                             f"(version {VERSION}): run the newer bot, or restore a backup")
        if found == 0 and db.execute("SELECT 1 FROM sqlite_master").fetchone() is None:
            for statement in SCHEMA.values():
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {VERSION}")
        else:
            for version in range(found, VERSION):
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found


def _migrate_file(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA secure_delete = ON")  # the old table's rows are overwritten when dropped
        db.execute("PRAGMA journal_mode = DELETE")
        migrate(db)


def _row(chat: Chat) -> tuple[object, ...]:
    kept = stored(chat)
    # The sub-states are typed records in memory and kept as text: "asking:es", "verify:C-K7Q3".
    return tuple(
        str(kept.phase) if name == "phase"
        else int(getattr(kept, name)) if name in FLAGS
        else step_to_text(kept.interpreter_request) if name == "interpreter_request"
        else kept.codeword_ask.to_text() if name == "codeword_ask" and kept.codeword_ask is not None
        else getattr(kept, name)
        for name in COLUMNS
    )


def _chat(row: tuple[object, ...]) -> Chat:
    values = dict(zip(COLUMNS, row, strict=True))
    values["phase"] = Phase(values["phase"])
    for name in FLAGS:
        values[name] = bool(values[name])
    values["interpreter_request"] = step_from_text(values["interpreter_request"])  # type: ignore[arg-type]
    values["codeword_ask"] = CodewordAsk.from_text(values["codeword_ask"])  # type: ignore[arg-type]
    return Chat(**values)  # type: ignore[arg-type]


def coarse(timestamp: float, *, up: bool = False) -> float:
    """Times are kept to the minute: enough for timers, less to learn from.

    ``up`` rounds to the next minute, so that a timer started then never runs short.
    """
    minutes = -(-timestamp // 60) if up else timestamp // 60
    return float(minutes * 60)


def stored(chat: Chat) -> Chat:
    """The chat as the database keeps it, and as a restarted bot gets it back: times to the
    minute (``disconnected_at`` rounded up, so the grace period never runs short) and no
    handoff note (staff-written text stays in memory). Every other field exactly as it was."""
    times = {name: coarse(getattr(chat, name)) for name in TIMES if getattr(chat, name) is not None}
    if chat.disconnected_at is not None:
        times["disconnected_at"] = coarse(chat.disconnected_at, up=True)
    return replace(chat, **times, handoff_note=None)


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)
        os.chmod(path, 0o600)
        await asyncio.to_thread(_migrate_file, path)
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA secure_delete = ON")
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def load_chats(self) -> dict[ChatRef, Chat]:
        async with self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM chats") as cursor:
            return {chat.ref: chat for chat in [_chat(tuple(row)) async for row in cursor]}

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
            await self._db.execute(
                f"INSERT OR REPLACE INTO chats ({', '.join(COLUMNS)}) VALUES ({placeholders})", _row(chat)
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
