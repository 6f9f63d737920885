"""Capacity and memory: concurrent chats at human pace on Synapse on PostgreSQL.

Steps of N open chats. At each step, every chat's survivor sends one message every 10 s and its
advocate one every 10 s (random phases), for a window; each message's latency is measured to the
other side (decrypted), and a message not there 15 s after the window is lost. A step passes with
p95 < 1 s and nothing lost; the ramp goes on past a failing step while p95 < 3 s and nothing is lost,
to show the curve.
CPU per process over the window and RSS per process after opening each step's chats are recorded;
memory per open chat is the slope of RSS against open chats. At the first step the bot, the gateway and
Synapse are sampled with py-spy (see bench/profile.py).

Advocates: real nio clients (long-polling /sync) in the benchmark's own process, each holding up
to 20 chats (the most ``HOTLINE_MAX_CHATS_PER_ADVOCATE`` allows; the default of 3 would cap the
ramp at 3 × advocates), filled one after the other, so that the benchmark runs as few clients as
the chats need: they share the machine with the system under test. Real advocates hold a few chats
each on their own devices, which costs the homeserver one more /sync answer per message than
here: the figures are on the kind side. Chats are opened four at a time.
Everything is bounded: step sizes, the window, the drain time, and the whole ramp.

The homeserver's floor (issue 15): what Synapse and PostgreSQL spend (CPU, ProcessMeter) to persist
the two events of one relayed message and nothing else: a fresh user alone in its own room, with no
client syncing it, sends opaque ``m.room.encrypted`` events through the client API, one at a time.
It is measured in the same run on the same stack, at idle before the ramp and again after it (the
chats still open, with no traffic). The server CPU per relayed message at each step (Synapse,
PostgreSQL, the bot and the gateway) is reported as a ratio to the floor before the ramp.

Targets: server CPU per relayed message ≤ 1.3 × the floor at every step; 200 concurrent chats pass.
All survivors connect from 127.0.0.1: the gateway's per-address limits are raised (``ONE_ADDRESS``).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets

from bench import profile
from bench.clients import Team, TimedAdvocate, TimedSurvivor, floor_pair
from bench.common import (
    ONE_ADDRESS,
    ProcessMeter,
    check,
    log,
    now,
    plt,
    running_stack,
    save_result,
    savefig,
    slope,
    stack_pids,
    summary_ms,
    table,
    target_lines,
)
from bench.floor import HOMESERVER, server_floor
from bench.postgres import Postgres
from testkit.clients import open_chat_count, until

PACE_S = 10.0
DRAIN_S = 15.0
PER_ADVOCATE = 20
FLOOR_RATIO = 1.3
SERVER = ("synapse", "postgres", "bot", "webchat")
TARGET_CHATS = 200
# HOTLINE_BENCH_WORKERS=N: the same ramp on Synapse's worker layout (`hotline init --workers N`:
# main process, event persister, N generic workers, Redis, nginx as the entrance). Its figures go
# under "capacity-workersN" (results.json, capacity-workersN.png); "synapse" is then the CPU of all
# of Synapse's processes. HOTLINE_BENCH_STEPS=10,20,30 limits the ramp's steps.
WORKERS = int(os.environ.get("HOTLINE_BENCH_WORKERS", "0"))
# HOTLINE_BENCH_GATEWAYS=N: N gateways behind nginx (`hotline init --gateways N`); "webchat" is then
# the CPU of all of them (nginx in front is not counted, as no proxy is with one gateway); the
# memory figures are g1's only.
GATEWAYS = int(os.environ.get("HOTLINE_BENCH_GATEWAYS", "1"))
SUFFIX = (f"-workers{WORKERS}" if WORKERS else "") + (f"-gateways{GATEWAYS}" if GATEWAYS > 1 else "")


async def run(quick: bool = False) -> dict:
    steps = [4, 8] if quick else [10, 20, 30, 40, 50, 75, 100, 150, 200]
    if os.environ.get("HOTLINE_BENCH_STEPS"):
        steps = [int(n) for n in os.environ["HOTLINE_BENCH_STEPS"].split(",")]
    window = 20.0 if quick else 30.0
    advocates_n = -(-steps[-1] // PER_ADVOCATE)  # enough to hold the last step's chats
    pg = Postgres()
    pg.start()
    try:
        # Relaxed limits: one advocate account stands in for 20 people here; Synapse's message
        # limit is per account, made for one person.
        async with running_stack("capacity", advocates=advocates_n, postgres=pg,
                                 settings=ONE_ADDRESS | {"max_open_chats": "2000",
                                                         "max_chats_per_advocate": str(PER_ADVOCATE)},
                                 relaxed_rate_limits=True, workers=WORKERS, gateways=GATEWAYS) as stack:
            ramp = Ramp(stack, ProcessMeter(stack_pids(stack) | {"postgres": pg.pid}), window)
            await ramp.prepare(quick)
            await ramp.climb(steps, 600 if quick else int(os.environ.get("HOTLINE_BENCH_RAMP_SECONDS", "600")))
            ramp.floor_after = await server_floor(stack, ramp.meter, rounds=2 if quick else 3,
                                                  pairs=10 if quick else 20)
            await ramp.close_all()
    finally:
        pg.stop()
    return report(ramp)


class Ramp:
    """The stack under test, its advocates, the open chats and what each step measured."""

    def __init__(self, stack, meter: ProcessMeter, window: float) -> None:
        self.stack, self.meter, self.window = stack, meter, window
        self.advocates: list[TimedAdvocate] = []
        self.chats: list[tuple[TimedSurvivor, TimedAdvocate, str]] = []
        self.results: list[dict] = []
        self.memory: list[dict] = []
        self.profiles: dict = {}
        self.floor_before: dict = {}
        self.floor_after: dict = {}
        self.team: Team | None = None
        self.latency_floor: tuple | None = None

    async def prepare(self, quick: bool) -> None:
        """Advocates signed in and readable by the bot, the floor pair, the floor before the ramp."""
        for account in self.stack.accounts.advocates:
            advocate = TimedAdvocate(self.stack.homeserver.url, account.user_id, account.password)
            await advocate.login()
            self.advocates.append(advocate)
        self.team = Team(await ready_advocates(self.stack, self.advocates), PER_ADVOCATE)
        self.latency_floor = await floor_pair(self.stack)
        await asyncio.sleep(3)
        self.floor_before = await server_floor(self.stack, self.meter, rounds=2 if quick else 3,
                                               pairs=10 if quick else 20)
        self.memory.append(self.rss(0))

    def rss(self, chats: int) -> dict:
        return {"chats": chats} | {n: self.meter.rss_mib(n) for n in ("webchat", "bot", "synapse")}

    async def climb(self, steps: list[int], budget: float) -> None:
        started = now()
        for target in steps:
            if now() - started > budget:
                log(f"capacity: ramp budget of {budget:.0f} s used up; stopping before {target}")
                break
            step = await self.step(target, profile_now=target == steps[0])
            log(f"capacity: {len(self.chats)} chats: p95 {step['p95']:.0f} ms, lost {step['lost']}, "
                f"CPU synapse {step['cpu']['synapse']:.0f}% bot {step['cpu']['bot']:.0f}% "
                f"gateway {step['cpu']['webchat']:.0f}% machine {step['cpu']['machine']:.0f}%, "
                f"server {step['server_cpu_ms_per_msg']:.0f} ms/msg")
            if step["lost"] or step["open_failures"] or step["p95"] > 3000:
                log("capacity: clearly past the limit; stopping the ramp")
                break

    async def step(self, target: int, profile_now: bool) -> dict:
        t_open = now()
        log(f"capacity: opening chats {len(self.chats) + 1}..{target}")
        gate = asyncio.Semaphore(4)
        outcome = await asyncio.gather(*(self.open_one(f"c{i}", gate) for i in range(len(self.chats), target)),
                                       return_exceptions=True)
        failures = [o for o in outcome if isinstance(o, BaseException)]
        open_s = now() - t_open
        if failures:
            log(f"capacity: {len(failures)} chats failed to open: {failures[0]!r}")
        await asyncio.sleep(3)
        self.memory.append(self.rss(len(self.chats)))
        step = await load_window(self.chats, self.window, self.meter, floor=self.latency_floor,
                                 profile_pids=self.meter.pids if profile_now else None, profiles=self.profiles)
        step |= {"target": target, "open_s": open_s, "open_failures": len(failures)}
        self.results.append(step)
        return step

    async def open_one(self, tag: str, gate: asyncio.Semaphore) -> None:
        assert self.team is not None
        async with gate:
            survivor, advocate, room = await self.team.open_chat(self.stack, tag)
            await advocate.send_text(room, f"hi {tag}")  # Megolm session shared before measuring
            await survivor.wait_text(f"hi {tag}", 60)
            self.chats.append((survivor, advocate, room))

    async def close_all(self) -> None:
        log(f"capacity: closing {len(self.chats)} chats")
        gate = asyncio.Semaphore(8)

        async def close_one(survivor: TimedSurvivor, advocate: TimedAdvocate, room: str) -> None:
            async with gate:
                await advocate.say(room, "!close")
                try:
                    await survivor.wait_type("ended", 120)
                finally:
                    await survivor.close()
                    advocate.forget(room)

        await asyncio.gather(*(close_one(*c) for c in self.chats), return_exceptions=True)
        try:
            await until(lambda: open_chat_count(self.stack) == 0, 600, "every chat erased")
        except AssertionError as error:
            log(f"capacity: {error}; {open_chat_count(self.stack)} chats still open in the bot")
        assert self.latency_floor is not None
        for advocate in self.advocates + list(self.latency_floor[:2]):
            await advocate.close()


async def ready_advocates(stack, advocates: list[TimedAdvocate]) -> list[TimedAdvocate]:
    """One at a time, each advocate types "!claim" with nothing waiting and waits for the bot's
    answer: its Megolm key has then reached the bot. (Twenty-five advocates sending their first
    message at once exhausted the bot's one-time keys: nio then shares no key with the bot, and that
    advocate's commands stay undecryptable to it; see docs/performance.md.)"""
    ready = []
    dispatch = stack.accounts.dispatch_room
    for advocate in advocates:
        await until(lambda: dispatch in advocate.client.rooms, 60, "dispatch room")
        await advocate.know_devices(stack.accounts.bot.user_id)
        before = len(advocate.messages[dispatch])
        await advocate.say(dispatch, "!claim")
        try:
            await until(lambda: any(b.startswith("No chat is waiting") for _, _, b in
                                    advocate.messages[dispatch][before:]), 30, "the bot's answer")
            ready.append(advocate)
        except AssertionError:
            log(f"capacity: the bot cannot read {advocate.client.user_id}; left out")
    return ready


# ---------------------------------------------------------------- one load window

async def load_window(chats, window: float, meter: ProcessMeter, *, floor=None, profile_pids=None,
                      profiles=None) -> dict:
    sent: dict[str, tuple[str, float, object]] = {}  # text → (direction, t0, receiver)
    stop_at = now() + window
    floor_s: list[float] = []
    tasks = [asyncio.create_task(c) for survivor, advocate, room in chats
             for c in (survivor_side(survivor, sent, stop_at), advocate_side(advocate, room, survivor, sent, stop_at))]
    if floor is not None:
        tasks.append(asyncio.create_task(floor_probe(floor, floor_s, stop_at)))
    meter.mark()
    t_mark = now()
    profiling = None
    if profile_pids is not None:
        profiling = asyncio.create_task(profile.record(
            {n: profile_pids[n] for n in ("bot", "webchat", "synapse")}, seconds=max(5.0, window - 5)))
    await asyncio.gather(*tasks)
    cpu = meter.cpu_percent()
    if any(name.startswith("synapse:") for name in cpu):  # the worker layout: all of Synapse
        cpu["synapse_main"] = cpu["synapse"]
        cpu["synapse"] = sum(v for name, v in cpu.items() if name == "synapse" or name.startswith("synapse:"))
    if any(name.startswith("webchat:") for name in cpu):  # several gateways: all of them
        cpu["webchat_g1"] = cpu["webchat"]
        cpu["webchat"] = sum(v for name, v in cpu.items() if name == "webchat" or name.startswith("webchat:"))
    elapsed = now() - t_mark
    if profiling is not None:
        profiles.update(await profiling)
    latencies, lost = await collect(chats, sent)
    s, f = summary_ms(latencies), summary_ms(floor_s)
    return {"chats": len(chats), "sent": len(sent), "lost": lost, "p50": s["p50"], "p95": s["p95"],
            "p99": s["p99"], "floor_p50": f["p50"], "floor_p95": f["p95"], "floor_n": f["n"], "cpu": cpu,
            "server_cpu_ms_per_msg": cpu_ms_per_msg(cpu, SERVER, elapsed, len(sent)),
            "homeserver_cpu_ms_per_msg": cpu_ms_per_msg(cpu, HOMESERVER, elapsed, len(sent)),
            "ok": lost == 0 and s["p95"] < 1000}


async def survivor_side(survivor: TimedSurvivor, sent: dict, stop_at: float) -> None:
    await asyncio.sleep(random.uniform(0, PACE_S))
    while now() < stop_at:
        text = f"s {secrets.token_hex(6)}"
        sent[text] = ("up", await survivor.send_text(text, secrets.token_hex(8)), None)
        await asyncio.sleep(PACE_S)


async def advocate_side(advocate: TimedAdvocate, room: str, survivor: TimedSurvivor, sent: dict,
                        stop_at: float) -> None:
    await asyncio.sleep(random.uniform(0, PACE_S))
    while now() < stop_at:
        text = f"a {secrets.token_hex(6)}"
        t0 = now()
        sent[text] = ("down", t0, survivor)
        try:
            await advocate.send_text(room, text)
        except Exception as error:
            log(f"capacity: an advocate's send failed: {error!r}")
        await asyncio.sleep(max(0.0, PACE_S - (now() - t0)))


async def floor_probe(floor, floor_s: list[float], stop_at: float) -> None:
    """One encrypted hop between two plain clients every second: the latency floor under this load."""
    a, b, room = floor
    i = 0
    while now() < stop_at:
        sender, receiver = (a, b) if i % 2 == 0 else (b, a)
        i += 1
        text = f"f {secrets.token_hex(6)}"
        t0 = await sender.send_text(room, text)
        try:
            floor_s.append(await receiver.wait_text(text, 20) - t0)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(1.0)


async def collect(chats, sent: dict) -> tuple[list[float], int]:
    """Latencies of the messages that arrived within DRAIN_S after the window, and how many did not."""
    advocates = {id(a): a for _, a, _ in chats}

    def arrival(text: str, direction: str, survivor) -> float | None:
        if direction == "down":
            return survivor.arrived.get(text)
        key = f"Survivor: {text}"
        for advocate in advocates.values():
            if key in advocate.arrived:
                return advocate.arrived[key][1]
        return None

    drain_until = now() + DRAIN_S
    while now() < drain_until:
        if all(arrival(t, d, s) is not None for t, (d, _, s) in sent.items()):
            break
        await asyncio.sleep(0.2)
    latencies, lost = [], 0
    for text, (direction, t0, survivor) in sent.items():
        t1 = arrival(text, direction, survivor)
        if t1 is None:
            lost += 1
        else:
            latencies.append(t1 - t0)
    return latencies, lost


def cpu_ms_per_msg(cpu: dict[str, float], names: tuple[str, ...], elapsed: float, sent: int) -> float:
    """CPU time of these processes (% of one core over ``elapsed``) per relayed message."""
    return sum(cpu[n] for n in names) / 100 * elapsed / sent * 1000 if sent else float("nan")


def cores_for(chats: int, ms_per_msg: float) -> float:
    """Cores of server CPU that ``chats`` at human pace need, at ``ms_per_msg``."""
    return chats * 2 / PACE_S * ms_per_msg / 1000


# ---------------------------------------------------------------- report

def report(ramp: Ramp) -> dict:
    results = ramp.results
    floor = ramp.floor_before.get("ms_per_relayed_message", float("nan"))
    floor_after = ramp.floor_after.get("ms_per_relayed_message", float("nan"))
    for r in results:
        r["server_per_floor"] = r["server_cpu_ms_per_msg"] / floor
        r["server_per_floor_after"] = r["server_cpu_ms_per_msg"] / floor_after
    best = max((r["chats"] for r in results if r["ok"]), default=0)
    text = step_table(results) + "\n" + cost_lines(results, floor, floor_after)
    targets = [check("capacity", f"server CPU per relayed message at {r['chats']} chats / homeserver floor",
                     r["server_per_floor"], "≤", FLOOR_RATIO, " ×",
                     note=f"{r['server_cpu_ms_per_msg']:.0f} ms vs floor {floor:.0f} ms before the ramp; "
                          f"{r['server_per_floor_after']:.2f} × the floor after it ({floor_after:.0f} ms)")
               for r in results]
    targets.append(check("capacity", "concurrent chats passing (p95 < 1 s, nothing lost)", best, "≥", TARGET_CHATS))
    text += "\n" + target_lines(targets) + "\n"
    prof_text = profile.print_profiles(ramp.profiles) if ramp.profiles else ""
    per_chat, mem_text = memory_table(ramp.memory)
    plot_capacity(results, best)
    plot_memory(ramp.memory, per_chat)
    cheapest = min((r["server_cpu_ms_per_msg"] for r in results if r.get("sent")), default=float("nan"))
    result = {"steps": results, "best": best, "memory": ramp.memory, "server_cpu_ms_per_msg_cheapest": cheapest,
              "cores_for_target": cores_for(TARGET_CHATS, cheapest),
              "homeserver_floor": {"before_ramp": ramp.floor_before, "after_ramp": ramp.floor_after},
              "memory_kib_per_chat": {k: v * 1024 for k, v in per_chat.items()},
              "profiles": ramp.profiles, "profile_text": prof_text, "table": text, "memory_table": mem_text}
    save_result(f"capacity{SUFFIX}", result, targets)
    return result


def step_table(results: list[dict]) -> str:
    nan = float("nan")
    rows = [[r["chats"], r["sent"], r["lost"], r["p50"], r["p95"], r["p99"], r.get("floor_p50", nan),
             r.get("floor_p95", nan), r["p95"] / r["floor_p95"] if r.get("floor_p95") else nan,
             r["cpu"]["synapse"], r["cpu"]["postgres"], r["cpu"]["bot"], r["cpu"]["webchat"], r["cpu"]["driver"],
             r["cpu"]["machine"], r["homeserver_cpu_ms_per_msg"], r["server_cpu_ms_per_msg"], r["server_per_floor"],
             "yes" if r["ok"] else "no"] for r in results]
    return table(f"Capacity at human pace (1 msg / {PACE_S:.0f} s each side), Synapse on PostgreSQL; "
                 f"latency in ms; CPU in % of one core (machine: % of all cores); CPU per relayed message in ms "
                 f"(homeserver: Synapse + PostgreSQL; server: + bot + gateway) and as a ratio to the homeserver floor",
                 ["chats", "msgs", "lost", "p50", "p95", "p99", "floor p50", "floor p95", "p95/floor", "synapse",
                  "postgres", "bot", "gateway", "driver", "machine", "hs ms/msg", "server ms/msg", "× floor", "ok"],
                 rows)


def cost_lines(results: list[dict], floor: float, floor_after: float) -> str:
    costs = [r["server_cpu_ms_per_msg"] for r in results if r.get("sent")]
    cheapest = min(costs, default=float("nan"))
    lines = [f"Homeserver floor (Synapse + PostgreSQL CPU to persist the two events of one relayed message, "
             f"nobody syncing): {floor:.0f} ms at idle before the ramp, {floor_after:.0f} ms after it",
             f"Server CPU per relayed message (Synapse + PostgreSQL + bot + gateway): "
             f"{', '.join(f'{c:.0f}' for c in costs)} ms by step; at the cheapest ({cheapest:.0f} ms), "
             f"{TARGET_CHATS} chats (2 messages / {PACE_S:.0f} s each) need "
             f"{cores_for(TARGET_CHATS, cheapest):.1f} cores of server CPU; this machine has {os.cpu_count()}, "
             f"and Synapse in one process uses at most about one"]
    for line in lines:
        log(line)
    return "\n".join(lines)


def memory_table(memory: list[dict]) -> tuple[dict, str]:
    per_chat = {n: slope([m["chats"] for m in memory], [m[n] for m in memory]) for n in ("webchat", "bot", "synapse")}
    text = table("Memory (RSS, MiB) against open chats", ["chats", "gateway", "bot", "synapse"],
                 [[m["chats"], m["webchat"], m["bot"], m["synapse"]] for m in memory]
                 + [["KiB/chat", per_chat["webchat"] * 1024, per_chat["bot"] * 1024, per_chat["synapse"] * 1024]])
    return per_chat, text


def plot_capacity(results: list[dict], best: int) -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7.5, 4.5))
    xs = [r["chats"] for r in results]
    ax.plot(xs, [r["p95"] for r in results], "o-", color="#d62728", label="p95 relay latency")
    ax.plot(xs, [r["p50"] for r in results], "o--", color="#ff9896", label="p50 relay latency")
    ax.plot(xs, [r.get("floor_p95", float("nan")) for r in results], "^:", color="#7f7f7f",
            label="p95 one-hop floor, same load")
    ax.axhline(1000, color="grey", linestyle=":", linewidth=1, label="limit: p95 < 1 s")
    ax.set_xlabel("concurrent chats")
    ax.set_ylabel("latency (ms)")
    ax2 = ax.twinx()
    for name, colour in (("synapse", "#1f77b4"), ("postgres", "#9467bd"), ("bot", "#2ca02c"),
                         ("webchat", "#bcbd22")):
        ax2.plot(xs, [r["cpu"][name] for r in results], "s-", color=colour, alpha=0.6,
                 label=f"CPU {'gateway' if name == 'webchat' else name}")
    ax2.set_ylabel("CPU, % of one core")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    ax.set_title(f"Capacity on 2 cores, Synapse on PostgreSQL{' with workers' if WORKERS else ''}: {best} chats pass")
    savefig(fig, f"capacity{SUFFIX}.png")


def plot_memory(memory: list[dict], per_chat: dict) -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 4))
    for name, label in (("webchat", "gateway"), ("bot", "bot"), ("synapse", "Synapse")):
        ax.plot([m["chats"] for m in memory], [m[name] for m in memory], "o-",
                label=f"{label}: {per_chat[name] * 1024:.0f} KiB/chat")
    ax.set_xlabel("open chats")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("Memory against open chats")
    ax.legend()
    savefig(fig, f"memory{SUFFIX}.png")
