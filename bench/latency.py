"""Relay latency, survivor ⇄ advocate, against the one-hop floor measured in the same run.

- relay, survivor → advocate: the page's WebSocket ``say`` leaves → the advocate's nio client has
  decrypted ``Survivor: <text>`` (gateway → Synapse → bot decrypts, re-encrypts → Synapse → advocate).
- relay, advocate → survivor: the advocate's ``room_send`` starts (encrypts, PUTs) → the page
  receives the ``message`` frame (Synapse → bot → Synapse → gateway decrypts → WebSocket).
- floor: one encrypted message between two plain nio clients in one room on the same Synapse,
  ``room_send`` start → decrypted by the other client; both directions.

Samples are taken one at a time (no load), in interleaved blocks (floor, relay, floor, …) so that
a noisy neighbour on the machine hits both alike. The first few messages of each path (Olm and
Megolm session set-up) are warm-up and not counted.

Target (issue 15): the relay's p50, both directions together, ≤ 2.3 × the floor's p50 (a relayed
message crosses two hops: 2 × is the physical limit).
"""

from __future__ import annotations

import asyncio
import secrets

from bench.clients import Team, TimedAdvocate, close_chat, floor_pair
from bench.common import (
    check,
    log,
    now,
    pct,
    plt,
    running_stack,
    save_result,
    savefig,
    summary_ms,
    table,
    target_lines,
)

WARMUP = 5
TARGET_RATIO = 2.3


async def run(quick: bool = False) -> dict:
    total = 60 if quick else 500
    block = 20 if quick else 50
    # Relaxed limits: blocks of ten each way every 3.4 s (the survivor's WebSocket allows 30 frames
    # per 10 s) are about three messages a second per account, at the edge of Synapse's limit once
    # 30 are spent. This measures the relay; tests/test_rate_limits.py checks human pace on the shipped limits.
    async with running_stack("latency", advocates=1, relaxed_rate_limits=True) as stack:
        floor_a, floor_b, floor_room = await floor_pair(stack)  # the floor: two plain users, one encrypted room
        account = stack.accounts.advocates[0]
        advocate = TimedAdvocate(stack.homeserver.url, account.user_id, account.password)
        await advocate.login()
        survivor, _, case_room = await Team([advocate]).open_chat(stack, "latency")
        paths = Paths(floor_a, floor_b, floor_room, survivor, advocate, case_room)
        log(f"latency: warm-up, then {total} floor messages and {total} relays each way, in blocks of {block}")
        await paths.floor_block(2 * WARMUP)
        await paths.relay_block(WARMUP)
        paths.floor.clear(), paths.to_advocate.clear(), paths.to_survivor.clear()
        started = now()
        while len(paths.to_advocate) < total:
            n = min(block, total - len(paths.to_advocate))
            await paths.floor_block(2 * n)
            await paths.paced_relay(n)
            log(f"latency: {len(paths.to_advocate)}/{total}")
        elapsed = now() - started
        await close_chat(advocate, survivor, case_room)
        for client in (advocate, floor_a, floor_b):
            await client.close()
    return report(paths, elapsed)


class Paths:
    """The floor and the relay, sampled one message at a time; seconds per message."""

    def __init__(self, floor_a, floor_b, floor_room: str, survivor, advocate, case_room: str) -> None:
        self.floor_a, self.floor_b, self.floor_room = floor_a, floor_b, floor_room
        self.survivor, self.advocate, self.case_room = survivor, advocate, case_room
        self.floor: list[float] = []
        self.to_advocate: list[float] = []
        self.to_survivor: list[float] = []

    async def floor_block(self, n: int) -> None:
        for i in range(n):
            text = f"floor {secrets.token_hex(6)}"
            sender, receiver = (self.floor_a, self.floor_b) if i % 2 == 0 else (self.floor_b, self.floor_a)
            t0 = await sender.send_text(self.floor_room, text)
            self.floor.append(await receiver.wait_text(text) - t0)

    async def relay_block(self, n: int) -> None:
        for _ in range(n):
            text = f"up {secrets.token_hex(6)}"
            t0 = await self.survivor.send_text(text, secrets.token_hex(8))
            self.to_advocate.append(await self.advocate.wait_text(f"Survivor: {text}") - t0)
            text = f"down {secrets.token_hex(6)}"
            t0 = await self.advocate.send_text(self.case_room, text)
            self.to_survivor.append(await self.survivor.wait_text(text) - t0)

    async def paced_relay(self, n: int) -> None:
        """``n`` relays each way, ten every 3.4 s: the survivor's WebSocket allows 30 frames per 10 s."""
        t_block = now()
        for k in range(0, n, 10):
            await self.relay_block(min(10, n - k))
            spare = 3.4 - (now() - t_block)
            if spare > 0:
                await asyncio.sleep(spare)
            t_block = now()


def report(paths: Paths, elapsed: float) -> dict:
    f, up, down = summary_ms(paths.floor), summary_ms(paths.to_advocate), summary_ms(paths.to_survivor)
    both = summary_ms(paths.to_advocate + paths.to_survivor)
    rows = [[name, s["n"], s["p50"], s["p95"], s["p99"], s["p50"] / f["p50"], s["p95"] / f["p95"]]
            for name, s in (("floor: one hop, nio → nio", f), ("relay survivor → advocate", up),
                            ("relay advocate → survivor", down), ("relay, both directions", both))]
    text = table("Relay latency (ms) against the one-hop floor, same run",
                 ["path", "n", "p50", "p95", "p99", "p50/floor", "p95/floor"], rows)
    targets = [check("latency", "relay p50 (both directions) / floor p50", both["p50"] / f["p50"], "≤",
                     TARGET_RATIO, " ×", note=f"relay p50 {both['p50']:.0f} ms, floor p50 {f['p50']:.0f} ms")]
    text += "\n" + target_lines(targets) + "\n"
    plot(paths, f, up)
    result = {"floor": f, "to_advocate": up, "to_survivor": down, "both": both,
              "ratio_p50_to_advocate": up["p50"] / f["p50"], "ratio_p50_to_survivor": down["p50"] / f["p50"],
              "ratio_p50_both": both["p50"] / f["p50"], "elapsed_s": elapsed, "table": text}
    save_result("latency", result, targets)
    return result


def plot(paths: Paths, f: dict, up: dict) -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 4))
    top = max(pct(paths.floor, 99.5), pct(paths.to_advocate, 99.5), pct(paths.to_survivor, 99.5)) * 1000
    bins = [top * i / 60 for i in range(61)]
    for data, label in ((paths.floor, "floor (one hop)"), (paths.to_advocate, "survivor → advocate"),
                        (paths.to_survivor, "advocate → survivor")):
        ax.hist([x * 1000 for x in data], bins=bins, histtype="step", linewidth=1.6, label=label)
    ax.axvline(f["p50"] * TARGET_RATIO, color="grey", linestyle="--", linewidth=1,
               label=f"target p50: {TARGET_RATIO} × floor p50")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("messages")
    ax.set_title(f"Relay latency vs one-hop floor (n={up['n']} each way)")
    ax.legend()
    savefig(fig, "latency.png")
