"""What one more listener costs the homeserver per event (issue 15, item 2): ``python -m bench.wakes``.

Server CPU per relayed message is the two persisted events (the floor, bench/floor.py) plus what
each event costs for every account in the room that is told of it. This measures that cost on a
bare Synapse with the hotline's own homeserver.yaml (privacy and idle-duty settings, PostgreSQL),
nothing of the hotline running: Synapse + PostgreSQL CPU per event sent by a lone sender
(``bench.floor.SoloSender``), with in its room

- nobody (the floor's event);
- another account long-polling /sync (woken and answered: an advocate told of the bot's relay);
- the sender's own long-poll reading its events back (the bot after each of its relays);
- the sender's own long-poll with its events filtered out (``without_own_events``: woken, not
  answered; the gateway after each survivor message);
- an application-service user that does not sync, its events pushed to a receiver here
  (the push that issue 15 proposes for the bot and the gateway), and two users of that one
  service (one transaction serves both).

The push scenarios need Synapse to push at all, which the hotline turns off
(``idle_duty_settings``) since nothing of it is pushed to: they run on a second start of the same
Synapse with pushes on and the experimental to-device and device-list extensions a pushed E2EE
client needs; "alone" is measured again there, as pushing costs something for every event. Each
figure is the median of ``--rounds`` rounds of ``--events`` sends, less "alone" of the same start.

From these it works out the least homeserver CPU a relayed message can cost, bot and gateway CPU
left out, with /sync as today and with the bot and the gateway fed by pushes, against the 1.3 ×
floor target. Synapse's rate limits are relaxed (one account sends 40 events at once, above the
shipped per-account limit); nothing else is. Nothing is written to results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import yaml
from aiohttp import web

from bench.common import ProcessMeter, log, table
from bench.floor import SoloSender, measured_rounds
from bench.postgres import Postgres
from hotline.devstack import free_port
from hotline.homeserver import EmbeddedHomeserver, HomeserverProcess
from hotline_runtime.matrix_sync import SYNC_FILTER, without_own_events
from hotline_runtime.synapse_admin import SynapseAdmin

SERVER = "wakes.localhost"
PROBE_PREFIX = "probe_"
TARGET = 1.3  # issue 15: server CPU per relayed message ≤ 1.3 × the floor

# What a pushed E2EE client needs of Synapse 1.163 (docs/performance.md, "The application-service push").
PUSH_SETTINGS = {"experimental_features": {"msc2409_to_device_messages_enabled": True,
                                           "msc3202_transaction_extensions": True}}


@dataclass
class Receiver:
    """The probe application service's push endpoint: acknowledges each transaction at once."""
    hs_token: str
    transactions: int = 0
    runner: web.AppRunner | None = None

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", self._transaction)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def _transaction(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.hs_token}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        await request.read()
        self.transactions += 1
        return web.json_response({})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class LongPoll:
    """One account long-polling /sync (30 s) with a filter, as the bot, the gateway and staff do."""
    http: aiohttp.ClientSession
    base: str
    token: str
    sync_filter: dict[str, Any]
    answers: int = 0
    task: asyncio.Task | None = field(default=None, repr=False)

    async def _get(self, since: str | None) -> str:
        params = {"filter": json.dumps(self.sync_filter), "timeout": "30000" if since else "0"}
        if since:
            params["since"] = since
        async with self.http.get(f"{self.base}/sync", params=params,
                                 headers={"Authorization": f"Bearer {self.token}"}) as response:
            response.raise_for_status()
            return (await response.json())["next_batch"]

    async def start(self) -> None:
        since = await self._get(None)

        async def loop(since: str) -> None:
            while True:
                since = await self._get(since)
                self.answers += 1

        self.task = asyncio.create_task(loop(since))
        await asyncio.sleep(1)  # the long-poll is waiting

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Probe:
    """A bare Synapse with the hotline's homeserver.yaml on a throwaway PostgreSQL, and a probe
    application service whose namespace is ``@probe_…``, pushed to a Receiver on loopback."""

    def __init__(self, root: Path, postgres: Postgres) -> None:
        self.postgres = postgres
        self.homeserver = EmbeddedHomeserver(root, SERVER, free_port())
        self.process = HomeserverProcess(self.homeserver)
        self.receiver = Receiver(secrets.token_urlsafe(24))
        self.as_token = secrets.token_urlsafe(24)
        self.receiver_port = free_port()
        self.http: aiohttp.ClientSession | None = None

    @property
    def base(self) -> str:
        return f"{self.homeserver.url}/_matrix/client/v3"

    def configure(self, *, pushes: bool) -> None:
        self.homeserver.write_config(relaxed_rate_limits=True)
        registration = {
            "id": "wakes-probe", "url": f"http://127.0.0.1:{self.receiver_port}", "as_token": self.as_token,
            "hs_token": self.receiver.hs_token, "sender_localpart": f"{PROBE_PREFIX}sender",
            "rate_limited": False, "receive_ephemeral": True, "org.matrix.msc3202": True,
            "namespaces": {"users": [{"exclusive": True, "regex": f"@{PROBE_PREFIX}.*:{SERVER}"}],
                           "rooms": [], "aliases": []},
        }
        path = self.homeserver.directory / "probe-appservice.yaml"
        path.write_text(yaml.safe_dump(registration))
        config = yaml.safe_load(self.homeserver.config_path.read_text())
        config["app_service_config_files"].append(str(path))
        if pushes:
            config.pop("notify_appservices_from_worker")
            config.update(PUSH_SETTINGS)
        self.homeserver.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.postgres.point(self.homeserver.config_path)

    @asynccontextmanager
    async def running(self, *, pushes: bool) -> AsyncIterator[ProcessMeter]:
        self.configure(pushes=pushes)
        await self.process.start()
        assert self.process.process is not None and self.postgres.pid is not None
        try:
            yield ProcessMeter({"synapse": self.process.process.pid, "postgres": self.postgres.pid})
        finally:
            self.process.stop()

    async def account(self) -> dict[str, Any]:
        assert self.http is not None
        secret = self.homeserver.secrets()["registration_shared_secret"]
        return await SynapseAdmin(self.http, self.homeserver.url, None).register(
            secret, f"listener_{secrets.token_hex(4)}", secrets.token_urlsafe(12), admin=False)

    async def appservice_user(self) -> str:
        assert self.http is not None
        body = {"type": "m.login.application_service", "username": f"{PROBE_PREFIX}{secrets.token_hex(4)}"}
        async with self.http.post(f"{self.base}/register", json=body,
                                  headers={"Authorization": f"Bearer {self.as_token}"}) as response:
            response.raise_for_status()
            return (await response.json())["user_id"]

    async def join(self, room: str, *, token: str, as_user: str | None = None) -> None:
        assert self.http is not None
        params = {"user_id": as_user} if as_user else {}
        async with self.http.post(f"{self.base}/join/{room}", json={}, params=params,
                                  headers={"Authorization": f"Bearer {token}"}) as response:
            response.raise_for_status()


