"""Timed clients for the benchmarks: the survivor and advocate of ``testkit/clients.py`` with an
arrival time on every frame or decrypted message, taken in the receiving callback (never by
polling), and futures to wait on a given text; a ``Team`` of advocates that claims chats.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from typing import Any

import aiohttp
from nio import RoomMessageNotice, RoomMessageText, SyncResponse

from bench.common import now
from hotline.devstack import DevStack
from testkit.clients import Advocate, Survivor, register_user, until


class TimedSurvivor(Survivor):
    """A survivor whose frames carry their arrival time; wait for a text without polling."""

    def __init__(self, page_url: str) -> None:
        super().__init__(page_url)
        self.arrived: dict[str, float] = {}  # message text → arrival time
        self.acked: dict[str, float] = {}  # frame id → ack time
        self.first_at: dict[str, float] = {}  # frame type (or "message:<role>") → first arrival
        self._waiting: dict[str, asyncio.Future[float]] = {}

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            t = now()
            frame = json.loads(message.data)
            self.frames.append(frame)
            kind = frame.get("type", "")
            self.first_at.setdefault(kind, t)
            if kind == "message":
                self.first_at.setdefault(f"message:{frame.get('role')}", t)
                self._resolve(f"type:message:{frame.get('role')}", t)
                self.arrived[frame["text"]] = t
                self._resolve(frame["text"], t)
            elif kind == "ack":
                self.acked[frame["id"]] = t
            self._resolve(f"type:{kind}", t)

    def _resolve(self, key: str, t: float) -> None:
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(t)

    async def wait_text(self, text: str, timeout: float = 30.0) -> float:
        if text in self.arrived:
            return self.arrived[text]
        future = self._waiting.setdefault(text, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def wait_type(self, kind: str, timeout: float = 30.0) -> float:
        if kind in self.first_at:
            return self.first_at[kind]
        future = self._waiting.setdefault(f"type:{kind}", asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def send_text(self, text: str, frame_id: str) -> float:
        """Send a say frame; returns the time just before it left."""
        assert self.ws is not None
        t = now()
        await self.ws.send_json({"type": "say", "id": frame_id, "text": text})
        return t


class TimedAdvocate(Advocate):
    """An advocate (or any plain nio user) whose decrypted messages carry their arrival time.

    It signs in as testkit's Advocate does (a new session, cross-signed like an Element session),
    but long-polls /sync for 30 s instead of 1 s: an idle client then costs Synapse and the driver
    nothing, and new events still wake it at once. A benchmark never signs a session in again."""

    SYNC_TIMEOUT_MS = 30_000
    DEVICE_NAME = "bench client"
    KEEPS_SESSIONS = False

    def __init__(self, homeserver: str, user_id: str, password: str) -> None:
        super().__init__(homeserver, user_id, password)
        self.arrived: dict[str, tuple[str, float]] = {}  # body → (room, time decrypted)
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self.on_text: Any = None  # optional callback(room, body, t)

    async def close(self) -> None:
        """As testkit's, then the session's nio store removed: a benchmark never signs it in again."""
        await super().close()
        shutil.rmtree(self.store, ignore_errors=True)

    async def _on_sync(self, response: SyncResponse) -> None:
        t = now()
        await super()._on_sync(response)
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                if isinstance(event, (RoomMessageText, RoomMessageNotice)):
                    self.arrived[event.body] = (room_id, t)
                    future = self._waiting.pop(event.body, None)
                    if future is not None and not future.done():
                        future.set_result(t)
                    if self.on_text is not None:
                        self.on_text(room_id, event.body, t)

    async def wait_text(self, body: str, timeout: float = 30.0) -> float:
        if body in self.arrived:
            return self.arrived[body][1]
        future = self._waiting.setdefault(body, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def send_text(self, room_id: str, text: str) -> float:
        """``say`` (encrypt + PUT); returns the time just before it started."""
        t = now()
        await self.say(room_id, text)
        return t

    async def know_devices(self, user_id: str, timeout: float = 30.0) -> None:
        """Wait until this client has the devices of ``user_id``: a nio client that sends before
        that shares its Megolm key with none of them and never shares it later."""
        deadline = now() + timeout
        while not list(self.client.device_store.active_user_devices(user_id)):
            if now() > deadline:
                raise TimeoutError(f"{self.client.user_id} never learnt the devices of {user_id}")
            if self.client.should_query_keys:
                await self.client.keys_query()
            await asyncio.sleep(0.2)

    def forget(self, room_id: str) -> None:
        """Drop what was kept for a closed chat (long runs keep memory flat)."""
        self.messages.pop(room_id, None)
        for body in [b for b, (room, _) in self.arrived.items() if room == room_id]:
            del self.arrived[body]


class Team:
    """Advocates that claim chats; a chat's case room is found by the survivor's first message.

    Concurrency-safe: each opening survivor says ``hello <tag>`` and one advocate types ``!claim``
    (the oldest waiting chat); whoever's case room shows ``Survivor: hello <tag>`` holds that chat.
    """

    def __init__(self, advocates: list[TimedAdvocate], per_advocate: int = 1) -> None:
        """Claims go to the first advocate until it has made ``per_advocate`` of them, then to the
        next: as few simulated clients as the chats need (1 = round robin over all of them)."""
        self.advocates = advocates
        self.per_advocate = per_advocate
        self.case_of: dict[str, tuple[TimedAdvocate, str]] = {}
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._next = 0
        for advocate in advocates:
            advocate.on_text = self._watcher(advocate)

    def _watcher(self, advocate: TimedAdvocate) -> Any:
        def on_text(room: str, body: str, t: float) -> None:
            if body.startswith("Survivor: hello "):
                tag = body.removeprefix("Survivor: hello ")
                self.case_of[tag] = (advocate, room)
                future = self._waiting.pop(tag, None)
                if future is not None and not future.done():
                    future.set_result(None)
        return on_text

    @staticmethod
    async def _refused(advocate: TimedAdvocate, dispatch: str, before: int) -> str:
        """The bot's answer when it turns a claim down (limit reached), as soon as it comes."""
        while True:
            for _, _, body in advocate.messages[dispatch][before:]:
                if body.startswith("You already have"):
                    return body
            await asyncio.sleep(0.2)

    async def open_chat(self, stack: DevStack, tag: str, timeout: float = 90) -> tuple[TimedSurvivor, TimedAdvocate, str]:
        survivor = TimedSurvivor(stack.page_url)
        try:
            await survivor.start()
            await survivor.say(f"hello {tag}")
            claimer = self.advocates[(self._next // self.per_advocate) % len(self.advocates)]
            self._next += 1
            future = self._waiting.setdefault(tag, asyncio.get_running_loop().create_future())
            before = len(claimer.messages[stack.accounts.dispatch_room])
            await claimer.say(stack.accounts.dispatch_room, "!claim")
            refused = asyncio.create_task(self._refused(claimer, stack.accounts.dispatch_room, before))
            try:
                if tag not in self.case_of:
                    done, _ = await asyncio.wait({future, refused}, timeout=timeout,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if refused in done:
                        raise RuntimeError(f"the bot refused the claim: {refused.result()}")
                    if future not in done:
                        raise TimeoutError(f"no case room showed hello {tag}")
            finally:
                refused.cancel()
            advocate, case_room = self.case_of[tag]
            await survivor.wait_text("An advocate has joined the chat.", timeout)
        except BaseException:
            # A chat that did not open is ended from the page, so that it is erased too.
            try:
                await survivor.send({"type": "end"})
                await survivor.wait_type("ended", 30)
            except Exception:
                pass
            await survivor.close()
            raise
        return survivor, advocate, case_room


async def close_chat(advocate: TimedAdvocate, survivor: TimedSurvivor, case_room: str, timeout: float = 60) -> None:
    await advocate.say(case_room, "!close")
    try:
        await survivor.wait_type("ended", timeout)
    finally:
        await survivor.close()
        advocate.forget(case_room)


async def floor_pair(stack) -> tuple[TimedAdvocate, TimedAdvocate, str]:
    """Two plain nio users in one encrypted room, Olm and Megolm set up both ways: the one-hop floor
    (``floor_a`` is a server admin only because the hotline's invite policy lets nobody else invite)."""
    password = secrets.token_urlsafe(12)
    a_id = await register_user(stack, "floor_a", password, admin=True)
    b_id = await register_user(stack, "floor_b", password)
    a, b = TimedAdvocate(stack.homeserver.url, a_id, password), TimedAdvocate(stack.homeserver.url, b_id, password)
    await a.login()
    await b.login()
    created = await a.client.room_create(invite=[b_id], initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    room = created.room_id
    await until(lambda: room in b.client.rooms and room in a.client.rooms
                and b_id in a.client.rooms[room].users and b_id not in a.client.rooms[room].invited_users,
                30, "the floor room")
    for sender, receiver in ((a, b), (b, a)):  # Olm and Megolm set-up out of the way
        text = f"warm {secrets.token_hex(4)}"
        await sender.send_text(room, text)
        await receiver.wait_text(text, 30)
    return a, b, room
