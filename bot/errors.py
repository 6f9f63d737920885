"""The bot's exceptions: matrix-nio returns error objects; the adapter turns them into these."""

from __future__ import annotations

import secrets


class HotlineError(Exception):
    """Base class."""


class MatrixError(HotlineError):
    """A homeserver request failed."""

    def __init__(self, what: str, status: str | int | None = None, detail: str = "") -> None:
        super().__init__(f"{what} failed ({status}): {detail}" if detail else f"{what} failed ({status})")
        self.what = what
        self.status = status


class EncryptionUnavailable(HotlineError):
    """A message could not be encrypted for the room; it was not sent (never sent in clear)."""


class AdminApiError(MatrixError):
    """The Synapse admin API refused or failed."""


def incident_id() -> str:
    """A short reference that staff can quote and admins can find in the log."""
    return secrets.token_hex(3).upper()
