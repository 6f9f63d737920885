"""The survivor's WebSocket: frames in (validated), frames out. See docs/protocol.md."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from hotline_runtime.matrix_sync import SessionGone
from webchat import app_keys, handover
from webchat.chats import LET_GO_MARGIN_SECONDS
from webchat.protocol import (
    MAX_FRAME_BYTES,
    Answer,
    End,
    FrameBudget,
    FrameError,
    Resume,
    Say,
    Start,
    chat_gateway,
    error,
    parse,
)
from webchat.session import ChatSession, ChatUnavailable, SendFailed

log = logging.getLogger(__name__)

FRAMES_PER_WINDOW = 30
WINDOW_SECONDS = 10.0
# The close code after ``displaced`` (4000–4999: the application's own); the page does not reconnect.
DISPLACED_CLOSE_CODE = 4001
_closing: set[asyncio.Task[None]] = set()


async def chat_socket(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    if request.headers.get("Origin") != settings.origin:
        return web.Response(status=403, text="This chat only works from its own page.")
    limits = request.app[app_keys.LIMITS]
    address = limits.key(request)  # in memory only, for the limits; never logged
    if not limits.open_socket(address):
        return web.Response(status=429, text="Too many chat connections from this network. "
                                             "Please close other chat windows, or call the hotline.")
    try:
        return await _serve(request, address)
    finally:
        limits.close_socket(address)


async def _serve(request: web.Request, address: str | None) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    request.app[app_keys.SOCKETS].add(ws)
    page = PageSocket(request.app, ws, address)
    try:
        async for message in ws:
            if page.finished:  # e.g. displaced while waiting: nothing more is handled
                break
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and await page.admit():
                if message.type == WSMsgType.TEXT:
                    await page.on_text(message.data)
                else:
                    await page.send(error("bad_frame", "frames are JSON text"))
            if page.finished:
                break
    finally:
        page.on_socket_closed()
        await ws.close()
    return ws


class PageSocket:
    """One page's WebSocket and the chat it speaks for (the chat itself is a ChatSession)."""

    def __init__(self, app: web.Application, ws: web.WebSocketResponse, address: str | None = None) -> None:
        self.app = app
        self.ws = ws
        self.address = address  # the client's limit key (webchat/limits.py): memory only
        self.settings = app[app_keys.SETTINGS]
        self.chats = app[app_keys.CHATS]
        self.session: ChatSession | None = None
        self.finished = False
        self._budget = FrameBudget(FRAMES_PER_WINDOW, WINDOW_SECONDS)

    async def send(self, frame: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_json(frame)
        if frame.get("type") == "ended":
            self.finished = True

    async def admit(self) -> bool:
        """Whether to handle the next frame from the page (see FrameBudget)."""
        now = asyncio.get_running_loop().time()
        verdict = self._budget.admit(now)
        if verdict == FrameBudget.TELL:
            await self.send({**error("rate_limited", "too many frames: this one and any more until "
                                                     "retry_after are not handled"),
                             "retry_after": self._budget.retry_after(now)})
        return verdict == FrameBudget.TAKE

    async def on_text(self, raw: str) -> None:
        try:
            frame = parse(raw, self.settings.max_message_chars, self.settings.max_message_bytes)
        except FrameError as problem:
            await self.send(problem.frame())
            return
        if self.session is not None and self.session.handed_over:
            return  # the gateway is restarting: the page sends it again after ``resumed``
        if isinstance(frame, Start):
            await self.on_start(frame)
        elif isinstance(frame, Resume):
            await self.on_resume(frame)
        elif self.session is None:
            await self.send(error("not_started", "start or resume a chat first"))
        elif isinstance(frame, Say):
            await self.on_say(frame)
        elif isinstance(frame, End):
            await self.session.end()
        elif isinstance(frame, Answer):
            await self.on_answer(frame)

    async def on_start(self, frame: Start) -> None:
        if self.session is not None:
            await self.send(error("already_started", "this socket has a chat already"))
            return
        if frame.language and frame.language not in self.settings.chat_language_list:
            await self.send(error("bad_frame", "language: not one of the chat languages"))
            return
        status = self.app[app_keys.STATUS].status()
        if not status["accepting"]:
            # Outside opening hours or closed by the program: chats already open continue.
            await self.send({**error("closed", "chat is not taking new chats now"), "status": status})
            self.finished = True
            return
        if not await self.app[app_keys.LIMITS].take_start(self.address):
            log.info("a chat start was refused: too many from one address")
            await self._unavailable("too many chats started from this network; please try again later")
            return
        if not self.chats.reserve():
            await self._unavailable("the gateway is at its limit of open chats")
            return
        # A chat prepared ahead if one is ready (webchat/ready.py), else one prepared now.
        session = self.app[app_keys.READY].take()
        try:
            if session is None:
                session = ChatSession(self.settings, self.app[app_keys.HTTP])
                await session.prepare()
            await session.start(frame.language)
        except BaseException as why:
            self.chats.release()
            if not isinstance(why, ChatUnavailable):
                raise
            log.warning("a chat could not start: %s", why)
            await self._unavailable("chat is not available right now")
            return
        self.chats.add(session)
        self.session = session
        started = {"type": "started", "chat": session.chat_id, "secret": session.secret}
        if self.settings.gateway_name:
            started["gateway"] = self.settings.gateway_name  # the page reconnects with it (docs/scaling.md)
        await self.send(started)
        await self._follow(session, 0)
        log.info("chat started (%d open)", len(self.chats))

    async def _follow(self, session: ChatSession, seen: int) -> None:
        """Send what the page has not seen, in order, then attach for what comes next."""
        while missed := session.page.after(seen):
            for frame in missed:
                await self.send(frame)
                seen = frame["seq"]
        session.page.attach(self.send, self.displaced)  # no await since the last check: nothing slips in between

    async def _unavailable(self, message: str) -> None:
        await self.send(error("unavailable", message))
        self.finished = True

    async def on_resume(self, frame: Resume) -> None:
        if self.session is not None:
            await self.send(error("already_started", "this socket has a chat already"))
            return
        owner = chat_gateway(frame.chat)
        if owner and owner != self.settings.gateway_name:
            # Another gateway holds this chat (the proxy sent the page to the wrong one): never
            # "ended", nor a second copy of it; the page tries again and the proxy sends it on.
            log.warning("a page resumed a chat of another gateway; refused")
            await self.send(error("wrong_gateway", "this chat is held by another gateway; reconnect"))
            self.finished = True
            return
        session = self.chats.find(frame.chat, frame.secret)
        if session is None and frame.state is not None:
            session = await self._restore(frame)
            if self.finished:
                return
        if session is None:
            await self.send({"type": "ended", "seq": 0})
            return
        self.session = session
        # One page at a time: a page still attached (another tab or browser, or this page's own
        # socket that has not noticed it is gone) is told and can no longer send.
        session.page.displace(self.send)
        await self.send({"type": "resumed"})
        await self._follow(session, frame.seen)
        if session.advocate_typing:
            await self.send({"type": "typing", "active": True})
        self.chats.reconnected(session)

    async def _restore(self, frame: Resume) -> ChatSession | None:
        """A chat this gateway does not know, handed over by the gateway before a restart
        (webchat/handover.py): open its sealed state and carry on with it. A state that cannot be
        used is refused (``bad_state``, then ``ended``): the bot closes that chat after its grace."""
        assert frame.state is not None
        try:
            snapshot = handover.unseal(
                frame.state, frame.chat, frame.secret,
                handover.root_key(self.settings.as_token.get_secret_value()),
                now=time.time(), max_age=self.settings.reconnect_grace_seconds + LET_GO_MARGIN_SECONDS)
        except handover.BadState as why:
            log.warning("a handed-over chat was refused: %s", why)
            await self.send(error("bad_state", "the chat's state could not be used; the chat cannot continue"))
            await self.send({"type": "ended", "seq": 0})
            return None
        try:
            session = await self.chats.restore(
                snapshot.chat, snapshot.secret,
                lambda: handover.restore(self.settings, self.app[app_keys.HTTP], snapshot))
        except SessionGone:
            return None  # the chat is over (its account is gone)
        except Exception as why:
            log.warning("a handed-over chat could not continue: %s", type(why).__name__)
            await self._unavailable("chat is not available right now")
            return None
        if session is not None:
            log.info("a chat handed over before a restart continues (%d open)", len(self.chats))
        return session

    async def on_say(self, frame: Say) -> None:
        assert self.session is not None
        try:
            await self.session.say(frame.id, frame.text)
        except SendFailed as why:
            log.warning("a message could not be delivered: %s", why)
            await self.send(error("send_failed", "the message could not be delivered", frame.id))
            return
        await self.send({"type": "ack", "id": frame.id})

    async def on_answer(self, frame: Answer) -> None:
        assert self.session is not None
        try:
            await self.session.answer(frame.question, frame.value)
        except SendFailed as why:
            log.warning("an answer could not be delivered: %s", why)
            await self.send(error("send_failed", "the answer could not be delivered"))
            return
        await self.send({"type": "answered", "question": frame.question})

    def displaced(self) -> None:
        """Another page resumed this chat: this one stops here (its frames are no longer handled)."""
        self.session = None
        self.finished = True
        task = asyncio.ensure_future(self._tell_displaced())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _tell_displaced(self) -> None:
        try:
            if not self.ws.closed:
                await self.ws.send_json({"type": "displaced"})
            await self.ws.close(code=DISPLACED_CLOSE_CODE, message=b"resumed elsewhere")
        except Exception as problem:  # a socket that is already gone: nothing to tell
            log.debug("a displaced page could not be told (%s)", type(problem).__name__)

    def on_socket_closed(self) -> None:
        session = self.session
        if session is not None and session.page.detach(self.send) and not session.ended.is_set():
            self.chats.disconnected(session)
