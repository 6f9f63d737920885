"""Background tasks started through one helper that keeps a reference and logs failures, and the
guard that keeps one bad event from stopping the bot."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hotline_runtime.errors import incident_id, where

log = logging.getLogger(__name__)


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        """Start a background task, keep a reference, log its failure."""
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("background task %s failed: %s", name, type(task.exception()).__name__)

        task.add_done_callback(done)
        return task

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def guarded(handler: Any, *args: Any) -> None:
    """One bad event never stops the bot."""
    try:
        await handler(*args)
    except Exception as error:
        log.error("incident %s: handling an event failed: %s", incident_id(), where(error))
