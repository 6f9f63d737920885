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
    check,
    log,
    now,
    plt,
    running_stack,
    save_result,
    savefig,
    table,
    target_lines,
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
    results = []
    # Relaxed limits: the chats are filled with up to 1000 messages as fast as they relay, far past
    # what Synapse allows one account (3 a second after 40 at once); this measures the erase.
    async with running_stack("erase", advocates=1, relaxed_rate_limits=True) as stack:
        account = stack.accounts.advocates[0]
        advocate = TimedAdvocate(stack.homeserver.url, account.user_id, account.password)
        await advocate.login()
        team = Team([advocate])
        for size in sizes:
            results.append(await one_chat(stack, team, advocate, size))
        await advocate.close()
    return report(results)


async def one_chat(stack, team: Team, advocate: TimedAdvocate, size: int) -> dict:
    """Open a chat, fill it with ``size`` messages, close it and time the erase."""
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
    times = await erase_times(stack, t0, case_room, survivor_room, survivor_user)
    await survivor.close()
    advocate.forget(case_room)
    done = times["purged_and_erased_s"]
    log(f"erase: {size} messages: " + (f"purged and erased after {done:.2f} s" if done is not None
                                       else "not purged and erased within 900 s"))
    return {"messages": size, "not_relayed": missing, "events_before": events, "ended_s": t_ended} | times


async def erase_times(stack, t0: float, case_room: str, survivor_room: str, survivor_user: str) -> dict:
    """Seconds after ``t0`` until the survivor's room is purged with the account erased, until the
    bot has dropped the chat, and until both rooms are purged (None: not within 900 s)."""
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
    return {"survivor_room_s": t_survivor, "purged_and_erased_s": t_purged, "bot_done_s": t_bot}


def report(results: list[dict]) -> dict:
    def shown(seconds: float | None) -> float | str:
        return seconds if seconds is not None else "timeout"

    rows = [[r["messages"], r["events_before"], r["ended_s"], shown(r["survivor_room_s"]),
             shown(r["purged_and_erased_s"]), shown(r["bot_done_s"])] for r in results]
    text = table("Time to erase after !close (s), Synapse on SQLite",
                 ["messages", "events in both rooms", "page told", "survivor room purged + account erased",
                  "both rooms purged", "bot done"], rows)
    worst_survivor = max((r["survivor_room_s"] or float("inf") for r in results), default=float("inf"))
    largest = max(results, key=lambda r: r["messages"])
    whole = largest["purged_and_erased_s"] or float("inf")
    targets = [
        check("erase", "survivor room purged after !close (worst chat)", worst_survivor, "<", 2, " s"),
        check("erase", f"whole chat erased, {largest['messages']} messages", whole, "<", 20, " s",
              note="" if largest["messages"] >= 1000 else "not 1,000 messages"),
    ]
    text += "\n" + target_lines(targets) + "\n"
    plot(results)
    result = {"runs": results, "table": text}
    save_result("erase", result, targets)
    return result


def plot(results: list[dict]) -> None:
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
