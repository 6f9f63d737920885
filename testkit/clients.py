"""Test helpers: a polling wait, a survivor on a real WebSocket, an advocate on a real nio client."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from nio import (
    InviteMemberEvent,
    LoginResponse,
    MegolmEvent,
    RoomMessageNotice,
    RoomMessageText,
    SyncResponse,
)

from bot.routing_view import RoutingView
from hotline_runtime.cross_signing import Identity, KeysApi
from hotline.devstack import DevStack
from hotline.homeserver import EmbeddedHomeserver
from hotline_runtime.matrix_sync import client_config, sync_loop
from hotline_runtime.nio_client import HotlineClient
from webchat.settings import GatewaySettings


async def until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy (Complement's MustSyncUntil, simplified)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0, what: str = "condition") -> Any:
    """``until`` for a check that must ask something over the network."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)
    return value


class Survivor:
    """The page's side of the protocol, over a real WebSocket."""

    def __init__(self, page_url: str) -> None:
        self.page_url = page_url
        self.frames: list[dict[str, Any]] = []
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.chat: str | None = None
        self.secret: str | None = None
        # The chat, sealed by a gateway that is restarting (``restarting``): kept, as the page keeps
        # it in a variable, until a restarted gateway has answered ``resumed``.
        self.state: str | None = None
        # With several gateways, the one holding the chat (``started``): later sockets go to it.
        self.gateway: str | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.http = self.http or aiohttp.ClientSession()
        origin = self.page_url.rstrip("/")
        query = f"?gateway={self.gateway}" if self.gateway and self.chat else ""
        self.ws = await self.http.ws_connect(self.page_url + "ws" + query, headers={"Origin": origin})
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                self.frames.append(frame)
                if frame.get("type") == "restarting" and isinstance(frame.get("state"), str):
                    self.state = frame["state"]
                elif frame.get("type") == "resumed":
                    self.state = None

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(frame)

    async def start(self) -> None:
        await self.connect()
        await self.send({"type": "start"})
        started = await until(lambda: self.first("started"), 30, "started")
        self.chat, self.secret, self.gateway = started["chat"], started["secret"], started.get("gateway")

    async def say(self, text: str, frame_id: str | None = None) -> str:
        frame_id = frame_id or secrets.token_hex(8)
        await self.send({"type": "say", "id": frame_id, "text": text})
        await until(lambda: any(f.get("type") == "ack" and f.get("id") == frame_id for f in self.frames),
                    20, "ack")
        return frame_id

    async def drop(self) -> None:
        """The connection goes away without "End chat" (a phone losing signal)."""
        assert self.ws is not None
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def resume(self, state: str | None = None) -> None:
        """Resume the chat, with the state a restarting gateway handed over if there is one
        (``state`` to send another, e.g. a tampered one)."""
        await self.connect()
        frame: dict[str, Any] = {"type": "resume", "chat": self.chat, "secret": self.secret, "seen": self.seen}
        if state or self.state:
            frame["state"] = state or self.state
        await self.send(frame)

    async def reconnect(self, timeout: float = 60.0, state: str | None = None) -> None:
        """As the page does after a dropped connection: try again with back-off (1, 2, 4… s)
        until the gateway answers, then resume."""
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + timeout, 1.0
        while True:
            try:
                await self.resume(state)
                return
            except aiohttp.ClientError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    @property
    def seen(self) -> int:
        return max((f.get("seq", 0) for f in self.frames), default=0)

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("type") == kind), None)

    def texts(self, role: str | None = None) -> list[str]:
        return [f["text"] for f in self.frames
                if f.get("type") == "message" and (role is None or f["role"] == role)]

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()


_identities: dict[tuple[str, str], Identity] = {}  # (homeserver, user) → that user's cross-signing keys


async def cross_sign(homeserver: str, user_id: str, password: str, token: str, device_id: str) -> None:
    """What Element does at sign-in: the account's cross-signing identity (made at the first
    sign-in, then kept like a recovery key) signs this new session."""
    async with aiohttp.ClientSession() as http:
        api = KeysApi(http, homeserver, token)
        identity = _identities.get((homeserver, user_id))
        if identity is None:
            identity = _identities[(homeserver, user_id)] = Identity.generate(user_id)
            await api.upload_identity(identity, password)
        assert await api.sign_device(identity, device_id)


