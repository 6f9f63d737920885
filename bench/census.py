"""What one relayed message causes on the homeserver (issue 15): ``python -m bench.census``.

One chat on a loopback stack (Synapse on SQLite), claimed by one advocate on a real nio client
that long-polls /sync for 30 s as the capacity benchmark's do. After a warm-up, ``N`` messages
each way, one at a time, each waited for on the other side. Over those messages, from Synapse's
own request log (turned on for this throwaway stack only: it names the account and the path) and
its database. Rate limits relaxed as in the capacity benchmark (the floor probe sends 60 events at once).

- every client-API request, by who made it (bot, the survivor's account in the gateway, the
  advocate) and what it was (``/sync`` answers, sends, typing, receipts, keys, to-device...), with
  the CPU Synapse's log gives each request (``ru``: user + system time of that request's work);
- every event persisted, by type and sender.

Printed per relayed message (2 N relayed messages). Nothing is written to results.json.

``--like-element``: the advocate also does what Element does around each message: "typing" on
before it sends and off after, and a read receipt with the read marker (``/read_markers``) for
each message it receives. The bench's advocates do neither.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
from collections import Counter, defaultdict
from typing import Any

import yaml

import hotline.homeserver as homeserver_module
import hotline_runtime.matrix_sync as matrix_sync
from bench.clients import TimedAdvocate, TimedSurvivor
from bench.common import ProcessMeter, log, now, running_stack, stack_pids, table
from bench.floor import server_floor
from bench.postgres import Postgres
from testkit.clients import claim_new_chat

IDLE_S = 10.0

ACCESS = re.compile(r'\{(?P<who>[^}]*)\} Processed request: [\d.]+sec/[\d.]+sec ru=\((?P<ut>[\d.]+)sec, '
                    r'(?P<st>[\d.]+)sec\).* (?P<code>\d{3}) "(?P<method>[A-Z]+) (?P<uri>\S+) ')


def _with_access_log(original):
    def log_config(log_file):
        config = original(log_file)
        for name in ("synapse.access", "synapse.access.http"):
            config["loggers"][name] = {"level": "INFO"}
        return config
    return log_config


def kind_of(method: str, uri: str) -> str:
    path = uri.split("?", 1)[0]
    path = re.sub(r"^/_matrix/client/(v3|r0|unstable|v1)", "", path)
    path = re.sub(r"![^/]+", "{room}", path)
    path = re.sub(r"\$[^/]+", "{event}", path)
    path = re.sub(r"@[^/]+", "{user}", path)
    path = re.sub(r"/send/([^/]+)/[^/]+$", r"/send/\1/{txn}", path)
    path = re.sub(r"/sendToDevice/([^/]+)/[^/]+$", r"/sendToDevice/\1/{txn}", path)
    return f"{method} {path}"


def who_of(requester: str, bot: str, advocate: str) -> str:
    if requester.startswith(bot):
        return "bot"
    if requester.startswith(advocate):
        return "advocate"
    if requester.startswith("@chat_"):
        return "gateway (survivor account)"
    return requester or "-"


class ElementLikeAdvocate(TimedAdvocate):
    """A TimedAdvocate that remembers the last event of each room, to mark it read."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.last_event: dict[str, str] = {}

    async def _on_sync(self, response) -> None:
        for room_id, info in response.rooms.join.items():
            if info.timeline.events:
                self.last_event[room_id] = info.timeline.events[-1].event_id
        await super()._on_sync(response)