async def per_event(meter: ProcessMeter, sender: SoloSender, *, rounds: int, events: int) -> float:
    """Median over rounds of Synapse + PostgreSQL CPU (ms) per event this sender sends."""
    for _ in range(3):  # warm-up: the room's first events
        await sender.send()
    await asyncio.sleep(1)
    per_round = await measured_rounds(sender, meter, rounds=rounds, events=events, settle_s=0.5)
    return statistics.median(r["cpu_s"] / events * 1000 for r in per_round)


async def scenarios(probe: Probe, meter: ProcessMeter, *, pushes: bool, rounds: int, events: int) -> dict[str, float]:
    """Milliseconds per event by scenario, on one start of the probe's Synapse."""
    assert probe.http is not None
    http, measured = probe.http, {}

    async def run(name: str, sender: SoloSender, listener: LongPoll | None = None) -> None:
        if listener is not None:
            await listener.start()
        probe.receiver.transactions = 0
        try:
            measured[name] = await per_event(meter, sender, rounds=rounds, events=events)
        finally:
            if listener is not None:
                await listener.stop()
        told = listener.answers if listener else probe.receiver.transactions
        log(f"wakes: {name}{' (pushes on)' if pushes else ''}: {measured[name]:.1f} ms per event; "
            f"{told} {'/sync answers' if listener else 'pushed transactions'} for {rounds * events + 3} events")

    await run("alone", await SoloSender.open(probe, http))
    if not pushes:
        other = await probe.account()
        sender = await SoloSender.open(probe, http, invite=(other["user_id"],))
        await probe.join(sender.room, token=other["access_token"])
        await run("another account's /sync, answered", sender, LongPoll(http, probe.base, other["access_token"], SYNC_FILTER))
        sender = await SoloSender.open(probe, http)
        await run("own /sync, read back", sender, LongPoll(http, probe.base, sender.token, SYNC_FILTER))
        sender = await SoloSender.open(probe, http)
        await run("own /sync, own events filtered out", sender,
                  LongPoll(http, probe.base, sender.token, without_own_events(sender.user_id)))
        return measured
    one = await probe.appservice_user()
    sender = await SoloSender.open(probe, http, invite=(one,))
    await probe.join(sender.room, token=probe.as_token, as_user=one)
    await run("one application-service user, pushed", sender)
    two = [await probe.appservice_user() for _ in range(2)]
    sender = await SoloSender.open(probe, http, invite=tuple(two))
    for user in two:
        await probe.join(sender.room, token=probe.as_token, as_user=user)
    await run("two users of that service, pushed", sender)
    return measured


