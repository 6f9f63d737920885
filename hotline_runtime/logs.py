"""Logging for our processes: references and counts only (privacy rule 1).

Third-party loggers are held at WARNING: at lower levels some of them print request URLs,
event contents or tokens.
"""

from __future__ import annotations

import logging
import sys

QUIET = ("nio", "peewee", "aiohttp.access", "aiohttp.server", "asyncio", "aiosqlite")


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
