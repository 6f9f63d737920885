"""Whether chat is open (opening hours + the bot's emergency closure) and the pooled answers.

The closure is the state event ``SERVICE_STATE`` in the service room, set by the bot
(``!service close``). The gateway reads it every ``service_poll_seconds`` with its application
service token (its sender user is a member of the room); a 404 means open. The page asks the
gateway (``GET <chat path>status``), never the homeserver.

Pooled answers (webchat/answers.py) go to the same room as ``ANSWERS_EVENT``, encrypted: for
each batch the gateway's sender user logs in a fresh device whose keys live in memory only,
shares the room key with the bot's devices only, sends, and logs the device out again. If
anything fails, nothing is sent (never in clear) and the batch waits for the next try.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import AsyncClient, MatrixRoom, RoomSendError
from nio.exceptions import OlmTrustError
from nio.store import SqliteMemoryStore

from hotline_runtime.hours import Schedule, status
from hotline_runtime.nio_sync import KeysUnavailable, client_config, keep_keys, members_and_keys
from hotline_runtime.wire import ANSWERS_EVENT, SERVICE_STATE
from webchat.answers import AnswerPool, batch_content
from webchat.bot_identity import PinnedBot
from webchat.settings import GatewaySettings

log = logging.getLogger(__name__)

MAX_CLOSURE_MESSAGE = 1000
# "Open until …" is shown only for an opening that ends within this time (not for 24/7).
SHOW_CLOSING_WITHIN = timedelta(hours=24)
PROBE_SECONDS = 5.0


class ServiceError(Exception):
    pass


@dataclass(frozen=True)
class Closure:
    closed: bool = False
    message: str = ""


def page_status(schedule: Schedule, closure: Closure, now: datetime, reachable: bool = True) -> dict[str, Any]:
    """What the page shows about opening: pure, from the schedule, the closure, the time and
    whether the homeserver answers (if not, the page says chat cannot be reached and shows the
    hotline number and the other ways to get help instead of "Start chat")."""
    hours = status(schedule, now)
    next_open = hours.next_open
    if hours.open and not hours.accepting and hours.closes_at is not None:
        next_open = status(schedule, hours.closes_at).next_open
    closes_at = hours.closes_at if hours.open and hours.closes_at is not None \
        and hours.closes_at - now <= SHOW_CLOSING_WITHIN else None
    return {
        "accepting": hours.accepting and not closure.closed,
        "open": hours.open,  # by the hours (chats already open continue either way)
        "closed": closure.closed,  # the program closed chat for now
        "message": closure.message if closure.closed else "",
        "closes_at": closes_at.isoformat() if closes_at else None,
        "next_open": next_open.isoformat() if next_open and not closure.closed else None,
        "reachable": reachable,  # the homeserver answered the gateway's last probe
    }


class Service:
    def __init__(self, settings: GatewaySettings, http: aiohttp.ClientSession, pool: AnswerPool) -> None:
        self.settings = settings
        self.schedule = settings.schedule
        self.closure = Closure()
        self.pool = pool
        self._http = http
        self._problem: str | None = None
        self._send_lock = asyncio.Lock()
        self.reachable = True  # until the first probe says otherwise

    async def probe(self) -> None:
        """Whether the homeserver answers (its unauthenticated /versions), for the page."""
        url = f"{self.settings.homeserver}/_matrix/client/versions"
        try:
            async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_SECONDS)) as response:
                reachable = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            reachable = False
        if reachable != self.reachable:
            if reachable:
                log.info("the homeserver answers again: the page offers chat again")
            else:
                log.warning("the homeserver does not answer: the page says chat cannot be reached")
        self.reachable = reachable

    def status(self, now: datetime | None = None) -> dict[str, Any]:
        return page_status(self.schedule, self.closure, now or datetime.now(self.schedule.zone), self.reachable)

    def today(self) -> date:
        return datetime.now(self.schedule.zone).date()

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.as_token.get_secret_value()}"}

    # ------------------------------------------------------------------ the closure

    async def refresh(self) -> None:
        """Read the closure state once; on failure keep the last known state."""
        room = quote(self.settings.service_room, safe="")
        url = f"{self.settings.homeserver}/_matrix/client/v3/rooms/{room}/state/{SERVICE_STATE}/"
        try:
            async with self._http.get(url, headers=self._headers,
                                      timeout=aiohttp.ClientTimeout(total=10)) as response:
                data = await response.json(content_type=None)
                if response.status == 404:
                    closure = Closure()
                elif response.status == 200 and isinstance(data, dict):
                    message = data.get("message")
                    closure = Closure(data.get("closed") is True,
                                      message[:MAX_CLOSURE_MESSAGE] if isinstance(message, str) else "")
                else:
                    errcode = data.get("errcode") if isinstance(data, dict) else None
                    raise ServiceError(f"{response.status} {errcode}")
        except (aiohttp.ClientError, TimeoutError, ValueError, ServiceError) as error:
            problem = str(error) if isinstance(error, ServiceError) else type(error).__name__
            if problem != self._problem:
                log.warning("cannot read the service room's closure state (%s); keeping the last known", problem)
            self._problem = problem
            return
        if self._problem is not None:
            log.info("the service room's closure state can be read again")
            self._problem = None
        if closure.closed != self.closure.closed:
            log.info("chat is %s by the program", "closed" if closure.closed else "open again")
        self.closure = closure

    async def run(self) -> None:
        """Poll the closure state and send due answer batches, until cancelled."""
        last_answers_check = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await self.probe()
            if self.settings.service_room:
                await self.refresh()
            if loop.time() - last_answers_check >= 60 or self.pool.pooled >= self.settings.answers_pool_min:
                last_answers_check = loop.time()
                await self.send_due()
            await asyncio.sleep(self.settings.service_poll_seconds)

    # ------------------------------------------------------------------ pooled answers

    async def send_due(self) -> None:
        if not self.settings.service_room:
            return
        async with self._send_lock:
            due = self.pool.take_due(self.today())
            for number, (day, counts) in enumerate(due):
                try:
                    await self._send_encrypted(batch_content(day, counts))
                except Exception as error:
                    log.warning("pooled answers not sent yet (%s); trying again later", error)
                    for later_day, later in due[number:]:
                        self.pool.put_back(later_day, later)
                    return
                log.info("pooled answers sent (%d submissions)", counts.submissions)

    async def _login(self) -> tuple[str, str, str]:
        """A fresh device of the gateway's sender user (registered on first use)."""
        base = self.settings.homeserver
        timeout = aiohttp.ClientTimeout(total=10)
        async with self._http.get(f"{base}/_matrix/client/v3/account/whoami", headers=self._headers,
                                  timeout=timeout) as response:
            who = await response.json(content_type=None)
            if response.status != 200:
                raise ServiceError(f"whoami refused ({response.status})")
        user_id = who["user_id"]
        # A device needs an account row; the application service's own user has none until it
        # is registered (no password: only the application service token can log it in).
        register = {"type": "m.login.application_service", "username": user_id[1:].split(":", 1)[0],
                    "inhibit_login": True}
        async with self._http.post(f"{base}/_matrix/client/v3/register", json=register, headers=self._headers,
                                   timeout=timeout) as response:
            data = await response.json(content_type=None)
            if response.status != 200 and data.get("errcode") != "M_USER_IN_USE":
                raise ServiceError(f"registration refused ({data.get('errcode')})")
        body = {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": user_id}}
        async with self._http.post(f"{base}/_matrix/client/v3/login", json=body, headers=self._headers,
                                   timeout=timeout) as response:
            data = await response.json(content_type=None)
            if response.status != 200:
                raise ServiceError(f"login refused ({data.get('errcode')})")
        return data["user_id"], data["device_id"], data["access_token"]

    async def _room_is_encrypted(self, token: str) -> bool:
        room = quote(self.settings.service_room, safe="")
        url = f"{self.settings.homeserver}/_matrix/client/v3/rooms/{room}/state/m.room.encryption/"
        async with self._http.get(url, headers={"Authorization": f"Bearer {token}"},
                                  timeout=aiohttp.ClientTimeout(total=10)) as response:
            data = await response.json(content_type=None)
            if response.status == 404:
                return False
            if response.status != 200:
                raise ServiceError(f"room state refused ({data.get('errcode')})")
            return data.get("algorithm") == "m.megolm.v1.aes-sha2"

    async def _send_encrypted(self, content: dict[str, Any]) -> None:
        # An application service's own user may not /sync (Synapse refuses it), so the room is
        # set up from its state and members directly instead.
        user_id, device_id, token = await self._login()
        client = AsyncClient(self.settings.homeserver, user_id, device_id=device_id,
                             config=client_config(store=SqliteMemoryStore))
        client.restore_login(user_id, device_id, token)
        room_id = self.settings.service_room
        try:
            await keep_keys(client)
            if not await self._room_is_encrypted(token):
                raise ServiceError("the service room is not encrypted; answers are never sent in clear")
            room = MatrixRoom(room_id, user_id, encrypted=True)
            client.rooms[room_id] = room
            try:
                await members_and_keys(client, room_id)
            except KeysUnavailable as error:
                raise ServiceError(str(error)) from error
            bot = PinnedBot(self.settings.bot_user_id, self.settings.bot_master_key)
            trusted = await bot.decide_until_trusted(client, self._http, self.settings.homeserver, list(room.users))
            if not trusted:
                raise ServiceError("no device of the bot to share the answers with")
            try:
                response = await client.room_send(room_id, ANSWERS_EVENT, content)
            except OlmTrustError as error:
                raise ServiceError("encryption refused") from error
            if isinstance(response, RoomSendError):
                raise ServiceError(f"send ({response.status_code})")
        finally:
            try:
                await asyncio.wait_for(client.logout(), 10)  # the device and its keys go away
            except Exception:
                pass
            await client.close()
