"""The one retry policy: capped exponential backoff, optionally spread by jitter.

A value object, so each loop that retries says its policy in one line (``Backoff(1.0, cap=30.0)``)
and the arithmetic lives here. Jitter spreads the retries of many clients that failed at the same
moment (the gateway's chats after the homeserver comes back) so that they do not return together.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first: float  # the delay before the first retry, in seconds
    cap: float  # no delay is longer than this (jitter included)
    factor: float = 2.0
    jitter: float = 0.0  # each delay is moved by up to this fraction of itself, either way
    tries: int | None = None  # how many retries ``delays`` yields; None: without end

    def __post_init__(self) -> None:
        if self.first <= 0 or self.cap < self.first or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("Backoff needs 0 < first <= cap, factor >= 1, 0 <= jitter < 1")
        if self.tries is not None and self.tries < 0:
            raise ValueError("Backoff tries must not be negative")

    def delay(self, attempt: int, spread: float | None = None) -> float:
        """The delay before retry number ``attempt`` (0 for the first). ``spread`` in [-1, 1]
        picks where in the jitter range it falls; None draws it at random."""
        if spread is None:
            spread = random.uniform(-1.0, 1.0) if self.jitter else 0.0
        base = min(self.first * self.factor ** min(attempt, 100), self.cap)  # no float overflow
        return min(base * (1 + self.jitter * spread), self.cap)

    def delays(self) -> Iterator[float]:
        """The delays, one per retry: ``tries`` of them, or without end."""
        attempt = 0
        while self.tries is None or attempt < self.tries:
            yield self.delay(attempt)
            attempt += 1
