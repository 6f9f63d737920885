"""The routing database: one explicit schema, migrations, and a restart that changes nothing.

A property test (Hypothesis) saves chats of every phase with every field drawn at random, opens the
database again as a restarted bot would, and checks that each field comes back with the same value
and the same Python type (``1 == True`` and ``"waiting" == Phase.WAITING`` in Python, so equality
alone would not notice a flag coming back as a number or text). The only changes are the two the
store makes on purpose (``bot.store.stored``): times to the minute and no handoff note.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import tempfile
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import store as store_module
from bot.conversation import (
    AskingInterpreters,
    AskingSurvivor,
    Chat,
    CodewordAsk,
    CodewordMode,
    Hotline,
    InterpreterInvited,
    Phase,
    Rules,
    step_to_text,
)
from bot.ids import REF_ALPHABET, ChatRef, RoomId, UserId
from bot.routing_view import RoutingView
from bot.store import COLUMNS, PENDING_ERASE, SCHEMA, VERSION, Store, StoreError, coarse, stored

# ------------------------------------------------------------------ strategies

times = st.floats(min_value=0, max_value=2**40, allow_nan=False, allow_infinity=False)
words = st.text(max_size=80)  # any Unicode, NUL and right-to-left marks included
optional_words = st.none() | words
optional_times = st.none() | times

FIELD_STRATEGIES: dict[str, st.SearchStrategy[typing.Any]] = {
    "ref": st.text(alphabet=REF_ALPHABET, min_size=4, max_size=4),
    "survivor_room": words,
    "survivor": words,
    "opened_at": times,
    "phase": st.sampled_from(Phase),
    "advocate": optional_words,
    "case_room": optional_words,
    "disconnected_at": optional_times,
    "language": optional_words,
    "rights_delivered": st.booleans(),
    "rights_sent": st.booleans(),
    "claimed_at": optional_times,
    "alerted_at": optional_times,
    "escalated": st.booleans(),
    "reassured_at": optional_times,
    "survivor_at": optional_times,
    "warned": st.booleans(),
    "advocate_at": optional_times,
    "reminded": st.booleans(),
    "priority": st.booleans(),
    "transferred": st.booleans(),
    "handoff_note": optional_words,
    "supervisor": optional_words,
    "interpreter": optional_words,
    "invited": optional_words,
    # Typed records in memory, kept as text ("asking:es", "verify:C-K7Q3") in the database.
    "interpreter_request": st.none() | st.builds(AskingSurvivor, words) | st.builds(AskingInterpreters, words)
    | st.builds(InterpreterInvited, words),
    "codeword_ask": st.none() | st.builds(CodewordAsk, st.sampled_from(CodewordMode), st.none() | words.filter(bool)),
    "codeword_attempts": st.integers(min_value=0, max_value=2**31),
    "verified_case": optional_words,
}


@st.composite
def chat_sets(draw: st.DrawFn, max_size: int = 6, phases: list[Phase] | None = None) -> dict[ChatRef, Chat]:
    """Chats with distinct refs and rooms (the table's UNIQUE columns), every phase likely."""
    strategies = FIELD_STRATEGIES | ({"phase": st.sampled_from(phases)} if phases else {})
    chats = draw(st.lists(st.builds(Chat, **strategies), max_size=max_size, unique_by=lambda c: c.ref))
    out: dict[ChatRef, Chat] = {}
    for n, chat in enumerate(chats):
        case_room = None if chat.case_room is None else f"{chat.case_room}#case{n}"
        out[chat.ref] = dataclasses.replace(chat, survivor_room=f"{chat.survivor_room}#survivor{n}",
                                            case_room=case_room)
    return out


def run(coroutine: typing.Awaitable[typing.Any]) -> typing.Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def reopened(path: Path) -> dict[ChatRef, Chat]:
    """What a restarted bot loads."""
    store = await Store.open(path)
    try:
        return await store.load_chats()
    finally:
        await store.close()


def assert_same(loaded: dict[ChatRef, Chat], expected: dict[ChatRef, Chat]) -> None:
    assert loaded.keys() == expected.keys()
    for ref, chat in expected.items():
        for name in COLUMNS:
            want, got = getattr(chat, name), getattr(loaded[ref], name)
            assert (got, type(got)) == (want, type(want)), f"{ref}.{name}"


# ------------------------------------------------------------------ the schema


def test_the_table_has_one_typed_column_per_field(tmp_path: Path) -> None:
    """A field added to Chat without a column (and a migration) fails here."""
    run(reopened(tmp_path / "routing.db"))
    with sqlite3.connect(tmp_path / "routing.db") as db:
        columns = {row[1]: (row[2], bool(row[3])) for row in db.execute("PRAGMA table_info(chats)")}
        strict = db.execute("SELECT sql FROM sqlite_master WHERE name = 'chats'").fetchone()[0].rstrip().endswith("STRICT")
        version = db.execute("PRAGMA user_version").fetchone()[0]
    assert strict and version == VERSION
    hints = typing.get_type_hints(Chat)
    sql_type = {str: "TEXT", float: "REAL", int: "INTEGER", bool: "INTEGER", Phase: "TEXT",
                AskingSurvivor: "TEXT", CodewordAsk: "TEXT"}  # the sub-states, kept as text
    expected = {}
    for field in dataclasses.fields(Chat):
        hint = hints[field.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = type(None) in typing.get_args(hint)
        base = args[0] if optional else hint
        base = getattr(base, "__supertype__", base)  # NewType → str
        expected[field.name] = (sql_type[base], not optional)
    assert columns == expected
    assert set(FIELD_STRATEGIES) == set(COLUMNS)


@pytest.mark.parametrize(("column", "value"), [
    ("priority", "no"), ("priority", 2), ("transferred", "yes"), ("codeword_attempts", "three"),
    ("codeword_attempts", 1.5), ("codeword_attempts", -1), ("survivor", None), ("opened_at", "soon"), ("phase", "lost"), ("handoff_note", "a note"),
])
def test_a_value_of_the_wrong_type_is_refused(tmp_path: Path, column: str, value: object) -> None:
    chat = Chat(ref=ChatRef("K7Q3"), survivor_room=RoomId("!s"), survivor=UserId("@chat_1:x"), opened_at=60.0)
    run(_save(tmp_path / "routing.db", {}, {chat.ref: chat}))
    with sqlite3.connect(tmp_path / "routing.db") as db, pytest.raises(sqlite3.IntegrityError):
        db.execute(f"UPDATE chats SET {column} = ?", (value,))


@pytest.mark.parametrize(("statement", "values"), [
    ("INSERT INTO meta VALUES (?, ?)", ("device_id", None)),
    ("INSERT INTO meta VALUES (?, ?)", (None, "x")),
    ("INSERT INTO stats_daily VALUES (?, ?, ?, ?)", ("2026-01-01", "chats", "", "four")),
    ("INSERT INTO codewords VALUES (?, ?, ?, ?, ?, ?)", ("C-K7Q3", "$argon2id$x", "2026-01-01", None, 1.5, None)),
    ("INSERT INTO codewords VALUES (?, ?, ?, ?, ?, ?)", ("C-K7Q3", "$argon2id$x", "2026-01-01", None, 0, "later")),
])
def test_the_other_tables_refuse_a_value_of_the_wrong_type(tmp_path: Path, statement: str,
                                                          values: tuple[object, ...]) -> None:
    run(reopened(tmp_path / "routing.db"))
    with sqlite3.connect(tmp_path / "routing.db") as db, pytest.raises(sqlite3.IntegrityError):
        db.execute(statement, values)


async def _save(path: Path, before: dict[ChatRef, Chat], after: dict[ChatRef, Chat]) -> None:
    store = await Store.open(path)
    try:
        await store.save_changes(before, after)
    finally:
        await store.close()


# ------------------------------------------------------------------ save → reload


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=chat_sets(), second=chat_sets(), keep=st.sets(st.sampled_from(REF_ALPHABET), max_size=3))
def test_every_field_of_every_phase_survives_a_restart(first: dict[ChatRef, Chat], second: dict[ChatRef, Chat],
                                                      keep: set[str]) -> None:
    """Save, restart, load: the same chats, field for field and type for type; then a second
    round of changes (some chats gone, some changed, some new) on top of the reloaded state."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "routing.db"
        run(_save(path, {}, first))
        loaded = run(reopened(path))
        assert_same(loaded, {ref: stored(chat) for ref, chat in first.items()})
        # Reloaded chats are what the bot works on after a restart: saving them changes nothing.
        run(_save(path, {}, loaded))
        assert_same(run(reopened(path)), loaded)
        # The next changes: chats whose ref starts with a kept letter stay, the rest are gone;
        # the second set replaces or adds (its rooms made distinct from the first set's).
        after = {ref: chat for ref, chat in loaded.items() if ref[0] in keep}
        for ref, chat in second.items():
            after[ref] = dataclasses.replace(
                chat, survivor_room=f"{chat.survivor_room}+2",
                case_room=None if chat.case_room is None else f"{chat.case_room}+2")
        run(_save(path, loaded, after))
        assert_same(run(reopened(path)), {ref: stored(chat) for ref, chat in after.items()})


def test_what_the_store_changes_on_purpose() -> None:
    chat = Chat(ref=ChatRef("K7Q3"), survivor_room=RoomId("!s"), survivor=UserId("@chat_1:x"), opened_at=119.5,
                disconnected_at=60.5, claimed_at=59.9, handoff_note="staff text")
    kept = stored(chat)
    assert (kept.opened_at, kept.disconnected_at, kept.claimed_at, kept.handoff_note) == (60.0, 120.0, 0.0, None)
    assert stored(kept) == kept
    assert coarse(120.0, up=True) == 120.0


def test_after_a_restart_the_queue_keeps_its_order(tmp_path: Path) -> None:
    """The bug this replaces: '0' (text) is true, so every waiting chat came back first in line."""
    rules = Rules(bot=UserId("@bot:x"), survivor_prefix="chat_", server_name="x")
    chats = {
        ChatRef("AAAA"): Chat(ChatRef("AAAA"), RoomId("!a"), UserId("@chat_a:x"), opened_at=60.0),
        ChatRef("CCCC"): Chat(ChatRef("CCCC"), RoomId("!c"), UserId("@chat_c:x"), opened_at=120.0, priority=True,
                              transferred=True, codeword_attempts=2),
        ChatRef("DDDD"): Chat(ChatRef("DDDD"), RoomId("!d"), UserId("@chat_d:x"), opened_at=30.0),
    }
    run(_save(tmp_path / "routing.db", {}, chats))
    before = [c.ref for c in Hotline(rules, chats).waiting()]
    after = [c.ref for c in Hotline(rules, run(reopened(tmp_path / "routing.db"))).waiting()]
    assert before == after == ["CCCC", "DDDD", "AAAA"]


# ------------------------------------------------------------------ migrations

# The schema of the version before this one (no user_version), as its code made it: CREATE TABLE
# with the first columns, then each later field added with a type guessed from its name.
VERSION_0_TABLES = """
CREATE TABLE chats (
    ref TEXT PRIMARY KEY,
    survivor_room TEXT NOT NULL UNIQUE,
    survivor TEXT NOT NULL,
    opened_at REAL NOT NULL,
    phase TEXT NOT NULL,
    advocate TEXT,
    case_room TEXT UNIQUE,
    disconnected_at REAL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE enrolled_staff (user_id TEXT PRIMARY KEY);
CREATE TABLE stats_daily (day TEXT NOT NULL, metric TEXT NOT NULL, bucket TEXT NOT NULL DEFAULT '',
    count INTEGER NOT NULL, PRIMARY KEY (day, metric, bucket));
CREATE TABLE codewords (case_ref TEXT PRIMARY KEY, digest TEXT NOT NULL, set_on TEXT NOT NULL, rotated_on TEXT,
    failures INTEGER NOT NULL DEFAULT 0, locked_until REAL);
"""
ORIGINAL = ("ref", "survivor_room", "survivor", "opened_at", "phase", "advocate", "case_room", "disconnected_at")
# Added by version 4 (never in a version-0 table): 'ready' and ``rights_sent``.
VERSION_4_ADDED = ("rights_sent",)


def migrated(chat: Chat) -> Chat:
    """A chat of an older database as version 4 brings it back: one still waiting for the bot's
    join (no welcome yet) is 'ready'; every other chat had its rights notice sent."""
    unstarted = chat.phase is Phase.WAITING and chat.reassured_at is None
    return dataclasses.replace(chat, phase=Phase.READY if unstarted else chat.phase, rights_sent=not unstarted)


def version_0_database(path: Path, chats: list[Chat], added: tuple[str, ...] = COLUMNS) -> None:
    """A database as the previous code left it, with these chats saved the way it saved them."""
    added = tuple(name for name in added if name not in VERSION_4_ADDED)
    with sqlite3.connect(path) as db:
        db.executescript(VERSION_0_TABLES)
        for name in added:
            if name in ORIGINAL:
                continue
            kind = "REAL" if name.endswith("_at") else "INTEGER" if name in {
                "rights_delivered", "escalated", "warned", "reminded"} else "TEXT"
            db.execute(f"ALTER TABLE chats ADD COLUMN {name} {kind}")
        columns = [c for c in COLUMNS if c in ORIGINAL or c in added]
        for chat in chats:
            row = {name: getattr(stored(chat), name) for name in COLUMNS}
            row["phase"] = str(row["phase"])
            row["interpreter_request"] = step_to_text(chat.interpreter_request)  # the text it always was
            row["codeword_ask"] = chat.codeword_ask and chat.codeword_ask.to_text()
            db.execute(f"INSERT INTO chats ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                       tuple(row[c] for c in columns))
        db.execute("INSERT INTO meta VALUES ('device_id', 'BOTDEVICE'), ('access_token', 'syt_x')")
        db.execute("INSERT INTO stats_daily VALUES ('2026-01-01', 'chats', '', 4)")
        db.execute("INSERT INTO codewords VALUES ('C-K7Q3', '$argon2id$x', '2026-01-01', NULL, 2, NULL)")
        db.execute("INSERT INTO enrolled_staff VALUES ('@advocate:x')")


OPEN_CHATS = [
    Chat(ChatRef("AAAA"), RoomId("!a:x"), UserId("@chat_a:x"), opened_at=600.0),
    Chat(ChatRef("CCCC"), RoomId("!c:x"), UserId("@chat_c:x"), opened_at=660.0, phase=Phase.ACTIVE,
         advocate=UserId("@advocate:x"), case_room=RoomId("!case:x"), rights_delivered=True, claimed_at=720.0,
         survivor_at=780.0, transferred=True, codeword_attempts=3, codeword_ask=CodewordAsk(CodewordMode.VERIFY, "C-K7Q3"),
         interpreter_request=AskingSurvivor("es"),
         verified_case="C-K7Q3", language="uk"),
    Chat(ChatRef("DDDD"), RoomId("!d:x"), UserId("@chat_d:x"), opened_at=540.0, priority=True, transferred=True,
         reassured_at=600.0, disconnected_at=900.0, escalated=True, warned=True, reminded=True),
]


def test_a_version_0_database_migrates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "routing.db"
    version_0_database(path, OPEN_CHATS)
    with sqlite3.connect(path) as db:  # the bug, as the old database has it
        assert db.execute("SELECT typeof(priority), priority FROM chats WHERE ref = 'AAAA'").fetchone() == ("text", "0")
    loaded = run(reopened(path))
    assert_same(loaded, {chat.ref: migrated(chat) for chat in OPEN_CHATS})
    assert loaded[ChatRef("AAAA")].phase is Phase.READY  # not welcomed yet: the join and start bring it in
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
        assert db.execute("SELECT typeof(priority), typeof(codeword_attempts) FROM chats WHERE ref = 'AAAA'"
                          ).fetchone() == ("integer", "integer")
        assert dict(db.execute("SELECT key, value FROM meta")) == {"device_id": "BOTDEVICE", "access_token": "syt_x"}
        assert db.execute("SELECT * FROM stats_daily").fetchall() == [("2026-01-01", "chats", "", 4)]
        assert db.execute("SELECT case_ref, failures FROM codewords").fetchall() == [("C-K7Q3", 2)]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"chats", "meta", "stats_daily", "codewords"}  # enrolled_staff: replaced by pinned identities
    # Opening it again is a no-op, and the migrated chats save and load like new ones.
    assert_same(run(reopened(path)), loaded)
    run(_save(path, loaded, {**loaded, ChatRef("AAAA"): dataclasses.replace(loaded[ChatRef("AAAA")], priority=True)}))
    assert run(reopened(path))[ChatRef("AAAA")].priority is True


def test_an_older_database_without_the_later_columns_gets_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "routing.db"
    waiting = Chat(ChatRef("AAAA"), RoomId("!a:x"), UserId("@chat_a:x"), opened_at=600.0, disconnected_at=660.0)
    version_0_database(path, [waiting], added=("language", "rights_delivered"))
    assert_same(run(reopened(path)), {waiting.ref: migrated(waiting)})


def test_version_4_makes_a_chat_not_welcomed_yet_ready(tmp_path: Path) -> None:
    """A database of version 3 with open chats: every row kept; the one the bot had not joined yet
    (no welcome) is 'ready', so the join and the survivor's start seen again bring its notices."""
    path = tmp_path / "routing.db"
    at_version(path, 3, legacy=True)
    loaded = run(reopened(path))
    assert_same(loaded, {chat.ref: migrated(stored(chat)) for chat in OPEN_CHATS})
    assert [(ref, chat.rights_sent) for ref, chat in sorted(loaded.items())] == [
        ("AAAA", False), ("CCCC", True), ("DDDD", True)]
    assert loaded[ChatRef("AAAA")].phase is Phase.READY and loaded[ChatRef("DDDD")].phase is Phase.WAITING


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "routing.db"
    version_0_database(path, OPEN_CHATS)
    with sqlite3.connect(path) as db:
        before = db.execute("SELECT * FROM chats ORDER BY ref").fetchall()

    def broken(db: sqlite3.Connection) -> None:
        store_module.MIGRATIONS[0](db)
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_module, "MIGRATIONS", (broken,))
    with pytest.raises(RuntimeError):
        run(reopened(path))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        assert db.execute("SELECT * FROM chats ORDER BY ref").fetchall() == before


def test_a_database_from_a_newer_bot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "routing.db"
    run(reopened(path))
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this bot"):
        run(reopened(path))


# ------------------------------------------------------------------ one schema, however a database began


def schema_of(path: Path) -> dict[str, object]:
    """Everything that makes up the database's schema: the text SQLite keeps for each table and
    index, each table's columns (name, type, NOT NULL, default, key), and the version."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        master = sorted(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        tables = [name for kind, name, _, _ in master if kind == "table"]
        return {
            "sqlite_master": master,
            "columns": {table: db.execute(f"PRAGMA table_info({table})").fetchall() for table in tables},
            "user_version": db.execute("PRAGMA user_version").fetchone()[0],
        }


def at_version(path: Path, version: int, *, legacy: bool) -> None:
    """A database as the bot of ``version`` left it: one it made new, or the version-0 one
    (with chats and a row in every table) brought up to ``version`` by that bot."""
    if legacy:
        version_0_database(path, OPEN_CHATS)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for n in range(version):
            store_module.MIGRATIONS[n](db)
            db.execute(f"PRAGMA user_version = {n + 1}")


def test_a_new_database_is_the_schema(tmp_path: Path) -> None:
    run(reopened(tmp_path / "routing.db"))
    found = schema_of(tmp_path / "routing.db")
    assert found["user_version"] == VERSION
    assert {sql for kind, _, _, sql in found["sqlite_master"] if kind == "table"} == set(SCHEMA.values())
    assert all(sql.endswith(") STRICT") for sql in SCHEMA.values())


@pytest.mark.parametrize(("version", "legacy"), [(version, legacy) for version in range(VERSION)
                                                  for legacy in (True, False) if version or legacy])
def test_every_older_database_migrates_to_exactly_the_schema(tmp_path: Path, version: int, legacy: bool) -> None:
    """From the version-0 database, and from one each older bot made new (an empty file at
    version 0 is a new database)."""
    run(reopened(tmp_path / "new.db"))
    at_version(tmp_path / "old.db", version, legacy=legacy)
    assert schema_of(tmp_path / "old.db") != schema_of(tmp_path / "new.db")
    run(reopened(tmp_path / "old.db"))
    assert schema_of(tmp_path / "old.db") == schema_of(tmp_path / "new.db")


LEGACY_ADDED = [name for name in COLUMNS if name not in ORIGINAL + VERSION_4_ADDED]
OLDER_PHASES = [phase for phase in Phase if phase is not Phase.READY]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chats=chat_sets(max_size=4, phases=OLDER_PHASES), added=st.lists(st.sampled_from(LEGACY_ADDED), unique=True))
def test_any_version_0_database_migrates_with_its_chats(chats: dict[ChatRef, Chat], added: list[str]) -> None:
    """Whichever later columns the old database had, its chats come back with them (and the
    defaults for the rest), and the tables end up as a new database's."""
    with tempfile.TemporaryDirectory() as directory:
        path, new = Path(directory) / "routing.db", Path(directory) / "new.db"
        version_0_database(path, list(chats.values()), added=tuple(added))
        expected = {ref: migrated(dataclasses.replace(stored(chat), **{
            name: store_module._DEFAULTS[name] for name in LEGACY_ADDED if name not in added}))
            for ref, chat in chats.items()}
        assert_same(run(reopened(path)), expected)
        run(reopened(new))
        assert schema_of(path) == schema_of(new)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=st.dictionaries(words, words, max_size=5),
       stats=st.dictionaries(st.tuples(words, words, words), st.integers(min_value=0, max_value=2**40), max_size=5),
       codewords=st.dictionaries(words, st.tuples(words, words, optional_words, st.integers(0, 100),
                                                  optional_times), max_size=3))
