"""Matrix identifiers as distinct types, and the chat reference."""

from __future__ import annotations

import secrets
from typing import NewType

RoomId = NewType("RoomId", str)
UserId = NewType("UserId", str)
EventId = NewType("EventId", str)
ChatRef = NewType("ChatRef", str)

# No 0/O, 1/I/L, 2/Z, 5/S, 8/B: a reference read aloud or typed on a phone stays unambiguous.
REF_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
REF_LENGTH = 4


def new_ref(taken: set[str] | frozenset[str] = frozenset()) -> ChatRef:
    """A random chat reference such as ``K7Q2`` that is not in ``taken``."""
    while True:
        ref = "".join(secrets.choice(REF_ALPHABET) for _ in range(REF_LENGTH))
        if ref not in taken:
            return ChatRef(ref)


def normalize_ref(text: str) -> ChatRef | None:
    """``k7q2`` → ``K7Q2``; None if it cannot be a reference."""
    ref = text.strip().upper()
    if len(ref) == REF_LENGTH and all(ch in REF_ALPHABET for ch in ref):
        return ChatRef(ref)
    return None


def server_name(user_id: str) -> str:
    return user_id.split(":", 1)[1]
