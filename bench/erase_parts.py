"""The case room's redactions alone, in different ways: where the erase's time goes (issue 15).

Not one of ``make bench``'s benchmarks: a tool for the part of ``bench/erase.py`` that dominates,
``python -m bench.erase_parts [--events N] [--repeat R] [--variants raw@64 nio@16 ...]``.

On a dev stack (relaxed rate limits, as bench/erase.py) a fresh "redactor" account, a server admin
exempt from rate limits with its push muted as the bot is, creates an encrypted room and invites
the stack's advocate, whose syncing nio client joins (a staff client caching the room). Both fill
the room with N ``m.room.encrypted`` events of a short message's size. The redactor long-polls
/sync with the bot's filter, so its own /sync is woken by the redactions as the bot's is. Then,
on a fresh room per variant:

- ``raw@C``: the shipped recipe, ``hotline_runtime.erase.redact_all`` with C redactions at once
  (the listing through /messages with a server-side filter, pipelined with the redactions);
- ``nio@C``: the previous recipe: every event listed first through nio's ``room_messages``, then
  redacted C at a time.

A ``+nosyncredact`` suffix gives the redactor's /sync a filter without redactions. Printed per
variant: seconds listing (``nio`` only) and redacting, Synapse's CPU seconds meanwhile, how many
times the redactor's /sync answered, and the load average. ``ERASE_PARTS_PROFILE=DIR`` also
records py-spy profiles (GIL-holding samples) of Synapse and this process during the redactions.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import AsyncClient

from bench.clients import TimedAdvocate
from bench.common import ProcessMeter, log, now, running_stack, stack_pids
from hotline_runtime import erase
from hotline_runtime.client_api import ClientApi
from hotline_runtime.matrix_sync import MUTE_PUSH_PATH, SYNC_FILTER
from hotline_runtime.synapse_admin import SynapseAdmin
from testkit.clients import until

PROFILE_DIR = os.environ.get("ERASE_PARTS_PROFILE", "")


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode().rstrip("=")


async def send_opaque(api: ClientApi, device: str, room: str) -> None:
    content = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": _b64(240), "device_id": device,
               "sender_key": _b64(32), "session_id": _b64(32)}
    await api.call("PUT", f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.encrypted/{secrets.token_hex(8)}",
                   content)


async def fill(room: str, senders: list[tuple[ClientApi, str]], events: int, width: int = 8) -> None:
    limit = asyncio.Semaphore(width)

    async def one(i: int) -> None:
        async with limit:
            api, device = senders[i % len(senders)]
            await send_opaque(api, device, room)

    await asyncio.gather(*(one(i) for i in range(events)))


async def sync_forever(api: ClientApi, sync_filter: dict[str, Any], counter: dict[str, int]) -> None:
    since = None
    while True:
        query = f"timeout=30000&filter={quote(json.dumps(sync_filter))}" + (f"&since={quote(since)}" if since else "")
        data = await api.get(f"/_matrix/client/v3/sync?{query}", timeout=60)
        since = data["next_batch"]
        counter["syncs"] = counter.get("syncs", 0) + 1


async def redact_listed_first(nio: AsyncClient, api: ClientApi, room: str, width: int) -> tuple[int, float]:
    """The previous recipe: list everything through nio, then redact ``width`` at a time."""
    t0 = now()
    targets = [e.event_id async for e in erase.history(nio, room) if erase.needs_redaction(getattr(e, "source", {}) or {})]
    listed = now() - t0
    limit = asyncio.Semaphore(width)

    async def one(event_id: str) -> None:
        async with limit:
            await erase.redact_event(api, room, event_id)

    await asyncio.gather(*(one(e) for e in targets))
    return len(targets), listed


async def profile(meter: ProcessMeter, variant: str) -> list[asyncio.subprocess.Process]:
    if not PROFILE_DIR:
        return []
    return [await asyncio.create_subprocess_exec(
        "py-spy", "record", "--pid", str(meter.pids[name]), "--duration", "12", "--rate", "100", "--format", "raw",
        "--nonblocking", "--gil", "--full-filenames", "--output", f"{PROFILE_DIR}/{variant}-{name}.txt",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL) for name in ("synapse", "driver")]


async def main(events: int, variants: list[str], repeat: int) -> list[dict[str, Any]]:
    results = []
    async with running_stack("erase-parts", advocates=1, relaxed_rate_limits=True) as stack, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
        hs = stack.homeserver.url
        meter = ProcessMeter(stack_pids(stack))
        secret = stack.homeserver.secrets()["registration_shared_secret"]
        made = await SynapseAdmin(http, hs, None).register(secret, f"redactor_{secrets.token_hex(3)}",
                                                          secrets.token_urlsafe(12), admin=True)
        redactor = ClientApi(http, hs, made["access_token"])
        admin = SynapseAdmin(http, hs, made["access_token"])
        await admin.exempt_from_rate_limits(made["user_id"])
        await redactor.call("PUT", MUTE_PUSH_PATH, {"enabled": True})
        account = stack.accounts.advocates[0]
        advocate = TimedAdvocate(hs, account.user_id, account.password)
        await advocate.login()
        writer = ClientApi(http, hs, advocate.client.access_token)
        senders = [(redactor, made["device_id"]), (writer, advocate.client.device_id)]
        nio = AsyncClient(hs, made["user_id"])
        nio.restore_login(made["user_id"], made["device_id"], made["access_token"])
        counter: dict[str, int] = {}
        syncing: asyncio.Task[None] | None = None
        current: str | None = None
        try:
            for _ in range(repeat):
                for variant in variants:
                    base, _, option = variant.partition("+")
                    kind, _, width = base.partition("@")
                    if option not in ("", "nosyncredact") or kind not in ("raw", "nio"):
                        raise SystemExit(f"unknown variant {variant}")
                    if option != current or syncing is None:
                        if syncing is not None:
                            syncing.cancel()
                            await asyncio.gather(syncing, return_exceptions=True)
                        sync_filter = json.loads(json.dumps(SYNC_FILTER))
                        if option == "nosyncredact":
                            sync_filter["room"]["timeline"]["not_types"] = ["m.room.redaction"]
                        syncing = asyncio.create_task(sync_forever(redactor, sync_filter, counter))
                        current = option
                    room = (await redactor.call("POST", "/_matrix/client/v3/createRoom", {
                        "preset": "private_chat", "invite": [account.user_id],
                        "initial_state": [encryption_state()]}))[1]["room_id"]
                    await until(lambda: room in advocate.client.rooms, 30, "the advocate in the room")
                    t = now()
                    await fill(room, senders, events)
                    log(f"{variant}: filled {events} in {now() - t:.1f} s")
                    await asyncio.sleep(3)  # the fill's syncs settle
                    counter["syncs"] = 0
                    meter.mark()
                    spies = await profile(meter, variant)
                    t0 = now()
                    if kind == "raw":
                        redacted, listed = await erase.redact_all(redactor, room, concurrency=int(width or 64)), None
                    else:
                        redacted, listed = await redact_listed_first(nio, redactor, room, int(width or 16))
                    row = {"variant": variant, "redacted": redacted, "list_s": listed and round(listed, 2),
                           "total_s": round(now() - t0, 2), "synapse_cpu_s": round(meter.cpu_seconds(["synapse"]), 2),
                           "redactor_syncs": counter["syncs"], "load": round(os.getloadavg()[0], 1)}
                    for spy in spies:
                        await spy.wait()
                    log(json.dumps(row))
                    results.append(row)
                    await admin.delete_room(room)
        finally:
            if syncing is not None:
                syncing.cancel()
                await asyncio.gather(syncing, return_exceptions=True)
            await nio.close()
            await advocate.close()
    return results


def encryption_state() -> dict[str, Any]:
    return {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.erase_parts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["nio@16", "raw@16", "raw@32", "raw@64", "raw@128"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # nio's complaints about the opaque events
    print(json.dumps(asyncio.run(main(args.events, args.variants, args.repeat)), indent=1))