def test_version_3_keeps_every_row_of_the_other_tables(meta: dict[str, str], stats: dict[tuple[str, str, str], int],
                                                       codewords: dict[str, tuple[object, ...]]) -> None:
    """``meta``, ``stats_daily`` and ``codewords`` made STRICT: every row back, value for value
    and type for type."""
    def rows(db: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
        return sorted((tuple((value, type(value)) for value in row) for row in db.execute(f"SELECT * FROM {table}")),
                      key=repr)

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "routing.db"
        at_version(path, 2, legacy=False)
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            db.executemany("INSERT INTO stats_daily VALUES (?, ?, ?, ?)", [(*key, n) for key, n in stats.items()])
            db.executemany("INSERT INTO codewords VALUES (?, ?, ?, ?, ?, ?)",
                           [(case, *row) for case, row in codewords.items()])
        with contextlib.closing(sqlite3.connect(path)) as db:
            before = {table: rows(db, table) for table in ("meta", "stats_daily", "codewords")}
        run(reopened(path))
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert {table: rows(db, table) for table in before} == before
            assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION


# ------------------------------------------------------------------ the read-only view


async def _fill(path: Path) -> None:
    store = await Store.open(path)
    try:
        await store.save_changes({}, {chat.ref: chat for chat in OPEN_CHATS}
                                 | {ChatRef("EEEE"): Chat(ChatRef("EEEE"), RoomId("!e:x"), UserId("@chat_e:x"),
                                                          opened_at=600.0, phase=Phase.CLOSING)}
                                 | {ChatRef("FFFF"): Chat(ChatRef("FFFF"), RoomId("!f:x"), UserId("@chat_f:x"),
                                                          opened_at=600.0, phase=Phase.READY, rights_sent=True)})
        await store.set_meta("device_id", "BOTDEVICE")
        await store.set_meta("access_token", "syt_x")
        await store.set_meta(PENDING_ERASE + "!old:x", "case_room")
        await store.set_meta("erasers", "not a pending erase")
        await store.count("2026-01-02", "answer:age", "18-24", 2)
        await store.count("2026-01-01", "answer:age", "18-24")
        await store.count("2026-01-01", "chats")
        await store.codeword_save("C-K7Q3", "$argon2id$x", "2026-01-01", "2026-01-01")
    finally:
        await store.close()


def test_the_view_reads_what_the_bot_wrote(tmp_path: Path) -> None:
    run(_fill(tmp_path / "routing.db"))
    with RoutingView.of(tmp_path) as view:
        assert_same({ref: view.chat(ref) for ref in ("AAAA", "CCCC", "DDDD")},  # type: ignore[misc]
                    {chat.ref: stored(chat) for chat in OPEN_CHATS})
        assert view.chat("ZZZZ") is None
        assert view.chat_in_case_room("!case:x").ref == "CCCC"  # type: ignore[union-attr]
        assert view.chat_in_case_room("!c:x") is None  # a survivor room is not a case room
        assert (view.chat_count(), view.closing_count(), view.ready_count()) == (4, 1, 1)
        assert view.ready_chats() == {"!f:x": "@chat_f:x"}
        assert view.rooms_and_survivors() == ({"!a:x", "!c:x", "!case:x", "!d:x", "!e:x", "!f:x"},
                                              {"@chat_a:x", "@chat_c:x", "@chat_d:x", "@chat_e:x", "@chat_f:x"})
        assert view.login() == ("BOTDEVICE", "syt_x") and view.meta("nothing") is None
        assert view.pending_erases() == ["!old:x"]
        assert view.has_stats()
        assert view.stats() == (["day", "metric", "bucket", "count"], [
            ("2026-01-01", "answer:age", "18-24", 1), ("2026-01-01", "chats", "", 1),
            ("2026-01-02", "answer:age", "18-24", 2)])
        assert view.totals("answer:") == {("answer:age", "18-24"): 3}
        assert view.codewords() == [("C-K7Q3", "$argon2id$x", "2026-01-01", "2026-01-01", 0, None)]


@pytest.mark.parametrize("statement", [
    "DELETE FROM chats", "UPDATE meta SET value = 'x'", "INSERT INTO meta VALUES ('k', 'v')",
    "CREATE TABLE more (x TEXT)", "DROP TABLE codewords", "PRAGMA user_version = 9",
])
def test_nothing_can_write_through_the_view(tmp_path: Path, statement: str) -> None:
    run(_fill(tmp_path / "routing.db"))
    before = schema_of(tmp_path / "routing.db")
    with RoutingView.of(tmp_path) as view, pytest.raises(sqlite3.OperationalError, match="readonly"):
        view._db.execute(statement)
        view._db.commit()
    # Not even with query_only turned off again: the file itself is open read-only.
    with RoutingView.of(tmp_path) as view, pytest.raises(sqlite3.OperationalError, match="readonly"):
        view._db.execute("PRAGMA query_only = OFF")
        view._db.execute(statement)
        view._db.commit()
    assert schema_of(tmp_path / "routing.db") == before
    assert run(reopened(tmp_path / "routing.db")).keys() == {"AAAA", "CCCC", "DDDD", "EEEE", "FFFF"}


def test_a_view_never_creates_the_database(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        RoutingView.of(tmp_path)
    assert not (tmp_path / "routing.db").exists()


def test_a_view_of_a_path_with_uri_characters(tmp_path: Path) -> None:
    data_dir = tmp_path / "a dir?mode=rwc#1 %20"
    data_dir.mkdir()
    run(_fill(data_dir / "routing.db"))
    with RoutingView.of(data_dir) as view:
        assert view.chat_count() == 4

@pytest.mark.parametrize(("name", "value", "text"), [
    ("interpreter_request", AskingSurvivor("es"), "asking:es"),
    ("interpreter_request", AskingSurvivor("@interp:x"), "asking:@interp:x"),
    ("interpreter_request", AskingInterpreters("uk"), "wanted:uk"),
    ("interpreter_request", InterpreterInvited(UserId("@interp:x")), "invited:@interp:x"),
    ("codeword_ask", CodewordAsk(CodewordMode.NEW), "new"),
    ("codeword_ask", CodewordAsk(CodewordMode.VERIFY, "C-K7Q3"), "verify:C-K7Q3"),
    ("codeword_ask", CodewordAsk(CodewordMode.ROTATE, "C-K7Q3"), "rotate:C-K7Q3"),
])
def test_the_sub_states_are_kept_as_the_text_they_always_were(tmp_path: Path, name: str, value: object,
                                                               text: str) -> None:
    """Typed records in memory, the same text in the database as before: a restarted older or
    newer bot reads the other's rows."""
    chat = dataclasses.replace(OPEN_CHATS[1], **{name: value})
    run(_save(tmp_path / "routing.db", {}, {chat.ref: chat}))
    with sqlite3.connect(tmp_path / "routing.db") as db:
        assert db.execute(f"SELECT {name} FROM chats").fetchone()[0] == text
    assert_same(run(reopened(tmp_path / "routing.db")), {chat.ref: chat})
