"""The erase recipe of docs/privacy.md, as the bot carries it out.

The survivor room has no human client caching it: it is purged at once, without redactions,
and the survivor's account erased, so the survivor's words are off the server within about a
second of the close whatever the chat's length. Case rooms are redacted first (staff clients
cache them and drop redacted content), given a moment for staff clients to receive the
redactions (a purge right after them can leave a "ghost room" with the content in a client
that had not synced yet), then purged. Every erase is retried with capped backoff until done;
a chat's erase is durable through its row (phase CLOSING, resumed by recover()), a handed-on
case room's through a meta row written before it starts (resumed at the next start).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.conversation import Chat, ChatErased, Event
from bot.ids import ChatRef, RoomId
from bot.matrix import BotMatrix
from bot.outbox import Outbox
from bot.settings import BotSettings
from bot.store import PENDING_ERASE, Store
from bot.tasks import Tasks
from hotline_runtime import erase
from hotline_runtime.client_api import ClientApi, ClientApiError
from hotline_runtime.errors import HotlineError, incident_id
from hotline_runtime.retry import Backoff
from hotline_runtime.synapse_admin import SynapseAdmin

log = logging.getLogger(__name__)


class Eraser:
    def __init__(self, settings: BotSettings, store: Store, matrix: BotMatrix, outbox: Outbox, tasks: Tasks,
                 handle: Callable[[Event], Awaitable[None]]) -> None:
        self.settings = settings
        self.store = store
        self.matrix = matrix
        self.outbox = outbox
        self.tasks = tasks
        self.handle = handle  # the end of a chat's erase is an event for the rules (ChatErased)
        self.admin: SynapseAdmin | None = None  # the bot's own token, once logged in
        self.api: ClientApi | None = None  # the client API with the same token (the redactions)
        self._erasing: set[ChatRef] = set()
        self._erasing_rooms: set[RoomId] = set()  # handed-on case rooms being erased

    def erase_chat(self, chat: Chat) -> None:
        """Start erasing a closed chat in the background (once, however often it is asked)."""
        if chat.ref not in self._erasing:
            self._erasing.add(chat.ref)
            self.tasks.spawn(self._erase(chat), f"erase {chat.ref}")

    def erase_case_room(self, room: RoomId) -> None:
        """Start erasing a case room left behind by a transfer."""
        if room not in self._erasing_rooms:
            self._erasing_rooms.add(room)
            self.tasks.spawn(self._erase_handed_on(room), "erase a handed-on case room")

    async def resume_pending(self) -> None:
        for key in await self.store.meta_with_prefix(PENDING_ERASE):
            self.erase_case_room(RoomId(key[len(PENDING_ERASE):]))

    async def _erase(self, chat: Chat) -> None:
        """The erase recipe of docs/privacy.md for a closed chat."""
        try:
            await self.outbox.drain([r for r in (chat.case_room, chat.survivor_room) if r is not None])
            await self._wait_for_gateway(chat)  # the page has been told; the gateway leaves
            await self._until_done(f"erasing chat {chat.ref}", self._erase_survivor_side, chat)
            if chat.case_room is not None:
                await self._until_done(f"erasing the case room of chat {chat.ref}", self._erase_case_room,
                                       chat.case_room)
            log.info("chat %s erased", chat.ref)
            await self.handle(ChatErased(chat.ref))
        finally:
            self._erasing.discard(chat.ref)

    async def _erase_survivor_side(self, chat: Chat) -> None:
        room = chat.survivor_room
        if self.matrix.knows_room(room):
            await self.matrix.leave(room)
        assert self.admin is not None
        await self.admin.delete_room(room)
        self.matrix.forget_room_keys([room])
        await self.admin.deactivate(chat.survivor, erase=True)
        self.matrix.forget_users([chat.survivor])  # its device and trust entries too

    async def _erase_handed_on(self, room: RoomId) -> None:
        """A case room left behind by a transfer: recorded first, so a restart finishes it."""
        key = PENDING_ERASE + room
        await self.store.set_meta(key, "case_room")
        try:
            await self.outbox.drain([room])
            await self._until_done("erasing a handed-on case room", self._erase_case_room, room)
            await self.store.delete_meta(key)
        finally:
            self._erasing_rooms.discard(room)

    async def _erase_case_room(self, room: RoomId) -> None:
        if self.matrix.knows_room(room):
            started = time.monotonic()
            redacted = await self._redact_if_member(room)
            log.info("redacted %d events of a case room in %.1f s; purging it in %.0f s", redacted,
                     time.monotonic() - started, self.settings.erase_redaction_grace_seconds if redacted else 0)
            if redacted:
                await asyncio.sleep(self.settings.erase_redaction_grace_seconds)  # staff clients sync them
            await self.matrix.leave(room)
        assert self.admin is not None
        await self.admin.delete_room(room)
        self.matrix.forget_room_keys([room])

    async def _until_done(self, what: str, step: Any, *args: Any) -> None:
        """Retry a step of an erase with capped backoff until it succeeds (a homeserver that is
        down for hours delays an erase; it never abandons it)."""
        retry = Backoff(1.0, cap=self.settings.erase_retry_max_seconds)
        for attempt, delay in enumerate(retry.delays(), start=1):
            try:
                await step(*args)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.error("incident %s: %s failed (attempt %d, next in %.0f s): %s", incident_id(), what, attempt,
                          delay, error if isinstance(error, HotlineError) else type(error).__name__)
                await asyncio.sleep(delay)

    async def _redact_if_member(self, room: RoomId) -> int:
        """Redact a room's messages; a retry after the bot already left goes straight to the purge.
        Returns how many were redacted."""
        assert self.api is not None
        try:
            return await erase.redact_all(self.api, room)
        except ClientApiError as error:
            if error.errcode != "M_FORBIDDEN":
                raise
            log.info("not redacting a room the bot has already left; the purge removes it")
            return 0

    async def _wait_for_gateway(self, chat: Chat, timeout: float = 10.0) -> None:
        """Give the gateway a moment to read the closing signal and leave before redacting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and chat.survivor in self.matrix.room_members(chat.survivor_room):
            await asyncio.sleep(0.2)
