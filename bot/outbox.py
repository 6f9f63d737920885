"""The bot's sends, one ordered queue per room, and the sync position that waits for them.

Sends go out through one ordered queue per room, so that chats do not wait for each other:
order matters within a room, not across rooms. The next sync starts while the last one's sends
are still going out: a message that arrives meanwhile is not held up behind them. The position is
saved only when every send queued so far is done, so a crash still replays rather than loses a
relay (transaction ids make the replayed sends harmless).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bot.conversation import Effect
from bot.ids import RoomId
from bot.store import Store
from bot.tasks import Tasks, guarded

OUTBOX_IDLE_SECONDS = 60.0
# The sync position waits for the send queues to be empty; under steady load they may never be,
# so after this long the bot waits for them once (a restart then replays at most this much).
MAX_UNSAVED_SECONDS = 5.0
SYNC_POSITION = "sync_position"


class Outbox:
    def __init__(self, store: Store, tasks: Tasks, perform_and_follow: Callable[[Effect], Awaitable[None]]) -> None:
        self.store = store
        self.tasks = tasks
        self._perform_and_follow = perform_and_follow  # carry out an effect, then handle its events
        self._outboxes: dict[RoomId, asyncio.Queue[Effect]] = {}
        self._in_flight = 0  # effects queued or being sent, over all rooms
        self._handled: str | None = None  # the newest sync position whose events are all handled
        self._saved: str | None = None
        self._saved_at = time.monotonic()
        self._saving = asyncio.Lock()

    async def position(self) -> str | None:
        """The saved sync position (None before the very first sync)."""
        return await self.store.get_meta(SYNC_POSITION)

    def put(self, room: RoomId, effect: Effect) -> None:
        self._in_flight += 1
        self._queue(room).put_nowait(effect)

    def _queue(self, room: RoomId) -> asyncio.Queue[Effect]:
        queue = self._outboxes.get(room)
        if queue is None:
            queue = self._outboxes[room] = asyncio.Queue()
            self.tasks.spawn(self._send_worker(room, queue), "room sender")
        return queue

    async def _send_worker(self, room: RoomId, queue: asyncio.Queue[Effect]) -> None:
        while True:
            try:
                effect = await asyncio.wait_for(queue.get(), OUTBOX_IDLE_SECONDS)
            except TimeoutError:
                if queue.empty():  # no await between this check and the removal
                    del self._outboxes[room]
                    return
                continue
            try:
                await self._perform_and_follow(effect)
            finally:
                self._in_flight -= 1
                queue.task_done()
            await guarded(self._save_if_idle)  # a failed save must not stop this room's sends

    async def drain(self, rooms: list[RoomId] | None = None) -> None:
        """Wait until everything queued for these rooms (or all rooms) is sent."""
        queues = [q for r, q in self._outboxes.items() if rooms is None or r in rooms]
        await asyncio.gather(*(q.join() for q in queues))

    async def handled_up_to(self, position: str) -> None:
        """Every event of the sync up to this position is handled (its sends may still be queued)."""
        self._handled = position
        if self._in_flight and time.monotonic() - self._saved_at > MAX_UNSAVED_SECONDS:
            await self.drain()
        await self._save_if_idle()

    async def _save_if_idle(self) -> None:
        async with self._saving:  # one write at a time, so an older position never lands last
            position = self._handled
            if self._in_flight or position is None or position == self._saved:
                return
            await self.store.set_meta(SYNC_POSITION, position)
            self._saved, self._saved_at = position, time.monotonic()
