"""Chats prepared ahead, so that "Start chat" does not wait for an account, a room and the bot.

A prepared chat (``ChatSession.prepare``) has its survivor account, its encrypted survivor room
and the bot in it; the bot has put the rights notice there, which the page gets the moment it
starts the chat. Nobody has started it: the bot shows it to no advocate and counts it nowhere
until the profile arrives (``ChatSession.start``). It carries no message from anyone. Each is
handed to one survivor, once; a chat that ends is erased by the bot like any other.

The gateway keeps ``ready_chats`` of them (0: none; chats are then prepared when a survivor
starts, as they are whenever none is ready). It prepares them one at a time, and only
``REFILL_AFTER_TAKE_SECONDS`` after the last one was taken, so that while many survivors start at
once the homeserver's time goes to their chats. When the gateway stops, each unused one is ended
(the bot erases it); one that a crashed gateway left behind is closed and erased by the bot when
it is ``ready_max_age`` old. The pool is in memory only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import aiohttp

from hotline_runtime.retry import Backoff
from webchat.session import ChatSession, ChatUnavailable, give_up
from webchat.settings import GatewaySettings

log = logging.getLogger(__name__)

# A homeserver that refuses or is down: preparing tries again after 1, 2, 4 … 60 s.
REFILL_RETRY = Backoff(1.0, cap=60.0, jitter=0.1)
REFILL_AFTER_TAKE_SECONDS = 3.0
# Ending the unused ones when the gateway stops: at most this long, then the bot's clock does it.
END_TIMEOUT_SECONDS = 10.0


class ReadyChats:
    def __init__(self, settings: GatewaySettings, http: aiohttp.ClientSession) -> None:
        self.size = settings.ready_chats
        self._settings = settings
        self._http = http
        self._ready: deque[ChatSession] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._taken_at = -REFILL_AFTER_TAKE_SECONDS

    def __len__(self) -> int:
        """Prepared chats ready now."""
        return sum(not session.ended.is_set() for session in self._ready)

    def start(self) -> None:
        if self.size > 0 and self._task is None:
            self._task = asyncio.create_task(self._keep_filled(), name="chats prepared ahead")

    def take(self) -> ChatSession | None:
        """A prepared chat for one survivor, never handed out again; None if none is ready."""
        self._drop_ended()
        self._taken_at = time.monotonic()
        self._wake.set()
        return self._ready.popleft() if self._ready else None

    async def close(self) -> None:
        """Stop preparing; end every prepared chat nobody took (the bot erases them)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        unused, self._ready = list(self._ready), deque()
        if not unused:
            return
        log.info("ending %d unused prepared chats", len(unused))
        ending = asyncio.gather(*(session.end(wait=True) for session in unused), return_exceptions=True)
        try:
            await asyncio.wait_for(ending, END_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("not every unused prepared chat could be ended; the bot closes them later")
        await asyncio.gather(*(session.close() for session in unused), return_exceptions=True)

    async def _rights_notice_in(self, session: ChatSession) -> None:
        """A prepared chat is ready once the bot's rights notice is in it, waiting for the page:
        whatever the bot says after the start then answers the start (``expect_bot``)."""
        try:
            await asyncio.wait_for(session.bot_heard.wait(), self._settings.bot_join_timeout_seconds)
        except TimeoutError:
            await give_up(session)
            raise ChatUnavailable("the bot's rights notice did not come in time") from None
        except asyncio.CancelledError:
            await give_up(session)
            raise

    def _drop_ended(self) -> None:
        """Prepared chats the bot has closed (it does after ``ready_max_age``) are let go."""
        if any(session.ended.is_set() for session in self._ready):
            self._ready = deque(session for session in self._ready if not session.ended.is_set())
            self._wake.set()

    async def _keep_filled(self) -> None:
        failures = 0
        while True:
            self._drop_ended()
            if len(self._ready) >= self.size:
                self._wake.clear()
                # Woken by a take; and now and then, to notice a chat the bot has closed.
                try:
                    await asyncio.wait_for(self._wake.wait(), 60)
                except TimeoutError:
                    pass
                continue
            quiet_in = self._taken_at + REFILL_AFTER_TAKE_SECONDS - time.monotonic()
            if quiet_in > 0:
                await asyncio.sleep(quiet_in)
                continue
            session = ChatSession(self._settings, self._http)
            try:
                await session.prepare()
                await self._rights_notice_in(session)
            except ChatUnavailable as error:
                delay = REFILL_RETRY.delay(failures)
                failures += 1
                log.warning("a chat could not be prepared ahead (%s); trying again in %.0f s", error, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._ready.append(session)
            if len(self._ready) == self.size:
                log.info("%d chats prepared ahead", self.size)
