"""Time to first contact: "Start chat" → the first Hotline notice on the page, and → the alert in
the dispatch room (decrypted in an advocate's client).

Each chat: open the WebSocket and send ``start`` (what the page's button does), take the times of
``started``, of the first ``message`` with role ``hotline``, and of the advocate's new
``Chat waiting`` alert; then "End chat", and wait until the bot has erased it before the next one.
The main series starts each chat SETTLE_S after the previous erase, from an idle hotline; a second,
shorter series starts each chat 0.2 s after the previous erase, which is measurably slower
although Synapse, the bot and the gateway are already idle on the CPU by then (not traced further).
"""

from __future__ import annotations

import asyncio

from bench.clients import TimedAdvocate, TimedSurvivor
from bench.common import (
    log,
    now,
    plt,
    running_stack,
    save_result,
    savefig,
    summary_ms,
    table,
)
from testkit.clients import open_chat_count, until

SETTLE_S = 2.0


async def run(quick: bool = False) -> dict:
    chats = 8 if quick else 50
    back_to_back = 4 if quick else 20
    async with running_stack("first-contact", advocates=1) as stack:
        account = stack.accounts.advocates[0]
        advocate = TimedAdvocate(stack.homeserver.url, account.user_id, account.password)
        alerts: list[float] = []
        advocate.on_text = lambda room, body, t: alerts.append(t) if body.startswith("Chat waiting") else None
        await advocate.login()
        await until(lambda: stack.accounts.dispatch_room in advocate.client.rooms, 30, "the dispatch room")
        started_s, notice_s, alert_s = [], [], []
        quick_notice_s, quick_alert_s = [], []
        slow_erases, keep_logs = 0, False
        log(f"first contact: {chats} chats {SETTLE_S:.0f} s apart (plus 2 warm-up), then {back_to_back} back to back")
        for i in range(chats + 2 + back_to_back):
            survivor = TimedSurvivor(stack.page_url)
            before = len(alerts)
            t0 = now()
            await survivor.start()  # WebSocket connect + "start"
            t_notice = await survivor.wait_type("message:hotline", 30)
            await until(lambda: len(alerts) > before, 30, "the alert")
            t_alert = alerts[before]
            if i >= chats + 2:
                quick_notice_s.append(t_notice - t0)
                quick_alert_s.append(t_alert - t0)
            elif i >= 2:
                started_s.append(survivor.first_at["started"] - t0)
                notice_s.append(t_notice - t0)
                alert_s.append(t_alert - t0)
            await survivor.send({"type": "end"})
            await survivor.wait_type("ended", 30)
            await survivor.close()
            try:
                await until(lambda: open_chat_count(stack) == 0, 60, "the chat to be erased")
            except AssertionError:
                slow_erases += 1
                log(f"first contact: chat {i} not erased 60 s after \"End chat\" (see {stack.logs}/bot.log)")
                keep_logs = True
            await asyncio.sleep(SETTLE_S if i + 1 < chats + 2 else 0.2)
        await advocate.close()
        if keep_logs:
            import shutil
            import tempfile
            kept = tempfile.mkdtemp(prefix="hotline-bench-first-contact-logs-")
            shutil.copytree(stack.logs, kept, dirs_exist_ok=True)
            log(f"first contact: logs copied to {kept}")

    rows = [[name, s["n"], s["p50"], s["p95"], s["max"]] for name, s in
            (("start → started frame", summary_ms(started_s)),
             ("start → first Hotline notice on the page", summary_ms(notice_s)),
             ("start → alert decrypted in the dispatch room", summary_ms(alert_s)),
             ("back to back (0.2 s after an erase): first notice", summary_ms(quick_notice_s)),
             ("back to back (0.2 s after an erase): alert", summary_ms(quick_alert_s)))]
    text = table(f"Time to first contact (ms), loopback; chats {SETTLE_S:.0f} s after the previous erase unless said",
                 ["interval", "n", "p50", "p95", "max"], rows)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 4))
    ax.boxplot([[x * 1000 for x in d] for d in (started_s, notice_s, alert_s)],
               tick_labels=["started", "first notice\non the page", "alert in\ndispatch room"], whis=(5, 95))
    ax.axhline(1000, color="grey", linestyle="--", linewidth=1, label="target p50 < 1 s")
    ax.set_ylabel("ms after \"Start chat\"")
    ax.set_title(f"Time to first contact ({len(notice_s)} chats; whiskers p5–p95)")
    ax.legend()
    savefig(fig, "first_contact.png")
    result = {"started": summary_ms(started_s), "notice": summary_ms(notice_s), "alert": summary_ms(alert_s),
              "back_to_back": {"notice": summary_ms(quick_notice_s), "alert": summary_ms(quick_alert_s)},
              "settle_s": SETTLE_S,
              "not_erased_within_60_s": slow_erases, "table": text}
    save_result("first_contact", result)
    return result
