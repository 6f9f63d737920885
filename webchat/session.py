"""One chat's ephemeral Matrix account, held in memory only: the gateway's side of one chat.

A ``ChatSession`` registers a survivor account in the gateway's application-service namespace,
logs in one device whose keys live in an
in-memory store, creates the encrypted survivor room with no name or topic, invites the bot and
waits for it (the steps are in webchat/new_chat.py). It forwards the survivor's text to the
room and the bot's messages to whichever WebSocket is attached, keeping what the page has not
seen (webchat/page_frames.py) so that a page that reconnects misses nothing. When the chat ends
the client and its keys are dropped; nothing about a chat is ever written to disk. Handing a chat
over across a gateway restart, and taking one back, is in webchat/handover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    RoomCreateError,
    RoomMessageNotice,
    RoomMessageText,
    SyncResponse,
    TypingNoticeEvent,
    UnknownEvent,
)

from hotline_runtime.e2ee import send_encrypted, sending_device, share_room_key
from hotline_runtime.errors import EncryptionUnavailable, MatrixError
from hotline_runtime.matrix_sync import SessionGone, sync_loop, without_own_events
from hotline_runtime.retry import Backoff
from hotline_runtime.wire import CONTROL_EVENT, ROLE_FIELD, Control, AskQuestion, Role
from webchat.bot_identity import PinnedBot
from webchat.new_chat import ChatUnavailable, create_room, open_account, prepare_keys
from webchat.page_frames import PageFrames
from webchat.protocol import error as error_frame, new_chat_id
from webchat.settings import GatewaySettings

log = logging.getLogger(__name__)

# Telling the bot that the survivor ended the chat: eight tries, 1 s apart at first, at most 30 s.
END_SIGNAL_RETRY = Backoff(1.0, cap=30.0, jitter=0.1, tries=7)
GIVE_UP_SECONDS = 5.0


class SendFailed(Exception):
    """A message could not be delivered encrypted; nothing was sent in clear."""


@contextlib.asynccontextmanager
async def closed_on_failure(session: ChatSession) -> AsyncIterator[None]:
    """A chat that could not be prepared or started is given up. ChatUnavailable and a cancel (the
    gateway is stopping) go on as they are; anything else becomes ChatUnavailable."""
    try:
        yield
    except (ChatUnavailable, asyncio.CancelledError):
        await give_up(session)
        raise
    except Exception as error:
        await give_up(session)
        raise ChatUnavailable(type(error).__name__) from error


async def expect_bot(session: ChatSession) -> None:
    """A started chat in which the bot says nothing within ``bot_join_timeout_seconds`` (it is
    down or stuck; a chat prepared ahead may have been ready since before): the page is told chat
    is unavailable, with the hotline number, as when a chat cannot start, and the chat is given up."""
    try:
        await asyncio.wait_for(session.bot_heard.wait(), session.settings.bot_join_timeout_seconds)
    except TimeoutError:
        if session.ended.is_set():
            return
        log.warning("the bot did not answer a chat that started; the survivor is told chat is unavailable")
        await session.push(error_frame("unavailable", "chat is not available right now"))
        await give_up(session)


async def give_up(session: ChatSession) -> None:
    """Close a chat that could not be prepared, could not start, or got no answer from the bot.
    If its room exists, the bot is told it ended first (for at most GIVE_UP_SECONDS), so that it
    erases the chat as soon as it can rather than after a grace period or ``ready_max_age``."""
    if session.room_id is not None and session.client is not None and not session.ended.is_set():
        try:
            await asyncio.wait_for(session.signal(Control.END), GIVE_UP_SECONDS)
        except Exception as error:
            log.info("could not tell the bot that a chat nobody started is given up (%s)", type(error).__name__)
    await session.close()


class ChatSession:
    def __init__(self, settings: GatewaySettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._http = http
        # The page knows the chat by this random id, never by the Matrix account.
        self.chat_id = new_chat_id(settings.gateway_name, secrets.token_urlsafe(16))
        self.secret = secrets.token_urlsafe(32)
        self.client: AsyncClient | None = None
        self.room_id: str | None = None
        self.ended = asyncio.Event()
        self.page = PageFrames()  # what the page is sent, and which page is attached
        self.delivered: set[str] = set()  # frame ids of the survivor's messages delivered
        self._sending: dict[str, asyncio.Future[None]] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self.bot_joined = asyncio.Event()
        self.bot_heard = asyncio.Event()  # the bot sent something since the start (expect_bot)
        self._bot = PinnedBot(settings.bot_user_id, settings.bot_master_key)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.send_lock = asyncio.Lock()  # held for good once a chat is handed over
        self._closing: asyncio.Future[None] | None = None
        self.advocate_typing = False
        # Handing over across a restart (webchat/handover.py): the sync position after the last
        # response handled in full, and a lock that keeps a stop from cutting a response in half.
        self._position: str | None = None
        self._handling = asyncio.Lock()
        self.handed_over = False

    # ------------------------------------------------------------------ set-up

    async def prepare(self) -> None:
        """Account, device, room, the bot joined: a chat nobody has started yet (the bot shows
        it to no one until ``start``; webchat/ready.py keeps a few prepared ahead). Raises
        ChatUnavailable; cleans up after itself."""
        async with closed_on_failure(self):
            # A new account, registered with notifications off. Its device keys go up while the
            # room is made, and meanwhile the bot's devices are fetched, decided and given an Olm
            # session. The sync starts once the room exists, so that it does not wake up for each
            # of the room's first events while Synapse is still creating them.
            client = await open_account(self.settings, self._http)
            preparing = asyncio.ensure_future(prepare_keys(client, self._bot, self._http, self.settings.homeserver))
            self.client = client
            try:
                response = await create_room(client, self.settings.bot_user_id)
            finally:
                await asyncio.gather(preparing, return_exceptions=True)
            if isinstance(response, RoomCreateError):
                raise ChatUnavailable(f"room create refused ({response.status_code})")
            if preparing.exception() is not None:
                raise ChatUnavailable("the new account could not be set up") from preparing.exception()
            self.room_id = response.room_id
            self.start_sync()
            try:
                await asyncio.wait_for(self.bot_joined.wait(), self.settings.bot_join_timeout_seconds)
            except TimeoutError:
                raise ChatUnavailable("the bot did not join in time") from None
            try:  # the room key to the bot's devices now: the first send is then the event only
                await share_room_key(client, self.room_id, trust=self._apply_trust, must_read=self._is_bot)
            except (EncryptionUnavailable, MatrixError) as error:
                log.info("the room key was not shared ahead (%s); the first send shares it", error)

    async def start(self, language: str = "") -> None:
        """The survivor starts this prepared chat: the profile, with the language ("" if not
        given) that the bot shows in the dispatch alert, is sent once, encrypted, before the page
        hears "started"; it is what tells the bot the chat has started. Raises ChatUnavailable."""
        async with closed_on_failure(self):
            if self.ended.is_set():
                raise ChatUnavailable("the chat ended before it started")
            self.bot_heard.clear()
            try:
                await self.send_event(CONTROL_EVENT, {"action": str(Control.PROFILE), "language": language}, None)
            except SendFailed as failure:
                raise ChatUnavailable(f"the profile could not be sent encrypted ({failure})") from None
            self._spawn(expect_bot(self))

    def start_sync(self, since: str | None = None) -> None:
        """Sync from ``since`` (a position the chat was handed over at), or from now."""
        self._position = since
        self._sync_task = asyncio.create_task(self._sync(since), name="chat sync")

    async def stop_sync(self) -> str | None:
        """Stop the sync between two responses, never in the middle of one: the position after
        the last response handled in full (None if none was, or if there is no sync)."""
        task = self._sync_task
        if task is None:
            return None
        async with self._handling:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return self._position

    async def cancel_sync(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)

    async def _sync(self, since: str | None = None) -> None:
        assert self.client is not None

        async def handle(response: SyncResponse) -> None:
            async with self._handling:  # a hand-over waits for a response to be handled in full
                await self._on_sync(response)
                self._position = response.next_batch

        try:
            # The survivor's own messages are not read back: no /sync answer for each of them.
            await sync_loop(self.client, handle, since=since, sync_filter=without_own_events(self.client.user_id))
        except SessionGone:
            await self._closed_by_hotline()

    # ------------------------------------------------------------------ from the room

    async def _on_sync(self, response: SyncResponse) -> None:
        if self.room_id is None or self.room_id not in response.rooms.join:
            return
        assert self.client is not None
        room = self.client.rooms.get(self.room_id)
        if room is not None:
            room.members_synced = True  # the sync's state holds every member (members are not lazy-loaded)
        if room is not None and self.settings.bot_user_id in room.users \
                and self.settings.bot_user_id not in room.invited_users:
            self.bot_joined.set()
        joined = response.rooms.join[self.room_id]
        for event in joined.ephemeral:
            if isinstance(event, TypingNoticeEvent):
                # The bot types in the survivor room while an advocate types in the case room.
                typing = self.settings.bot_user_id in event.users
                if typing != self.advocate_typing:
                    self.advocate_typing = typing
                    await self.tell({"type": "typing", "active": typing})
        for event in joined.timeline.events:
            if getattr(event, "sender", None) != self.settings.bot_user_id:
                continue
            if not getattr(event, "decrypted", False):
                continue  # only what the bot sent end-to-end encrypted reaches the page
            if not await self._from_pinned_bot(event):
                continue  # and only from the bot's own devices
            self.bot_heard.set()
            if isinstance(event, (RoomMessageText, RoomMessageNotice)):
                role = event.source.get("content", {}).get(ROLE_FIELD)
                role = role if role in Role.__members__.values() else Role.HOTLINE
                await self.push({"type": "message", "role": str(role), "text": event.body})
            elif isinstance(event, UnknownEvent) and event.type == CONTROL_EVENT:
                content = event.source.get("content", {})
                if content.get("action") == Control.CLOSED:
                    await self._closed_by_hotline()
                elif content.get("action") == Control.ASK and content.get("question") in AskQuestion.__members__.values():
                    await self.push({"type": "ask", "question": content["question"]})

    async def push(self, frame: dict[str, Any]) -> None:
        """A frame the page must see, kept for a page that reconnects."""
        await self.page.push(frame)

    async def tell(self, frame: dict[str, Any]) -> None:
        """A passing frame (no seq, not kept for a reconnecting page): only while the chat is open."""
        if not self.ended.is_set():
            await self.page.tell(frame)

    async def _closed_by_hotline(self) -> None:
        if self.ended.is_set():
            return
        await self.push({"type": "ended"})
        self.ended.set()
        self._spawn(self.close())

    # ------------------------------------------------------------------ from the page

    async def say(self, frame_id: str, text: str) -> None:
        """Deliver one survivor message exactly once per frame id. Raises SendFailed."""
        if frame_id in self.delivered:
            return
        pending = self._sending.get(frame_id)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sending[frame_id] = future
        try:
            # The transaction id makes a repeat of the same frame id a no-op on the homeserver.
            txn = "say-" + hashlib.sha256(frame_id.encode()).hexdigest()[:32]
            await self.send_event("m.room.message", {"msgtype": "m.text", "body": text}, txn)
            self.delivered.add(frame_id)
            future.set_result(None)
        except BaseException as error:
            future.set_exception(SendFailed(str(error)))
            future.exception()  # retrieved: waiting duplicates get it, nobody else must
            raise SendFailed(type(error).__name__) from error
        finally:
            self._sending.pop(frame_id, None)

    async def answer(self, question: str, value: str) -> None:
        """The survivor's answer to the bot's question (a code word goes only this way). Raises SendFailed."""
        await self.send_event(CONTROL_EVENT, {"action": str(Control.ANSWER), "question": question, "value": value},
                              None)

    async def signal(self, action: Control) -> None:
        await self.send_event(CONTROL_EVENT, {"action": str(action)}, None, after_end=action is Control.END)

    async def send_event(self, event_type: str, content: dict[str, Any], txn_id: str | None,
                         *, after_end: bool = False) -> None:
        client, room_id = self.client, self.room_id
        if client is None or room_id is None or (self.ended.is_set() and not after_end):
            raise SendFailed("the chat is over")
        async with self.send_lock:
            try:
                # The bot's devices must be able to read it: their Olm sessions are made sure of.
                await send_encrypted(client, room_id, content, event_type=event_type, txn_id=txn_id,
                                     trust=self._apply_trust, must_read=self._is_bot)
            except (EncryptionUnavailable, MatrixError) as error:
                raise SendFailed(str(error)) from error

    def _is_bot(self, user_id: str) -> bool:
        return user_id == self.settings.bot_user_id

    async def _apply_trust(self, users: list[str]) -> None:
        """Keys go to the bot's devices signed by its pinned identity only; any other device is held back."""
        client = self.client
        assert client is not None
        if not await self._bot.decide_until_trusted(client, self._http, self.settings.homeserver, users):
            raise EncryptionUnavailable("no device of the bot is signed by its pinned identity")

    async def _from_pinned_bot(self, event: Any) -> bool:
        """Whether a decrypted event came from a bot device signed by the pinned identity."""
        client = self.client
        assert client is not None and self.room_id is not None
        device = sending_device(client, self.room_id, event)
        if device is None:  # a device the gateway has not fetched the keys of yet
            client.olm.users_for_key_query.add(self.settings.bot_user_id)
            await client.keys_query()
            device = sending_device(client, self.room_id, event)
        if device is None:
            log.warning("ignored an event from a device of the bot account that is not known")
            return False
        await self._bot.decide(client, self._http, self.settings.homeserver, [self.settings.bot_user_id])
        return bool(client.olm.is_device_verified(device))

    async def end(self, *, wait: bool = False) -> None:
        """The survivor ended the chat: tell the page, tell the bot (retrying), let go."""
        if self.ended.is_set():
            return
        self.ended.set()
        await self.push({"type": "ended"})
        if wait:
            await self._signal_end_then_close()
        else:
            self._spawn(self._signal_end_then_close())

    async def _signal_end_then_close(self) -> None:
        for delay in (*END_SIGNAL_RETRY.delays(), None):
            try:
                await self.signal(Control.END)
                break
            except Exception as error:
                if delay is None:
                    log.warning("could not tell the bot that a chat ended (%s); it closes the chat later",
                                type(error).__name__)
                    break
                log.warning("could not tell the bot that a chat ended (%s); retrying", type(error).__name__)
                await asyncio.sleep(delay)
        await self.close()

    # ------------------------------------------------------------------ the end

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop syncing, leave, drop the client and with it every key of this chat.

        Runs once, in a task of its own that a caller's cancellation does not stop (a gateway
        shutting down awaits it again): the client's connections are always closed."""
        self.ended.set()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        client, self.client = self.client, None
        await self.cancel_sync()
        if client is not None:
            try:
                if self.room_id is not None:
                    await asyncio.wait_for(client.room_leave(self.room_id), 5)
            except Exception:
                pass  # the bot deletes the room either way
            finally:
                await client.close()
        self.page.clear()
        self.delivered.clear()

    def let_go(self) -> AsyncClient | None:
        """Drop the client without logging out or leaving the room: the chat goes on elsewhere, or
        the bot closes it (webchat/handover.py). Closing afterwards does nothing more; the caller
        closes the returned client's connections."""
        client, self.client = self.client, None
        self._closing = asyncio.get_running_loop().create_future()
        self._closing.set_result(None)
        return client