class Advocate:
    """A staff member on a real, encrypting nio client that accepts invites. Its session is
    cross-signed like an Element session, unless ``cross_signed=False`` (an unverified session).

    Like a person at work, a staff account keeps its cross-signed sessions: ``login`` takes up one
    this account left signed in (``close`` hands it back) and signs in anew only when none is free;
    an unverified session is always a new one. The homeserver's login limits are the ones it ships
    with, made for people, not for a test that signs in once per test. What the session saw before
    this login is skipped: ``messages`` holds what happened after it, as on a session just signed in.
    """

    SYNC_TIMEOUT_MS = 1000  # how long one /sync waits for news
    DEVICE_NAME = "test client"
    KEEPS_SESSIONS = True  # ``close`` hands a cross-signed session back for the account's next login

    def __init__(self, homeserver: str, user_id: str, password: str, *, cross_signed: bool = True) -> None:
        self.homeserver = homeserver
        self.user_id = user_id
        self.cross_signed = cross_signed
        self.store = ""
        self.client = HotlineClient(homeserver, user_id, config=client_config())
        self.password = password
        self.messages: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # room → (sender, type, body)
        self.left: set[str] = set()
        self.unreadable: dict[str, list[str]] = defaultdict(list)  # room → ids of events it could not decrypt
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()

    async def login(self) -> None:
        free = _free_sessions[(self.homeserver, self.user_id)] if self.cross_signed and self.KEEPS_SESSIONS else []
        since = None
        if free:
            # On from where the session's last user stopped (with the rooms' full state): a fresh
            # initial sync of the same device could be Synapse's cached answer, minutes old.
            device_id, token, self.store, since = free.pop()
            self.client = HotlineClient(self.homeserver, self.user_id, store_path=self.store, config=client_config())
            self.client.restore_login(self.user_id, device_id, token)
        else:
            self.store = tempfile.mkdtemp(prefix="advocate-store-")
            self.client = HotlineClient(self.homeserver, self.user_id, store_path=self.store, config=client_config())
            response = await self.client.login(self.password, device_name=self.DEVICE_NAME)
            assert isinstance(response, LoginResponse), response
            if self.cross_signed:
                await self.client.keys_upload()
                await cross_sign(self.homeserver, self.client.user_id, self.password, response.access_token,
                                 response.device_id)
        self._task = asyncio.create_task(sync_loop(self.client, self._on_sync, since=since,
                                                   timeout_ms=self.SYNC_TIMEOUT_MS))
        await asyncio.wait_for(self._caught_up.wait(), 30)

    async def _on_sync(self, response: SyncResponse) -> None:
        for room_id, info in response.rooms.invite.items():
            if any(isinstance(e, InviteMemberEvent) and e.membership == "invite" for e in info.invite_state):
                await self.client.join(room_id)
        for room_id, info in response.rooms.join.items():
            if not self._caught_up.is_set():
                continue  # history from before this login
            for event in info.timeline.events:
                if isinstance(event, (RoomMessageText, RoomMessageNotice)):
                    kind = "notice" if isinstance(event, RoomMessageNotice) else "text"
                    self.messages[room_id].append((event.sender, kind, event.body))
                elif isinstance(event, MegolmEvent):
                    self.unreadable[room_id].append(event.event_id)
        for room_id in response.rooms.leave:
            self.left.add(room_id)
        self._caught_up.set()

    async def say(self, room_id: str, text: str) -> None:
        await until(lambda: room_id in self.client.rooms, 20, "the room in the advocate's client")
        response = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": text},
            ignore_unverified_devices=True,  # the test advocate trusts the bot; staff policy is the bot's
        )
        assert hasattr(response, "event_id"), response

    def bodies(self, room_id: str) -> list[str]:
        return [body for _, _, body in self.messages[room_id]]

    def find_room_with(self, text: str) -> str | None:
        return next((room for room, items in self.messages.items()
                     if any(text in body for _, _, body in items)), None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            if self.KEEPS_SESSIONS and self.cross_signed and self.client.access_token and self.client.next_batch:
                _free_sessions[(self.homeserver, self.user_id)].append(
                    (self.client.device_id, self.client.access_token, self.store, self.client.next_batch))
        await self.client.close()


# (homeserver, user id) → cross-signed sessions signed in and not in use: (device id, access token,
# nio store, the sync position where the last user stopped).
_free_sessions: dict[tuple[str, str], list[tuple[str, str, str, str]]] = defaultdict(list)


async def login(stack: DevStack, account: Any) -> Advocate:
    """A staff member of a stack, signed in (on a session of theirs not in use) and syncing."""
    client = Advocate(stack.homeserver.url, account.user_id, account.password)
    await client.login()
    return client


def homeserver_rows(homeserver: EmbeddedHomeserver, room_ids: list[str]) -> dict[str, int]:
    """Rows that still name these rooms in Synapse's tables that hold events and membership."""
    marks = ",".join("?" for _ in room_ids)
    return {
        table: homeserver.query(f"SELECT COUNT(*) FROM {table} WHERE room_id IN ({marks})", room_ids)[0][0]
        for table in ("events", "event_json", "room_memberships", "rooms")
    }


def user_deactivated(homeserver: EmbeddedHomeserver, user_id: str) -> bool:
    rows = homeserver.query("SELECT deactivated FROM users WHERE name = ?", [user_id])
    return bool(rows and rows[0][0])


async def new_alert(stack: DevStack, advocate: Advocate, before: int) -> str:
    """The ref of the first dispatch alert after the first ``before`` ones."""
    alerts = await until(lambda: alerts_in(stack, advocate)[before:], 30, "the dispatch alert")
    ref = re.search(r"ref (\w{4})", alerts[0]).group(1)
    remember(stack, ref)
    return ref


def alerts_in(stack: DevStack, advocate: Advocate) -> list[str]:
    return [b for b in advocate.bodies(stack.accounts.dispatch_room) if b.startswith("Chat waiting")]


async def claim_new_chat(stack: DevStack, advocate: Advocate, survivor: Survivor) -> tuple[str, str]:
    """Start a chat on the page, claim it from the dispatch room; returns (ref, case room)."""
    dispatch = stack.accounts.dispatch_room
    before = len(alerts_in(stack, advocate))
    await survivor.start()
    ref = await new_alert(stack, advocate, before)
    await advocate.say(dispatch, f"!claim {ref}")
    case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "the case room")
    return ref, case_room


