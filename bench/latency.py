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
"""

from __future__ import annotations

import asyncio
import secrets

from bench.clients import Team, TimedAdvocate, close_chat
from bench.common import (
    log,
    now,
    pct,
    plt,
    running_stack,
    save_result,
    savefig,
    summary_ms,
    table,
)
from testkit.clients import register_user, until

WARMUP = 5


async def run(quick: bool = False) -> dict:
    total = 60 if quick else 500
    block = 20 if quick else 50
    # Relaxed limits: blocks of ten each way every 3.4 s (the survivor's WebSocket allows 30 frames
    # per 10 s) are about three messages a second per account, at the edge of Synapse's limit once
    # 30 are spent. This measures the relay; tests/test_rate_limits.py checks human pace on the shipped limits.
    async with running_stack("latency", advocates=1, relaxed_rate_limits=True) as stack:
        # The floor: two plain users in one encrypted room.
        password = secrets.token_urlsafe(12)
        # floor_a is a server admin only because the hotline's invite policy lets nobody else invite.
        a_id = await register_user(stack, "floor_a", password, admin=True)
        b_id = await register_user(stack, "floor_b", password)
        floor_a = TimedAdvocate(stack.homeserver.url, a_id, password)
        floor_b = TimedAdvocate(stack.homeserver.url, b_id, password)
        await floor_a.login()
        await floor_b.login()
        created = await floor_a.client.room_create(
            invite=[b_id], initial_state=[{"type": "m.room.encryption", "state_key": "",
                                           "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        floor_room = created.room_id
        await until(lambda: floor_room in floor_b.client.rooms and floor_room in floor_a.client.rooms
                    and b_id in floor_a.client.rooms[floor_room].users
                    and b_id not in floor_a.client.rooms[floor_room].invited_users, 30, "the floor room")

        account = stack.accounts.advocates[0]
        advocate = TimedAdvocate(stack.homeserver.url, account.user_id, account.password)
        await advocate.login()
        team = Team([advocate])
        survivor, _, case_room = await team.open_chat(stack, "latency")

        floor: list[float] = []
        to_advocate: list[float] = []
        to_survivor: list[float] = []
        order: list[str] = []

        async def floor_block(n: int) -> None:
            for i in range(n):
                text = f"floor {secrets.token_hex(6)}"
                sender, receiver = (floor_a, floor_b) if i % 2 == 0 else (floor_b, floor_a)
                t0 = await sender.send_text(floor_room, text)
                t1 = await receiver.wait_text(text)
                floor.append(t1 - t0)

        async def relay_block(n: int) -> None:
            for i in range(n):
                text = f"up {secrets.token_hex(6)}"
                t0 = await survivor.send_text(text, secrets.token_hex(8))
                t1 = await advocate.wait_text(f"Survivor: {text}")
                to_advocate.append(t1 - t0)
                text = f"down {secrets.token_hex(6)}"
                t0 = await advocate.send_text(case_room, text)
                t1 = await survivor.wait_text(text)
                to_survivor.append(t1 - t0)

        log(f"latency: warm-up, then {total} floor messages and {total} relays each way, in blocks of {block}")
        await floor_block(2 * WARMUP)
        await relay_block(WARMUP)
        floor.clear(), to_advocate.clear(), to_survivor.clear()
        started = now()
        # The survivor's WebSocket allows 30 frames per 10 s: relay blocks are paced to it.
        while len(to_advocate) < total:
            n = min(block, total - len(to_advocate))
            await floor_block(2 * n)
            order.append("floor")
            t_block = now()
            for k in range(0, n, 10):
                await relay_block(min(10, n - k))
                spare = 3.4 - (now() - t_block)
                if spare > 0:
                    await asyncio.sleep(spare)
                t_block = now()
            order.append("relay")
            log(f"latency: {len(to_advocate)}/{total}")
        elapsed = now() - started

        await close_chat(advocate, survivor, case_room)
        for client in (advocate, floor_a, floor_b):
            await client.close()

    f, up, down = summary_ms(floor), summary_ms(to_advocate), summary_ms(to_survivor)
    both = summary_ms(to_advocate + to_survivor)
    rows = []
    for name, s in (("floor: one hop, nio → nio", f), ("relay survivor → advocate", up),
                    ("relay advocate → survivor", down), ("relay, both directions", both)):
        rows.append([name, s["n"], s["p50"], s["p95"], s["p99"], s["p50"] / f["p50"], s["p95"] / f["p95"]])
    text = table("Relay latency (ms) against the one-hop floor, same run",
                 ["path", "n", "p50", "p95", "p99", "p50/floor", "p95/floor"], rows)

    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 4))
    top = max(pct(floor, 99.5), pct(to_advocate, 99.5), pct(to_survivor, 99.5)) * 1000
    bins = [top * i / 60 for i in range(61)]
    for data, label in ((floor, "floor (one hop)"), (to_advocate, "survivor → advocate"),
                        (to_survivor, "advocate → survivor")):
        ax.hist([x * 1000 for x in data], bins=bins, histtype="step", linewidth=1.6, label=label)
    ax.axvline(f["p50"] * 2.3, color="grey", linestyle="--", linewidth=1, label="target p50: 2.3 × floor p50")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("messages")
    ax.set_title(f"Relay latency vs one-hop floor (n={up['n']} each way)")
    ax.legend()
    savefig(fig, "latency.png")
    result = {"floor": f, "to_advocate": up, "to_survivor": down, "both": both,
              "ratio_p50_to_advocate": up["p50"] / f["p50"], "ratio_p50_to_survivor": down["p50"] / f["p50"],
              "ratio_p50_both": both["p50"] / f["p50"], "elapsed_s": elapsed, "table": text}
    save_result("latency", result)
    return result
