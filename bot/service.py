"""The bot's service: runs the loop. Matrix events → conversation events; effects → Matrix and
the store.

Everything that changes routing state goes through ``handle()``, one event at a time, so the
rules in bot.conversation see a simple sequential world. Effects run in order right after the
new state is saved: those that only send into one room through that room's outbox
(bot/outbox.py), the others at once (bot/effects.py has the one table of them); erasing runs in
the background (bot/erase.py) and reports back with ``ChatErased``. The composition root
(bot/app.py) builds the parts; the sync response is translated by bot/inbound.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from bot.conversation import (
    ClockTicked,
    Effect,
    Event,
    Hotline,
    IllegalTransition,
    RelayFailed,
    RelayToCase,
    RelayToSurvivor,
    Reply,
    apply,
    recover,
)
from bot.effects import Effects
from bot.erase import Eraser
from bot.ids import RoomId
from bot.inbound import Inbound
from bot.login import sign_in
from bot.matrix import BotMatrix
from bot.outbox import Outbox
from bot.settings import BotSettings
from bot.store import Store
from bot.tasks import Tasks
from bot.trust import TrustPolicy
from hotline_runtime.client_api import ClientApi
from hotline_runtime.cross_signing import KeysApi
from hotline_runtime.errors import HotlineError, incident_id, where
from hotline_runtime.matrix_sync import SessionGone
from hotline_runtime.synapse_admin import SynapseAdmin

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class HotlineBot:
    """The loop: sign in (bot/login.py), sync, hand each event to the rules, carry out what they decide.

    Its parts are built by bot/app.py and attached with ``attach`` (they call back into
    ``handle``, so they are made after the service)."""

    def __init__(self, settings: BotSettings, store: Store, matrix: BotMatrix, http: aiohttp.ClientSession,
                 state: Hotline, tasks: Tasks) -> None:
        self.settings = settings
        self.store = store
        self.matrix = matrix
        self.http = http
        self.state = state
        self.tasks = tasks
        self._lock = asyncio.Lock()

    def attach(self, *, trust: TrustPolicy, inbound: Inbound, effects: Effects, outbox: Outbox,
               eraser: Eraser) -> None:
        self.trust = trust
        self.inbound = inbound
        self.effects = effects
        self.outbox = outbox
        self.eraser = eraser

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        signed_in = await sign_in(self.settings, self.store, self.matrix, self.http)
        # Staff identities are checked, and the admin API served, with the bot's own token (it is
        # a server admin: purge, erase).
        self.trust.keys = KeysApi(self.http, self.settings.homeserver, signed_in.token)
        self.eraser.admin = SynapseAdmin(self.http, self.settings.homeserver, signed_in.token)
        self.eraser.api = ClientApi(self.http, self.settings.homeserver, signed_in.token)
        if signed_in.identity_restored and self.settings.admin_room:
            self._announce_later(Reply(RoomId(self.settings.admin_room), "bot_identity_restored"))
        self.state = Hotline(rules=self.state.rules, chats=await self.store.load_chats())
        since = await self.outbox.position()
        log.info("bot started: device %s, %d open chats", signed_in.device_id, len(self.state.chats))
        self.inbound.first_sync = since is None
        recovered = False

        async def on_response(response: Any) -> None:
            nonlocal recovered
            await self.inbound.on_sync(response)
            if not recovered:
                recovered = True
                for effect in recover(self.state):
                    await self.perform_and_follow(effect)
                await self.eraser.resume_pending()

        self.tasks.spawn(self._ticker(), "ticker")
        try:
            await self.matrix.sync_forever(on_response, since=since, save_position=self.outbox.handled_up_to)
        except SessionGone as gone:
            log.error("the homeserver refused the bot's login (%s); stopping", gone)
            raise
        finally:
            await self.tasks.cancel_all()

    def _announce_later(self, reply: Reply) -> None:
        """A notice for a staff room that may not be synced yet: sent once the room is known."""
        async def send() -> None:
            while not self.matrix.knows_room(reply.room):
                await asyncio.sleep(1)
            await self.effects.reply(reply)

        self.tasks.spawn(send(), "a notice for a staff room")

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            await self.handle(ClockTicked())

    # ------------------------------------------------------------------ events → effects

    async def handle(self, event: Event) -> None:
        async with self._lock:
            queue: list[Event] = [event]
            while queue:
                current = queue.pop(0)
                try:
                    state, effects = apply(self.state, current, time.time())
                except IllegalTransition as error:
                    log.warning("ignored: %s", error)
                    continue
                except Exception as error:
                    # A bug in a rule must not stop the bot: the event is dropped, the state kept.
                    log.error("incident %s: the rules failed on %s: %s", incident_id(), type(current).__name__,
                              where(error))
                    continue
                await self.store.save_changes(self.state.chats, state.chats)
                self.state = state
                for effect in effects:
                    room = self.effects.sends_to(effect)
                    if room is None:
                        queue.extend(await self.perform(effect))
                    else:
                        self.outbox.put(room, effect)

    async def perform_and_follow(self, effect: Effect) -> None:
        for event in await self.perform(effect):
            await self.handle(event)

    async def perform(self, effect: Effect) -> list[Event]:
        """Carry out one effect; return the events it produced. Failures are logged, not raised: a
        relay's becomes RelayFailed, for the rules to tell whoever is waiting for it; a staff
        notice's, a short notice with the incident's reference in that room."""
        try:
            return await self.effects.carry_out(effect)
        except Exception as error:
            incident = incident_id()
            log.error("incident %s: %s failed: %s", incident, type(effect).__name__,
                      error if isinstance(error, HotlineError) else where(error))
            if isinstance(effect, RelayToCase | RelayToSurvivor):
                return [RelayFailed(effect.room, incident, effect.text)]
            if isinstance(effect, Reply) and effect.key != "command_failed":
                await self._report_failure(effect.room, incident)
            return []

    async def _report_failure(self, room: RoomId, incident: str) -> None:
        try:
            await self.effects.reply(Reply(room, "command_failed", (("incident", incident),)))
        except Exception:
            log.error("incident %s: could not report the failure either", incident)