def routing(stack: DevStack) -> RoutingView:
    """The bot's routing database, read-only (``with routing(stack) as view: ...``)."""
    return RoutingView.of(stack.root / "bot")


def open_chat(stack: DevStack, ref: str) -> tuple[str, str]:
    """(survivor room, survivor account) of an open chat, from the bot's routing database."""
    with routing(stack) as view:
        chat = view.chat(ref)
    assert chat is not None, f"chat {ref} is not open"
    return chat.survivor_room, chat.survivor


def chat_row_exists(stack: DevStack, ref: str) -> bool:
    with routing(stack) as view:
        return view.chat(ref) is not None


def open_chat_count(stack: DevStack) -> int:
    """Chats started and not erased yet (not those prepared ahead that nobody has started)."""
    with routing(stack) as view:
        return view.chat_count()


def ready_chats(stack: DevStack) -> dict[str, str]:
    """Survivor room → survivor account of each chat prepared ahead that nobody has started."""
    with routing(stack) as view:
        return view.ready_chats()


async def all_prepared(stack: DevStack, timeout: float = 120, settled: float = 3.0) -> None:
    """Until the stack's gateway has all its chats prepared ahead (``ready_chats``) and the bot's
    list of them has stopped changing for ``settled`` seconds, so that counts taken after this move
    only by what a test does. (Chats another gateway left ready can make up the number while the
    bot, just restarted by an earlier test, is still taking in this gateway's.)"""
    each = int(stack.settings.get("ready_chats", GatewaySettings.model_fields["ready_chats"].default))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: frozenset[str] | None = None
    since = loop.time()
    while True:
        now = frozenset(ready_chats(stack))
        if now != seen:
            seen, since = now, loop.time()
        elif len(now) >= each * stack.gateways and loop.time() - since >= settled:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for the chats prepared ahead")
        await asyncio.sleep(0.2)


