"""Code words for ongoing advocacy: a keyed, slow hash per case, never the word itself.

The survivor chooses a code word on the page (masked, typed twice); it reaches the bot inside the
encrypted survivor room, the bot redacts that event at once, and keeps only
``argon2id(HMAC-SHA256(pepper, normalized word))`` with a random case reference (``C-K7Q3``) that
both the survivor and the advocate see, and the dates it was set and last rotated. Verifying
compares in constant time (argon2's verify) and is bounded: a few wrong tries lock the case.
Hashing runs in a worker thread so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.ids import new_ref

_hasher = PasswordHasher()  # argon2id with the library's current recommended costs


def _keyed(pepper: bytes, word: str) -> str:
    normalized = unicodedata.normalize("NFKC", word).strip().casefold()
    return hmac.new(pepper, normalized.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Outcome:
    key: str  # a key of messages.STAFF
    case: str
    matched: bool = False
    set_on: str = ""
    until: str = ""


class Codewords:
    def __init__(self, store, pepper: bytes, valid_days: int, max_failures: int, lock_seconds: float) -> None:
        self._store = store
        self._pepper = pepper
        self._valid_days = valid_days
        self._max_failures = max_failures
        self._lock_seconds = lock_seconds

    async def create(self, word: str, today: date) -> Outcome:
        taken = await self._store.codeword_cases()
        case = "C-" + new_ref({c[2:] for c in taken})
        digest = await asyncio.to_thread(_hasher.hash, _keyed(self._pepper, word))
        await self._store.codeword_save(case, digest, today.isoformat(), today.isoformat())
        return Outcome("codeword_set", case, set_on=today.isoformat())

    async def rotate(self, case: str, word: str, today: date) -> Outcome:
        row = await self._store.codeword_get(case)
        if row is None:
            return Outcome("codeword_nomatch", case)
        digest = await asyncio.to_thread(_hasher.hash, _keyed(self._pepper, word))
        await self._store.codeword_save(case, digest, row["set_on"], today.isoformat())
        return Outcome("codeword_rotated", case, set_on=row["set_on"])

    async def verify(self, case: str, word: str, today: date, now: float | None = None) -> Outcome:
        now = time.time() if now is None else now
        row = await self._store.codeword_get(case)
        if row is None:
            # An unknown case costs the same work and says the same as a wrong word.
            await asyncio.to_thread(_verify, _DUMMY, _keyed(self._pepper, word))
            return Outcome("codeword_nomatch", case)
        if row["locked_until"] and row["locked_until"] > now:
            return Outcome("codeword_locked", case, until=_clock(row["locked_until"]))
        if not await asyncio.to_thread(_verify, row["digest"], _keyed(self._pepper, word)):
            failures = row["failures"] + 1
            locked = now + self._lock_seconds if failures >= self._max_failures else None
            await self._store.codeword_failed(case, 0 if locked else failures, locked)
            if locked:
                return Outcome("codeword_locked_now", case, until=_clock(locked))
            return Outcome("codeword_nomatch", case)
        await self._store.codeword_failed(case, 0, None)
        changed = date.fromisoformat(row["rotated_on"] or row["set_on"])
        if today > changed + timedelta(days=self._valid_days):
            expired = (changed + timedelta(days=self._valid_days)).isoformat()
            return Outcome("codeword_expired", case, matched=True, set_on=row["set_on"], until=expired)
        return Outcome("codeword_match", case, matched=True, set_on=row["set_on"])


def _verify(digest: str, keyed: str) -> bool:
    try:
        return _hasher.verify(digest, keyed)
    except (VerificationError, InvalidHashError):
        return False


def _clock(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


_DUMMY = _hasher.hash("not a code word")
