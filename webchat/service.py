"""Whether chat is open: opening hours, the bot's emergency closure, a homeserver that answers.

The closure is the state event ``SERVICE_STATE`` in the service room, set by the bot
(``!service close``). The gateway reads it every ``service_poll_seconds`` with its application
service token (its sender user is a member of the room); a 404 means open. The page asks the
gateway (``GET <chat path>status``), never the homeserver.

The same loop hands due batches of pooled answers to webchat/answer_sender.py.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp

from hotline_runtime.client_api import ClientApi, ClientApiError
from hotline_runtime.hours import Schedule, status
from hotline_runtime.wire import SERVICE_STATE
from webchat.answer_sender import AnswerSender
from webchat.settings import GatewaySettings

log = logging.getLogger(__name__)

MAX_CLOSURE_MESSAGE = 1000
# "Open until …" is shown only for an opening that ends within this time (not for 24/7).
SHOW_CLOSING_WITHIN = timedelta(hours=24)
PROBE_SECONDS = 5.0


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


class ServiceStatus:
    """What the page is told about opening (``status``), kept up to date by ``run``."""

    def __init__(self, settings: GatewaySettings, http: aiohttp.ClientSession, answers: AnswerSender) -> None:
        self.settings = settings
        self.schedule = settings.schedule
        self.closure = Closure()
        self.answers = answers
        self._api = ClientApi(http, settings.homeserver, settings.as_token.get_secret_value())
        self._public = ClientApi(http, settings.homeserver)  # no token: what anyone may ask
        self._problem: str | None = None
        self.reachable = True  # until the first probe says otherwise

    async def probe(self) -> None:
        """Whether the homeserver answers (its unauthenticated /versions), for the page."""
        try:
            status_code, _ = await self._public.request("GET", "/_matrix/client/versions", timeout=PROBE_SECONDS)
            reachable = status_code == 200
        except ClientApiError:
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

    # ------------------------------------------------------------------ the closure

    async def refresh(self) -> None:
        """Read the closure state once; on failure keep the last known state."""
        room = quote(self.settings.service_room, safe="")
        try:
            _, data = await self._api.call("GET", f"/_matrix/client/v3/rooms/{room}/state/{SERVICE_STATE}/",
                                           ok=(404,), timeout=10)
            message = data.get("message")
            closure = Closure(data.get("closed") is True,
                              message[:MAX_CLOSURE_MESSAGE] if isinstance(message, str) else "")
        except ClientApiError as error:
            problem = f"{error.status} {error.errcode or None}" if error.answered else error.cause
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
            if loop.time() - last_answers_check >= 60 or self.answers.pool.pooled >= self.settings.answers_pool_min:
                last_answers_check = loop.time()
                await self.answers.send_due(self.today())
            await asyncio.sleep(self.settings.service_poll_seconds)