def bot_meta(stack: DevStack, key: str) -> str | None:
    """One of the bot's own values (``device_id``, ``access_token``…) in its routing database."""
    with routing(stack) as view:
        return view.meta(key)


ERASED_ROWS = {"events": 0, "event_json": 0, "room_memberships": 0, "rooms": 0}
_rooms_of: dict[str, tuple[str, str]] = {}


async def assert_erased(stack: DevStack, ref: str, case_room: str | None) -> None:
    survivor_room, survivor_user = _rooms_of[ref]
    await until(lambda: not chat_row_exists(stack, ref), 60, "the bot to erase the chat")
    rooms = [survivor_room] + ([case_room] if case_room else [])
    assert homeserver_rows(stack.homeserver, rooms) == ERASED_ROWS
    assert user_deactivated(stack.homeserver, survivor_user)
    assert bot_room_keys(stack, rooms) == 0
    assert bot_crypto_mentions(stack.root / "bot", survivor_user) == []
    # Synapse's statistics catch up in the background (on PostgreSQL a moment after the purge).
    marks = ",".join("?" for _ in rooms)
    await until(lambda: stack.homeserver.query(f"SELECT COUNT(*) FROM room_stats_state WHERE room_id IN ({marks})",
                                               rooms)[0][0] == 0, 30, "room statistics gone after the purge")


def bot_crypto_mentions(data_dir: Any, user_id: str) -> list[str]:
    """Where the bot's crypto store still names this account: its device-key and tracked-user
    rows, and its trust files (``*.trusted_devices``, ``*.blacklisted_devices``, ``*.ignored_devices``)."""
    found = []
    for database in (data_dir / "crypto").glob("*.db"):
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in {"devicekeys", "trackedusers"} & tables:
                if db.execute(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", (user_id,)).fetchone()[0]:
                    found.append(f"{database.name}:{table}")
    for path in (data_dir / "crypto").glob("*_devices"):
        if user_id in path.read_text():
            found.append(path.name)
    return found


def bot_room_keys(stack: DevStack, room_ids: list[str]) -> int:
    """Megolm sessions for these rooms left in the bot's crypto store."""
    total = 0
    for database in (stack.root / "bot" / "crypto").glob("*.db"):
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            placeholders = ",".join("?" for _ in room_ids)
            total += db.execute(f"SELECT COUNT(*) FROM megolminboundsessions WHERE room_id IN ({placeholders})",
                                room_ids).fetchone()[0]
    return total


def remember(stack: DevStack, ref: str) -> None:
    _rooms_of[ref] = open_chat(stack, ref)




def alerted_refs(bodies: list[str]) -> list[str]:
    """Every ref announced in these dispatch bodies, alone ("Chat waiting · ref K7Q3 …") or grouped
    ("3 chats waiting (longest 1 min) · refs K7Q3, M4N6 (es), P2R8 · …"), in order."""
    refs: list[str] = []
    for body in bodies:
        if body.startswith("Chat waiting"):
            refs.append(re.search(r"ref (\w{4})", body).group(1))
        elif re.match(r"\d+ chats waiting", body):
            listed = re.search(r"· refs (.*?) ·", body).group(1)
            refs += re.findall(r"\b([A-Z0-9]{4})\b(?! more)", listed)
    return refs


async def register_user(stack: DevStack, localpart: str, password: str, *, admin: bool = False) -> str:
    """A plain account through Synapse's shared-secret registration; returns its user id (server
    admins may invite anyone: the hotline's invite policy allows no one else)."""
    from hotline_runtime.synapse_admin import SynapseAdmin

    secret = stack.homeserver.secrets()["registration_shared_secret"]
    async with aiohttp.ClientSession() as http:
        data = await SynapseAdmin(http, stack.homeserver.url, None).register(secret, localpart, password, admin=admin)
    return data["user_id"]
