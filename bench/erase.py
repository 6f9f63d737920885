"""Time to erase: from the advocate's ``!close`` to the survivor's room purged with the account
erased, and to both rooms purged, for chats of 10, 100 and 1,000 messages.

Targets (issue 15): the survivor's room purged < 2 s after the close whatever the chat's length
(it is purged at once, without redactions), the whole chat erased < 20 s for 1,000 messages (the
case room is redacted for staff clients first, then given ERASE_REDACTION_GRACE_SECONDS, 5 s by
default, before its purge).

A chat of N messages: the survivor's ``hello`` and N − 1 messages from the advocate, each relayed
by the bot, so each room holds about N message events (2 N in all) before the close. The end is
observed on the homeserver itself: no row of either room left in ``events``, ``event_json``,
``room_memberships`` and ``rooms``, and the account marked deactivated (polled every 50 ms, read
only). Also shown: when the page got ``ended``, and when the bot dropped the chat from its routing
database (it does that after the erase succeeded).
"""

from __future__ import annotations

import asyncio

from bench.clients import Team, TimedAdvocate
from bench.common import (
    log,
    now,
    plt,
    running_stack,
    save_result,
    savefig,
    table,
)
from testkit.clients import homeserver_rows, routing, user_deactivated


def events_in(stack, room_ids: list[str]) -> int:
    marks = ",".join("?" for _ in room_ids)
    return stack.homeserver.query(f"SELECT COUNT(*) FROM events WHERE room_id IN ({marks})", room_ids)[0][0]


def chat_of(stack, case_room: str) -> tuple[str, str]:
    with routing(stack) as view:
        chat = view.chat_in_case_room(case_room)
    assert chat is not None, f"no open chat in {case_room}"
    return chat.survivor_room, chat.survivor


def row_exists(stack, case_room: str) -> bool:
    with routing(stack) as view:
        return view.chat_in_case_room(case_room) is not None


async def run(quick: bool = False) -> dict:
    sizes = [10, 50] if quick else [10, 100, 1000]
    rows, results = [], []
    # Relaxed limits: the chats are filled with up to 1000 messages as fast as they relay, far past
    # what Synapse allows one account (3 a second after 30 at once); this measures the erase.
    async with running_stack("erase", advocates=1, relaxed_rate_limits=True) as stack:
        account = stack.accounts.advocates[0]
        advocate = TimedAdvocate(stack.homeserver.url, account.user_id, account.password)
        await advocate.login()
        team = Team([advocate])
        for size in sizes:
            survivor, _, case_room = await team.open_chat(stack, f"erase{size}")
            survivor_room, survivor_user = chat_of(stack, case_room)
            log(f"erase: filling a chat with {size} messages")
            texts = [f"m{i:04d} of {size}" for i in range(size - 1)]
            # Ten at a time, each ten relayed before the next (a burst far beyond human pace would
            # measure the relay, not the erase).
            missing = 0
            for k in range(0, len(texts), 10):
                batch = texts[k:k + 10]
                await asyncio.gather(*(advocate.send_text(case_room, t) for t in batch))
                got = await asyncio.gather(*(survivor.wait_text(t, 60) for t in batch), return_exceptions=True)
                missing += sum(isinstance(g, BaseException) for g in got)
            if missing:
                log(f"erase: {missing} of {len(texts)} messages did not reach the page within 60 s")
            events = events_in(stack, [survivor_room, case_room])
            t0 = now()
            await advocate.say(case_room, "!close")
            t_ended = await survivor.wait_type("ended", 120) - t0
            t_bot = t_purged = t_survivor = None
            deadline = t0 + 900
            while now() < deadline:
                if t_survivor is None and not any(homeserver_rows(stack.homeserver, [survivor_room]).values()) \
                        and user_deactivated(stack.homeserver, survivor_user):
                    t_survivor = now() - t0
                if t_bot is None and not row_exists(stack, case_room):
                    t_bot = now() - t0
                if t_purged is None and not any(homeserver_rows(stack.homeserver, [survivor_room, case_room]).values()) \
                        and user_deactivated(stack.homeserver, survivor_user):
                    t_purged = now() - t0
                if t_bot is not None and t_purged is not None:
                    break
                await asyncio.sleep(0.05)
            await survivor.close()
            advocate.forget(case_room)
            results.append({"messages": size, "not_relayed": missing, "events_before": events, "ended_s": t_ended,
                            "survivor_room_s": t_survivor, "purged_and_erased_s": t_purged, "bot_done_s": t_bot})
            rows.append([size, events, t_ended, t_survivor if t_survivor is not None else "timeout",
                         t_purged if t_purged is not None else "timeout", t_bot if t_bot is not None else "timeout"])
            log(f"erase: {size} messages: purged and erased after {t_purged} s")
        await advocate.close()
    text = table("Time to erase after !close (s), Synapse on SQLite",
                 ["messages", "events in both rooms", "page told", "survivor room purged + account erased",
                  "both rooms purged", "bot done"], rows)
    worst_survivor = max((r["survivor_room_s"] or float("inf") for r in results), default=float("inf"))
    largest = max(results, key=lambda r: r["messages"])
    whole = largest["purged_and_erased_s"] or float("inf")
    targets = [
        f"target survivor room purged < 2 s after !close (worst {worst_survivor:.2f} s): "
        f"{'met' if worst_survivor < 2 else 'missed'}",
        f"target whole chat erased < 20 s for {largest['messages']} messages ({whole:.1f} s): "
        f"{'met' if whole < 20 else 'missed'}" + ("" if largest["messages"] >= 1000 else " (quick run: not 1,000)"),
    ]
    for line in targets:
        log(f"erase: {line}")
    text += "\n" + "\n".join(targets) + "\n"
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 4))
    done = [r for r in results if r["purged_and_erased_s"] is not None]
    ax.plot([r["messages"] for r in done], [r["purged_and_erased_s"] for r in done], "o-",
            label="both rooms purged + account erased")
    ax.plot([r["messages"] for r in results], [r["ended_s"] for r in results], "s--", label="page told \"ended\"")
    survivor_done = [r for r in results if r["survivor_room_s"] is not None]
    ax.plot([r["messages"] for r in survivor_done], [r["survivor_room_s"] for r in survivor_done], "^-",
            label="survivor room purged + account erased")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("messages in the chat")
    ax.set_ylabel("seconds after !close")
    ax.set_title("Time to erase")
    ax.legend()
    savefig(fig, "erase.png")
    result = {"runs": results, "table": text, "targets": targets}
    save_result("erase", result)
    return result