def least_per_relayed_message(off: dict[str, float], on: dict[str, float]) -> list[list[Any]]:
    """The least homeserver CPU one relayed message can cost, bot and gateway CPU left out.

    A relayed message, averaged over both directions, is two events (survivor room, case room).
    Told of them by /sync: an account's event answered to another (the bot told of the survivor's
    and the advocate's lines, the advocate of the bot's relay, the gateway of the bot's relay to
    the survivor): 2 per relayed message; an account's own event read back (the bot's two relays,
    the advocate's own line): 1.5; the gateway woken by the survivor's own line, filtered out: 0.5.
    With pushes for the bot and the gateway (one application service for both, its best case; the
    advocate keeps /sync): each event pushed once, the survivor room's to a service with two users
    there (the bot and the survivor's account), the case room's with one (the bot); and the
    advocate's 0.5 answered and 0.5 read back."""
    def extra(measured: dict[str, float], name: str) -> float:
        return measured[name] - measured["alone"]

    floor = 2 * off["alone"]
    by_sync = floor + 2 * extra(off, "another account's /sync, answered") \
        + 1.5 * extra(off, "own /sync, read back") + 0.5 * extra(off, "own /sync, own events filtered out")
    advocate = 0.5 * extra(off, "another account's /sync, answered") + 0.5 * extra(off, "own /sync, read back")
    by_push = 2 * on["alone"] + extra(on, "one application-service user, pushed") \
        + extra(on, "two users of that service, pushed") + advocate
    advocate_only = floor + advocate
    return [
        ["floor (two events, nobody told)", floor, 1.0],
        ["/sync for all (today's design)", by_sync, by_sync / floor],
        ["pushes for the bot and the gateway, /sync for the advocate", by_push, by_push / floor],
        ["only the advocate told (no bot, no gateway)", advocate_only, advocate_only / floor],
        [f"the target ({TARGET} × floor)", TARGET * floor, TARGET],
    ]


async def wakes(rounds: int, events: int) -> None:
    postgres = Postgres()
    postgres.start()
    root = Path(tempfile.mkdtemp(prefix="hotline-bench-wakes-"))
    probe = Probe(root / "homeserver", postgres)
    await probe.receiver.start(probe.receiver_port)
    try:
        async with aiohttp.ClientSession() as probe.http:
            measured = {}
            for pushes in (False, True):
                async with probe.running(pushes=pushes) as meter:
                    measured[pushes] = await scenarios(probe, meter, pushes=pushes, rounds=rounds, events=events)
    finally:
        await probe.receiver.stop()
        postgres.stop()
    rows = [[name, ms, ms - by_start["alone"], "on" if pushes else "off (as shipped)"]
            for pushes, by_start in measured.items() for name, ms in by_start.items()]
    table(f"Synapse + PostgreSQL CPU per event (ms), median of {rounds} rounds of {events} events",
          ["in the sender's room", "ms/event", "− alone", "pushes"], rows)
    table("Least homeserver CPU per relayed message (ms; bot and gateway CPU not counted)",
          ["design", "ms/msg", "× floor"], least_per_relayed_message(measured[False], measured[True]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wakes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per scenario (default 5)")
    parser.add_argument("--events", type=int, default=40, help="events per round (default 40)")
    args = parser.parse_args()
    asyncio.run(wakes(args.rounds, args.events))
    log("wakes done")


if __name__ == "__main__":
    main()
