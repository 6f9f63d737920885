"""The gateway's open chats, by the page's chat id, with the reconnect grace timers."""

from __future__ import annotations

import asyncio
import hmac
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from hotline_runtime.wire import Control
from webchat import handover
from webchat.session import ChatSession

log = logging.getLogger(__name__)

# The bot closes a chat after the grace period; the gateway lets go a little later, in case the
# bot is slow or down (then nothing could be sent anyway).
LET_GO_MARGIN_SECONDS = 30.0


class ChatRegistry:
    def __init__(self, grace_seconds: float, limit: int | None = None) -> None:
        self._grace = grace_seconds
        self._limit = limit
        self._open: dict[str, ChatSession] = {}
        self._opening = 0  # chats being set up: they already hold an account and soon a room
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._every: weakref.WeakSet[ChatSession] = weakref.WeakSet()  # open or still closing
        # Chats handed over by the gateway before a restart (webchat/handover.py): those being
        # restored now, and the ids of every chat this gateway has had, so that a state for a chat
        # that is open here is only a resume, and one for a chat that ended here is refused.
        self._restoring: dict[str, asyncio.Future[ChatSession | None]] = {}
        self._known: set[str] = set()

    def __len__(self) -> int:
        """Chats held, counting those still opening: each already has (or is getting) an account."""
        return len(self._open) + self._opening

    def reserve(self) -> bool:
        """Take a place for a chat about to open; False at the limit. Release it with ``add`` or ``release``.

        Counted from the moment a chat starts opening, not after its seconds-long set-up, so that
        many starts at once cannot each pass the check before any of them is counted.
        """
        if self._limit is not None and len(self) >= self._limit:
            return False
        self._opening += 1
        return True

    def release(self) -> None:
        """A reserved chat did not open."""
        self._opening -= 1

    def add(self, session: ChatSession) -> None:
        """A reserved chat has opened."""
        self._opening -= 1
        self._open[session.chat_id] = session
        self._known.add(session.chat_id)
        self._every.add(session)
        self._spawn(self._forget_when_ended(session))

    def find(self, chat_id: str, secret: str) -> ChatSession | None:
        session = self._open.get(chat_id)
        if session is None or session.ended.is_set():
            return None
        if not hmac.compare_digest(session.secret.encode(), secret.encode()):
            return None
        return session

    async def restore(self, chat_id: str, secret: str,
                      make: Callable[[], Awaitable[ChatSession]]) -> ChatSession | None:
        """A page resumes with a handed-over state: the chat if it is open here (or once ``make``
        has restored it), None if it ended here. ``make`` raises as handover.restore does."""
        pending = self._restoring.get(chat_id)
        if pending is not None:
            await asyncio.shield(pending)
        if chat_id in self._known:
            return self.find(chat_id, secret)
        future: asyncio.Future[ChatSession | None] = asyncio.get_running_loop().create_future()
        self._restoring[chat_id] = future
        self._known.add(chat_id)  # once tried, never again from a state: it is open, or over
        try:
            session = await make()
        except BaseException:
            future.set_result(None)
            raise
        finally:
            self._restoring.pop(chat_id, None)
        self._open[chat_id] = session
        self._every.add(session)
        self._spawn(self._forget_when_ended(session))
        self._spawn(self._signal(session, Control.RECONNECTED))
        future.set_result(session)
        return session

    async def hand_over_all(self, root: bytes) -> None:
        """Shutting down: each chat with a page attached is handed to that page to resume on the
        restarted gateway (handover.hand_over); the others end as before (``end_all``)."""
        sessions = list(self._open.values())
        if not sessions:
            return
        results = await asyncio.gather(*(handover.hand_over(s, root) for s in sessions), return_exceptions=True)
        handed = sum(1 for result in results if result is True)
        log.info("%d of %d open chats handed over to their pages for the restart", handed, len(sessions))

    def disconnected(self, session: ChatSession) -> None:
        """The page's socket closed without "End chat": wait for it to come back."""
        if session.ended.is_set():
            return
        self._spawn(self._signal(session, Control.DISCONNECTED))
        loop = asyncio.get_running_loop()
        self._expiry[session.chat_id] = loop.call_later(
            self._grace + LET_GO_MARGIN_SECONDS, lambda: self._spawn(session.close())
        )

    def reconnected(self, session: ChatSession) -> None:
        timer = self._expiry.pop(session.chat_id, None)
        if timer is not None:
            timer.cancel()
            self._spawn(self._signal(session, Control.RECONNECTED))

    async def _signal(self, session: ChatSession, action: Control) -> None:
        try:
            await session.signal(action)
        except Exception as error:
            log.warning("could not pass a connection change to the bot (%s)", type(error).__name__)

    async def _forget_when_ended(self, session: ChatSession) -> None:
        await session.ended.wait()
        self._open.pop(session.chat_id, None)
        timer = self._expiry.pop(session.chat_id, None)
        if timer is not None:
            timer.cancel()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def end_all(self, timeout: float = 10.0) -> None:
        """Shutting down: every chat ends (its keys are about to be gone)."""
        sessions = list(self._open.values())
        ending = asyncio.gather(*(s.end(wait=True) for s in sessions), return_exceptions=True)
        try:
            await asyncio.wait_for(ending, timeout)
        except TimeoutError:
            log.warning("%d chats could not tell the bot they ended; the bot closes them later", len(sessions))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Every chat's client closed, also those that could not end in time or were still closing.
        await asyncio.gather(*(session.close() for session in list(self._every)), return_exceptions=True)
