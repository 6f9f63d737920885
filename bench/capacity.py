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
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets

from bench import profile
from bench.clients import Team, TimedAdvocate, TimedSurvivor
from bench.common import (
    ProcessMeter,
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
)
from bench.postgres import Postgres
from testkit.clients import open_chat_count, register_user, until

PACE_S = 10.0
DRAIN_S = 15.0
# HOTLINE_BENCH_WORKERS=N: the same ramp on Synapse's worker layout (`hotline init --workers N`:
# main process, event persister, N generic workers, Redis, nginx as the entrance). Its figures go
# under "capacity-workersN" (results.json, capacity-workersN.png); "synapse" is then the CPU of all
# of Synapse's processes. HOTLINE_BENCH_STEPS=10,20,30 limits the ramp's steps.
WORKERS = int(os.environ.get("HOTLINE_BENCH_WORKERS", "0"))
SUFFIX = f"-workers{WORKERS}" if WORKERS else ""


async def run(quick: bool = False) -> dict:
    steps = [4, 8] if quick else [10, 20, 30, 40, 50, 75, 100, 150, 200]
    if os.environ.get("HOTLINE_BENCH_STEPS"):
        steps = [int(n) for n in os.environ["HOTLINE_BENCH_STEPS"].split(",")]
    window = 20.0 if quick else 30.0
    per_advocate = 20
    advocates_n = -(-steps[-1] // per_advocate)  # enough to hold the last step's chats
    profile_at = steps[0]
    ramp_budget = 600 if quick else int(os.environ.get("HOTLINE_BENCH_RAMP_SECONDS", "600"))
    pg = Postgres()
    pg.start()
    results: list[dict] = []
    memory: list[dict] = []
    profiles: dict = {}
    try:
        # Relaxed limits: one advocate account stands in for 20 people here; Synapse's message
        # limit is per account, made for one person.
        async with running_stack("capacity", advocates=advocates_n, postgres=pg,
                                 settings={"max_open_chats": "2000",
                                           "max_chats_per_advocate": str(per_advocate)},
                                 relaxed_rate_limits=True, workers=WORKERS) as stack:
            pids = stack_pids(stack) | {"postgres": pg.pid}
            meter = ProcessMeter(pids)
            advocates = []
            for account in stack.accounts.advocates:
                advocate = TimedAdvocate(stack.homeserver.url, account.user_id, account.password)
                await advocate.login()
                advocates.append(advocate)
            # One at a time, each advocate types "!claim" with nothing waiting and waits for the bot's
            # answer: its Megolm key has then reached the bot. (Twenty-five advocates sending their
            # first message at once exhausted the bot's one-time keys: nio then shares no key with
            # the bot, and that advocate's commands stay undecryptable to it; see docs/performance.md.)
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
            team = Team(ready, per_advocate)
            floor = await floor_pair(stack)
            chats: list[tuple[TimedSurvivor, TimedAdvocate, str]] = []
            await asyncio.sleep(3)
            memory.append({"chats": 0} | {n: meter.rss_mib(n) for n in ("webchat", "bot", "synapse")})
            ramp_started = now()
            gate = asyncio.Semaphore(4)

            async def open_one(tag: str) -> None:
                async with gate:
                    survivor, advocate, room = await team.open_chat(stack, tag)
                    await advocate.send_text(room, f"hi {tag}")  # Megolm session shared before measuring
                    await survivor.wait_text(f"hi {tag}", 60)
                    chats.append((survivor, advocate, room))

            for target in steps:
                if now() - ramp_started > ramp_budget:
                    log(f"capacity: ramp budget of {ramp_budget} s used up; stopping before {target}")
                    break
                t_open = now()
                log(f"capacity: opening chats {len(chats) + 1}..{target}")
                outcome = await asyncio.gather(*(open_one(f"c{i}") for i in range(len(chats), target)),
                                               return_exceptions=True)
                failures = [o for o in outcome if isinstance(o, BaseException)]
                open_s = now() - t_open
                if failures:
                    log(f"capacity: {len(failures)} chats failed to open: {failures[0]!r}")
                await asyncio.sleep(3)
                memory.append({"chats": len(chats)} | {n: meter.rss_mib(n) for n in ("webchat", "bot", "synapse")})
                step = await load_window(chats, window, meter, stack, floor=floor,
                                         profile_pids=pids if target == profile_at else None, profiles=profiles)
                step |= {"target": target, "open_s": open_s, "open_failures": len(failures)}
                results.append(step)
                log(f"capacity: {len(chats)} chats: p95 {step['p95']:.0f} ms, lost {step['lost']}, "
                    f"CPU synapse {step['cpu']['synapse']:.0f}% bot {step['cpu']['bot']:.0f}% "
                    f"gateway {step['cpu']['webchat']:.0f}% machine {step['cpu']['machine']:.0f}%")
                if step["lost"] or failures or step["p95"] > 3000:
                    log("capacity: clearly past the limit; stopping the ramp")
                    break
            log(f"capacity: closing {len(chats)} chats")
            close_gate = asyncio.Semaphore(8)

            async def close_one(survivor: TimedSurvivor, advocate: TimedAdvocate, room: str) -> None:
                async with close_gate:
                    await advocate.say(room, "!close")
                    try:
                        await survivor.wait_type("ended", 120)
                    finally:
                        await survivor.close()
                        advocate.forget(room)

            await asyncio.gather(*(close_one(*c) for c in chats), return_exceptions=True)
            try:
                await until(lambda: open_chat_count(stack) == 0, 600, "every chat erased")
            except AssertionError as error:
                log(f"capacity: {error}; {open_chat_count(stack)} chats still open in the bot")
            for advocate in advocates + list(floor[:2]):
                await advocate.close()
    finally:
        pg.stop()

    passing = [r for r in results if r["ok"]]
    best = max((r["chats"] for r in passing), default=0)
    rows = [[r["chats"], r["sent"], r["lost"], r["p50"], r["p95"], r["p99"], r.get("floor_p50", float("nan")),
             r.get("floor_p95", float("nan")), r["p95"] / r["floor_p95"] if r.get("floor_p95") else float("nan"),
             r["cpu"]["synapse"],
             r["cpu"]["postgres"], r["cpu"]["bot"], r["cpu"]["webchat"], r["cpu"]["driver"], r["cpu"]["machine"],
             r["server_cpu_ms_per_msg"], "yes" if r["ok"] else "no"] for r in results]
    text = table(f"Capacity at human pace (1 msg / {PACE_S:.0f} s each side), Synapse on PostgreSQL; "
                 f"latency in ms; CPU in % of one core (machine: % of all cores)",
                 ["chats", "msgs", "lost", "p50", "p95", "p99", "floor p50", "floor p95", "p95/floor", "synapse", "postgres", "bot", "gateway",
                  "driver", "machine", "server ms/msg", "ok"], rows)
    costs = [r["server_cpu_ms_per_msg"] for r in results if r.get("sent")]
    cheapest = min(costs, default=float("nan"))
    projection = (f"Server CPU per relayed message (Synapse + PostgreSQL + bot + gateway): "
                  f"{', '.join(f'{c:.0f}' for c in costs)} ms by step; at the cheapest ({cheapest:.0f} ms), "
                  f"{TARGET_CHATS} chats (2 messages / {PACE_S:.0f} s each) need "
                  f"{cores_for(TARGET_CHATS, cheapest):.1f} cores of server CPU; this machine has {os.cpu_count()}, "
                  f"and Synapse in one process uses at most about one")
    text += "\n" + projection
    log(projection)
    prof_text = profile.print_profiles(profiles) if profiles else ""
    per_chat = {n: slope([m["chats"] for m in memory], [m[n] for m in memory]) for n in ("webchat", "bot", "synapse")}
    mem_text = table("Memory (RSS, MiB) against open chats",
                     ["chats", "gateway", "bot", "synapse"],
                     [[m["chats"], m["webchat"], m["bot"], m["synapse"]] for m in memory]
                     + [["KiB/chat", per_chat["webchat"] * 1024, per_chat["bot"] * 1024, per_chat["synapse"] * 1024]])
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
    fig, ax = pyplot.subplots(figsize=(6, 4))
    for name, label in (("webchat", "gateway"), ("bot", "bot"), ("synapse", "Synapse")):
        ax.plot([m["chats"] for m in memory], [m[name] for m in memory], "o-",
                label=f"{label}: {per_chat[name] * 1024:.0f} KiB/chat")
    ax.set_xlabel("open chats")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("Memory against open chats")
    ax.legend()
    savefig(fig, f"memory{SUFFIX}.png")
    result = {"steps": results, "best": best, "memory": memory, "server_cpu_ms_per_msg_cheapest": cheapest,
              "cores_for_target": cores_for(TARGET_CHATS, cheapest),
              "memory_kib_per_chat": {k: v * 1024 for k, v in per_chat.items()},
              "profiles": profiles, "profile_text": prof_text, "table": text, "memory_table": mem_text}
    save_result(f"capacity{SUFFIX}", result)
    return result


async def load_window(chats, window: float, meter: ProcessMeter, stack, *, floor=None, profile_pids=None,
                      profiles=None) -> dict:
    sent: dict[str, tuple[str, float, object]] = {}  # text → (direction, t0, receiver)
    stop_at = now() + window

    async def survivor_side(survivor: TimedSurvivor) -> None:
        await asyncio.sleep(random.uniform(0, PACE_S))
        while now() < stop_at:
            text = f"s {secrets.token_hex(6)}"
            sent[text] = ("up", await survivor.send_text(text, secrets.token_hex(8)), None)
            await asyncio.sleep(PACE_S)

    async def advocate_side(advocate: TimedAdvocate, room: str, survivor: TimedSurvivor) -> None:
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

    tasks = []
    for survivor, advocate, room in chats:
        tasks.append(asyncio.create_task(survivor_side(survivor)))
        tasks.append(asyncio.create_task(advocate_side(advocate, room, survivor)))
    floor_s: list[float] = []

    async def floor_probe() -> None:
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

    if floor is not None:
        tasks.append(asyncio.create_task(floor_probe()))
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
    elapsed = now() - t_mark
    if profiling is not None:
        profiles.update(await profiling)
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
    s = summary_ms(latencies)
    f = summary_ms(floor_s)
    return {"chats": len(chats), "sent": len(sent), "lost": lost, "p50": s["p50"], "p95": s["p95"],
            "p99": s["p99"], "floor_p50": f["p50"], "floor_p95": f["p95"], "floor_n": f["n"], "cpu": cpu,
            "server_cpu_ms_per_msg": server_cpu_ms_per_msg(cpu, elapsed, len(sent)),
            "ok": lost == 0 and s["p95"] < 1000}


SERVER = ("synapse", "postgres", "bot", "webchat")
TARGET_CHATS = 200


def server_cpu_ms_per_msg(cpu: dict[str, float], elapsed: float, sent: int) -> float:
    """CPU time of the server side (homeserver, database, bot, gateway) per relayed message."""
    return sum(cpu[n] for n in SERVER) / 100 * elapsed / sent * 1000 if sent else float("nan")


def cores_for(chats: int, ms_per_msg: float) -> float:
    """Cores of server CPU that ``chats`` at human pace need, at ``ms_per_msg``."""
    return chats * 2 / PACE_S * ms_per_msg / 1000
