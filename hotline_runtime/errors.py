"""The hotline's exceptions: matrix-nio returns error objects; the runtime's adapter turns them into these."""

from __future__ import annotations

import secrets
import traceback
from pathlib import Path


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


def where(error: BaseException) -> str:
    """``TypeError at bot/service.py:123 in _relay``: enough to find a bug, never the data.

    Exception messages can quote what was being handled (message text, say), so logs get the
    type and the place only (privacy rule 1).
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return type(error).__name__
    last = frames[-1]
    path = Path(last.filename)
    shown = path.relative_to(_ROOT) if path.is_relative_to(_ROOT) else Path(*path.parts[-2:])
    return f"{type(error).__name__} at {shown.as_posix()}:{last.lineno} in {last.name}"


_ROOT = Path(__file__).resolve().parent.parent