# What Element asks of /sync as far as it matters here: every ephemeral event (read receipts too).
# Set in this process only (the advocate's client), never in the bot's or the gateway's.
ELEMENT_LIKE_FILTER: dict[str, Any] = {
    "room": {"timeline": {"limit": 500}, "state": {"lazy_load_members": False},
             "account_data": {"not_types": ["*"]}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


async def census(n: int, like_element: bool) -> None:
    homeserver_module.log_config = _with_access_log(homeserver_module.log_config)
    if like_element:
        matrix_sync.SYNC_FILTER = ELEMENT_LIKE_FILTER
    pg = Postgres()
    pg.start()
    try:
        async with running_stack("census", advocates=1, postgres=pg, relaxed_rate_limits=True) as stack:
            await census_on(stack, ProcessMeter(stack_pids(stack) | {"postgres": pg.pid}), n, like_element)
    finally:
        pg.stop()


async def census_on(stack, meter: ProcessMeter, n: int, like_element: bool) -> None:
    account = stack.accounts.advocates[0]
    advocate = (ElementLikeAdvocate if like_element else TimedAdvocate)(stack.homeserver.url, account.user_id, account.password)
    await advocate.login()
    survivor = TimedSurvivor(stack.page_url)
    _, case_room = await claim_new_chat(stack, advocate, survivor)
    await survivor.wait_text("An advocate has joined the chat.", 60)
    for i in range(3):  # warm-up: Megolm sessions on every side
        await relay_pair(survivor, advocate, case_room, f"warm {i}")
    await asyncio.sleep(3)
    floor = await server_floor(stack, meter, rounds=3, pairs=10)
    meter.mark()
    await asyncio.sleep(IDLE_S)
    idle = {name: cpu * IDLE_S / 100 for name, cpu in meter.cpu_percent().items()}
    log_path = stack.homeserver.directory / "homeserver.log"
    offset = log_path.stat().st_size
    mark = query(stack, "SELECT MAX(stream_ordering) FROM events")[0][0]
    meter.mark()
    t0 = now()
    for i in range(n):
        await relay_pair(survivor, advocate, case_room, f"m {i}")
    await asyncio.sleep(3)
    elapsed = now() - t0
    busy = {name: cpu * elapsed / 100 for name, cpu in meter.cpu_percent().items()}
    cpu_table(busy, idle, elapsed, 2 * n, floor["ms_per_relayed_message"])
    with log_path.open() as f:
        f.seek(offset)
        lines = f.read().splitlines()
    events = query(stack, "SELECT type, sender FROM events WHERE stream_ordering > %s", [mark])
    report(lines, events, 2 * n, stack.accounts.bot.user_id, account.user_id)
    await survivor.close()
    await advocate.close()


def query(stack, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """A read-only query on the benchmark's PostgreSQL (bench/postgres.py points homeserver.yaml at it)."""
    import psycopg2

    args = yaml.safe_load(stack.homeserver.config_path.read_text())["database"]["args"]
    with psycopg2.connect(**{k: v for k, v in args.items() if not k.startswith("cp_")}) as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql, params or [])
            return cursor.fetchall()


async def relay_pair(survivor: TimedSurvivor, advocate: TimedAdvocate, room: str, tag: str) -> None:
    element = isinstance(advocate, ElementLikeAdvocate)
    up = f"s {tag} {secrets.token_hex(4)}"
    await survivor.send_text(up, secrets.token_hex(8))
    await advocate.wait_text(f"Survivor: {up}", 30)
    if element:
        seen = advocate.last_event[room]
        await advocate.client.room_read_markers(room, seen, seen)
    await asyncio.sleep(1)
    down = f"a {tag} {secrets.token_hex(4)}"
    if element:
        await advocate.client.room_typing(room, True)
        await asyncio.sleep(0.5)
    await advocate.send_text(room, down)
    if element:
        await advocate.client.room_typing(room, False)
    await survivor.wait_text(down, 30)
    await asyncio.sleep(1)


def report(lines: list[str], events: list[tuple[Any, ...]], relayed: int, bot: str, advocate: str) -> None:
    count: Counter[tuple[str, str]] = Counter()
    cpu: dict[tuple[str, str], float] = defaultdict(float)
    for line in lines:
        match = ACCESS.search(line)
        if not match:
            continue
        key = (who_of(match["who"], bot, advocate), kind_of(match["method"], match["uri"]))
        count[key] += 1
        cpu[key] += float(match["ut"]) + float(match["st"])
    rows = [[who, what, count[(who, what)] / relayed, cpu[(who, what)] / relayed * 1000]
            for who, what in sorted(count, key=lambda k: -cpu[k])]
    rows.append(["all", "", sum(count.values()) / relayed, sum(cpu.values()) / relayed * 1000])
    table(f"Client-API requests per relayed message ({relayed} relayed), and Synapse's CPU for them (ms)",
                ["who", "request", "per msg", "CPU ms/msg"], rows)
    persisted = Counter((t, who_of(s, bot, advocate)) for t, s in events)
    table("Events persisted per relayed message", ["type", "sender", "per msg"],
                [[t, s, c / relayed] for (t, s), c in persisted.most_common()]
                + [["all", "", len(events) / relayed]])


def cpu_table(busy: dict[str, float], idle: dict[str, float], elapsed: float, relayed: int, floor: float) -> None:
    """CPU per relayed message by process, less what the same processes spend idle in as long."""
    rows = []
    for name in ("synapse", "postgres", "bot", "webchat"):
        extra = busy[name] - idle[name] * elapsed / IDLE_S
        rows.append([name, busy[name] / relayed * 1000, extra / relayed * 1000])
    total = sum(r[1] for r in rows)
    rows.append(["server (all four)", total, sum(r[2] for r in rows)])
    table(f"CPU per relayed message (ms), {relayed} relayed one at a time over {elapsed:.0f} s; "
          f"homeserver floor in the same run {floor:.0f} ms; server / floor {total / floor:.2f} ×",
          ["process", "ms/msg", "ms/msg less idle"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.census", description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="messages each way (default 10)")
    parser.add_argument("--like-element", action="store_true",
                        help="the advocate types and marks messages read as Element does")
    args = parser.parse_args()
    asyncio.run(census(args.n, args.like_element))
    log("census done")


if __name__ == "__main__":
    main()
