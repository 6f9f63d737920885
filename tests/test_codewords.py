"""Code words: keyed slow hashes in the bot's real SQLite store; match, mismatch, lockout, expiry, rotation."""

from __future__ import annotations

from datetime import date

import pytest

from bot.codewords import Codewords
from bot.commands import Codeword
from bot.conversation import (
    AskSurvivor,
    CheckCodeword,
    CodewordChecked,
    Reply,
    SurvivorAnswered,
    apply,
)
from bot.ids import EventId
from bot.routing_view import RoutingView
from bot.store import Store
from tests.test_conversation import ACTIVE, CASE_ROOM, REF, SURVIVOR_ROOM, command, run

DAY = date(2026, 11, 28)


@pytest.fixture
async def words(tmp_path):
    store = await Store.open(tmp_path / "routing.db")
    yield Codewords(store, b"p" * 32, valid_days=90, max_failures=3, lock_seconds=3600), tmp_path / "routing.db"
    await store.close()


async def test_set_then_verify_in_any_script_and_case(words):
    codewords, path = words
    created = await codewords.create("  Étoile du Nord 🌟 ", DAY)
    assert created.key == "codeword_set" and created.case.startswith("C-") and created.set_on == "2026-11-28"
    match = await codewords.verify(created.case, "étoile du nord 🌟", DAY)
    assert (match.key, match.matched, match.set_on) == ("codeword_match", True, "2026-11-28")
    with RoutingView(path) as view:
        stored = view.codewords()
    assert "toile" not in repr(stored) and "$argon2id$" in stored[0][1]  # only a slow hash is kept


async def test_wrong_words_lock_the_case_and_the_right_one_then_waits(words):
    codewords, _ = words
    case = (await codewords.create("lighthouse", DAY)).case
    outcomes = [await codewords.verify(case, "lamp", DAY, now=1000.0) for _ in range(3)]
    assert [o.key for o in outcomes] == ["codeword_nomatch", "codeword_nomatch", "codeword_locked_now"]
    locked = await codewords.verify(case, "lighthouse", DAY, now=2000.0)
    assert (locked.key, locked.matched) == ("codeword_locked", False)
    assert (await codewords.verify(case, "lighthouse", DAY, now=1000.0 + 3601)).matched


async def test_unknown_case_says_no_more_than_a_wrong_word(words):
    codewords, _ = words
    assert (await codewords.verify("C-AAAA", "anything", DAY)).key == "codeword_nomatch"


async def test_expiry_and_rotation(words):
    codewords, _ = words
    case = (await codewords.create("harbour", DAY)).case
    late = date(2027, 3, 1)
    expired = await codewords.verify(case, "harbour", late)
    assert (expired.key, expired.matched, expired.until) == ("codeword_expired", True, "2027-02-26")
    assert (await codewords.rotate(case, "new harbour", late)).key == "codeword_rotated"
    assert (await codewords.verify(case, "new harbour", late)).key == "codeword_match"
    assert (await codewords.verify(case, "harbour", late)).key == "codeword_nomatch"


def test_rules_ask_the_page_and_never_put_the_word_in_a_repr():
    state, effects = run(ACTIVE + [(20, command(Codeword("new")))])
    assert effects == [AskSurvivor(SURVIVOR_ROOM, "codeword_new"), Reply(CASE_ROOM, "codeword_asking")]
    answer = SurvivorAnswered(SURVIVOR_ROOM, "codeword_new", "secret-word-77", EventId("$ans"))
    state, effects = apply(state, answer, 21)
    assert effects == [CheckCodeword(REF, SURVIVOR_ROOM, CASE_ROOM, "new", None, "secret-word-77", EventId("$ans"))]
    assert "secret-word-77" not in repr(effects) and "secret-word-77" not in repr(answer)
    # Rotation needs a match in this chat first; a match unlocks it.
    _, effects = apply(state, command(Codeword("rotate", "C-K7Q3")), 22)
    assert effects == [Reply(CASE_ROOM, "codeword_verify_first", (("case", "C-K7Q3"),))]
    state, _ = apply(state, CodewordChecked(REF, "C-K7Q3", True), 23)
    _, effects = apply(state, command(Codeword("rotate", "C-K7Q3")), 24)
    assert effects[0] == AskSurvivor(SURVIVOR_ROOM, "codeword_new")


def test_tries_per_chat_are_bounded():
    state, _ = run(ACTIVE)
    for i in range(5):
        state, _ = apply(state, command(Codeword("verify", "C-K7Q3")), 30 + i)
        state, _ = apply(state, SurvivorAnswered(SURVIVOR_ROOM, "codeword_verify", "guess"), 30 + i)
    _, effects = apply(state, command(Codeword("verify", "C-K7Q3")), 40)
    assert effects == [Reply(CASE_ROOM, "codeword_chat_limit")]


def test_the_demo_stack_has_code_words_on_with_a_key_kept_between_runs(tmp_path):
    """`make demo` (a DevStack) sets up code words as `hotline init` does: a private key, made once."""
    from bot.settings import BotSettings
    from hotline.devstack import DevStack

    first = DevStack(tmp_path / "demo").codeword_pepper()
    assert DevStack(tmp_path / "demo").codeword_pepper() == first  # a later start: same key
    assert (tmp_path / "demo" / "codeword-pepper").stat().st_mode & 0o777 == 0o600
    assert DevStack(tmp_path / "other").codeword_pepper() != first
    settings = BotSettings(homeserver_url="http://127.0.0.1:1", bot_user_id="@hotline:hs", bot_password="x",
                           data_dir=tmp_path, dispatch_room="!d:hs", codeword_pepper=first)
    assert settings.codeword_pepper is not None
