"""The routing database seen from beside the bot: read-only, through named queries.

``hotline admin`` (the bot's login, pending erases, the rooms open chats use, statistics), the
tests and the benchmarks read the bot's routing database while the bot runs. They read it here,
never with SQL of their own, so that the schema (``bot.store.SCHEMA``) has one set of readers next
to it. The file is opened with SQLite's ``mode=ro`` URI and ``query_only``: nothing can write
through a view, and opening one never creates the file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from bot.conversation import Chat
from bot.store import COLUMNS, PENDING_ERASE, _chat

FILE_NAME = "routing.db"  # in the bot's DATA_DIR


class RoutingView:
    """One read-only connection to a routing database; close it (or use ``with``) when done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            self._db.execute("PRAGMA query_only = ON")
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def of(cls, data_dir: Path) -> RoutingView:
        """The routing database of the bot whose DATA_DIR this is."""
        return cls(data_dir / FILE_NAME)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RoutingView:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        return self._db.execute(sql, params).fetchone()

    def _count(self, sql: str) -> int:
        return int(self._db.execute(sql).fetchone()[0])

    # ------------------------------------------------------------------ chats

    def chat(self, ref: str) -> Chat | None:
        """The open chat with this ref, as the bot would load it."""
        row = self._one(f"SELECT {', '.join(COLUMNS)} FROM chats WHERE ref = ?", (ref,))
        return None if row is None else _chat(row)

    def chat_in_case_room(self, case_room: str) -> Chat | None:
        """The open chat whose case room this is."""
        row = self._one(f"SELECT {', '.join(COLUMNS)} FROM chats WHERE case_room = ?", (case_room,))
        return None if row is None else _chat(row)

    def chat_count(self) -> int:
        """Chats started and not erased yet, closing ones included (not those opened ahead)."""
        return self._count("SELECT COUNT(*) FROM chats WHERE phase != 'ready'")

    def closing_count(self) -> int:
        """Chats ended but not erased yet."""
        return self._count("SELECT COUNT(*) FROM chats WHERE phase = 'closing'")

    def ready_count(self) -> int:
        """Chats opened ahead that nobody has started (phase 'ready'): not open chats for staff."""
        return self._count("SELECT COUNT(*) FROM chats WHERE phase = 'ready'")

    def ready_chats(self) -> dict[str, str]:
        """Survivor room → survivor account of each chat opened ahead that nobody has started."""
        return dict(self._db.execute("SELECT survivor_room, survivor FROM chats WHERE phase = 'ready'").fetchall())

    def rooms_and_survivors(self) -> tuple[set[str], set[str]]:
        """(rooms, survivor accounts) that open chats use. The columns read here are in every
        version of the table, so this works on a database the bot has not migrated yet."""
        rooms: set[str] = set()
        survivors: set[str] = set()
        for survivor_room, case_room, survivor in self._db.execute(
                "SELECT survivor_room, case_room, survivor FROM chats"):
            rooms |= {survivor_room, case_room} - {None}
            survivors |= {survivor} - {None}
        return rooms, survivors

    # ------------------------------------------------------------------ the bot's own values

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def login(self) -> tuple[str | None, str | None]:
        """(device id, access token) the bot saved when it logged in; None before it has."""
        return self.meta("device_id"), self.meta("access_token")

    def pending_erases(self) -> list[str]:
        """Handed-on case rooms whose erase the bot has started and not finished."""
        return [key[len(PENDING_ERASE):] for (key,) in self._db.execute(
            "SELECT key FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key", (len(PENDING_ERASE), PENDING_ERASE))]

    # ------------------------------------------------------------------ statistics and code words

    def has_stats(self) -> bool:
        """Whether the database keeps statistics (a bot older than statistics made none)."""
        return self._one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stats_daily'") is not None

    def stats(self) -> tuple[list[str], list[tuple[object, ...]]]:
        """(column names, every row) of the daily counts, by day, metric and bucket."""
        cursor = self._db.execute("SELECT * FROM stats_daily ORDER BY 1, 2, 3")
        return [d[0] for d in cursor.description], cursor.fetchall()

    def totals(self, metric_prefix: str) -> dict[tuple[str, str], int]:
        """(metric, bucket) → the count over all days, for metrics that start with this."""
        return {(metric, bucket): n for metric, bucket, n in self._db.execute(
            "SELECT metric, bucket, SUM(count) FROM stats_daily WHERE substr(metric, 1, ?) = ? "
            "GROUP BY metric, bucket", (len(metric_prefix), metric_prefix))}

    def codewords(self) -> list[tuple[object, ...]]:
        """Every code-word row as stored (case, digest, set on, rotated on, failures, locked until)."""
        return self._db.execute("SELECT * FROM codewords ORDER BY case_ref").fetchall()
