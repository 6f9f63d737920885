"""The chat page: bytes on first load (compressed, as on the wire), requests, and the time until the
"Start chat" button works, in Debian's Chromium with network throttling (CDP).

"Works" is the moment the page's script has run: the notice with the button is shown (the script
shows it and binds the click handler in the same task). Measured with ``performance.now()`` in
the page, i.e. from navigation start. Each load uses a new browser context (empty cache).

Profiles:
- ``slow-3g``: WebPageTest's "3G Slow": 400 ms round trip, 400 kbit/s down and up. The target
  (< 2 s) is judged on this one.
- ``devtools-slow-3g``: Chrome DevTools' "Slow 3G" preset: 2,000 ms added to every request,
  400 kbit/s. Every request then costs at least 2 s, so no page that needs two round trips
  (HTML, then its script) can be ready in under 4 s on it; reported for comparison.
"""

from __future__ import annotations

import shutil
import statistics

from bench.common import ONE_ADDRESS, check, log, plt, running_stack, save_result, savefig, table, target_lines

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
KBIT = 1000 / 8
PROFILES = {
    "none": None,
    "slow-3g": {"latency": 400, "downloadThroughput": 400 * KBIT, "uploadThroughput": 400 * KBIT},
    "devtools-slow-3g": {"latency": 2000, "downloadThroughput": 400 * KBIT, "uploadThroughput": 400 * KBIT},
}


async def one_load(browser, url: str, profile: dict | None) -> dict:
    # bypass_csp: Playwright's wait_for_function evaluates its predicate in the page, which the
    # page's strict CSP (no eval) would refuse; it changes nothing that is loaded or timed.
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    if profile is not None:
        await cdp.send("Network.emulateNetworkConditions", {"offline": False, **profile})
    urls: dict[str, str] = {}
    sizes: dict[str, float] = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]))
    await page.goto(url, wait_until="commit")
    handle = await page.wait_for_function(
        "() => { const n = document.getElementById('notice');"
        " return n && !n.hidden && document.getElementById('start').textContent ? performance.now() : 0; }",
        polling="raf", timeout=60_000)
    ready_ms = await handle.json_value()
    await page.wait_for_load_state("load")
    # It works: the click opens the WebSocket and the chat starts.
    await page.get_by_role("button", name="Start chat").click()
    if await page.locator("#questions").is_visible():  # the optional questions, if the program has any
        await page.locator("#q-skip").click()
    started_ms = await (await page.wait_for_function(
        "() => !document.getElementById('message').disabled ? performance.now() : 0",
        polling="raf", timeout=60_000)).json_value()
    await page.get_by_role("button", name="End chat").click()
    await page.get_by_role("group").get_by_role("button", name="End chat").click()
    await page.wait_for_function("() => document.getElementById('message').disabled", timeout=30_000)
    http = {rid: u for rid, u in urls.items() if u.startswith("http")}
    page_bytes = sum(sizes.get(rid, 0) for rid, u in http.items() if not u.endswith("/ws"))
    names = sorted({u.rsplit("/", 1)[-1] or "/" for u in http.values() if not u.endswith("/ws")})
    await context.close()
    return {"ready_ms": ready_ms, "chat_started_ms": started_ms, "bytes": page_bytes,
            "requests": len([u for u in http.values() if not u.endswith("/ws")]), "files": names}


async def run(quick: bool = False) -> dict:
    from playwright.async_api import async_playwright

    loads = 2 if quick else 5
    results: dict[str, list[dict]] = {}
    # 16 chats from 127.0.0.1 in a full run: more than one address may start (ONE_ADDRESS).
    async with running_stack("page", advocates=1, settings=ONE_ADDRESS) as stack:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            await one_load(browser, stack.page_url, None)  # warm-up: browser, gateway and bot caches
            for name, profile in PROFILES.items():
                log(f"page: {loads} cold loads, network profile {name}")
                results[name] = [await one_load(browser, stack.page_url, profile) for _ in range(loads)]
            await browser.close()
    return report(results)


def report(results: dict[str, list[dict]]) -> dict:
    rows = []
    for name, runs in results.items():
        rows.append([name, len(runs), runs[0]["bytes"], runs[0]["requests"],
                     statistics.median(r["ready_ms"] for r in runs),
                     max(r["ready_ms"] for r in runs),
                     statistics.median(r["chat_started_ms"] for r in runs)])
    text = table("Chat page, first load (cold cache) in Chromium",
                 ["network", "loads", "bytes on wire", "requests", "Start works p50 (ms)", "max (ms)",
                  "chat started p50 (ms)"], rows)
    slow = statistics.median(r["ready_ms"] for r in results["slow-3g"])
    targets = [check("page", "\"Start chat\" works on slow 3G, p50", slow, "<", 2000, " ms"),
               check("page", "bytes on the wire, first load", results["none"][0]["bytes"], "<", 30_000, " B"),
               check("page", "requests, first load", results["none"][0]["requests"], "≤", 4)]
    text += "\n" + target_lines(targets) + "\n"
    log(f"page: files loaded: {', '.join(results['none'][0]['files'])}")
    plot(results)
    result = {name: {"bytes": runs[0]["bytes"], "requests": runs[0]["requests"], "files": runs[0]["files"],
                     "ready_ms_p50": statistics.median(r["ready_ms"] for r in runs),
                     "ready_ms_max": max(r["ready_ms"] for r in runs),
                     "chat_started_ms_p50": statistics.median(r["chat_started_ms"] for r in runs)}
              for name, runs in results.items()} | {"table": text}
    save_result("page", result, targets)
    return result


def plot(results: dict[str, list[dict]]) -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 3.6))
    names = list(results)
    ax.barh(names, [statistics.median(r["ready_ms"] for r in results[n]) for n in names], color="#4c78a8",
            label="\"Start chat\" works")
    ax.barh(names, [statistics.median(r["chat_started_ms"] - r["ready_ms"] for r in results[n]) for n in names],
            left=[statistics.median(r["ready_ms"] for r in results[n]) for n in names], color="#f58518",
            label="+ click → chat started (WebSocket, room, bot)")
    ax.axvline(2000, color="grey", linestyle="--", linewidth=1, label="target: works < 2 s")
    ax.set_xlabel("ms from navigation start (median of cold loads)")
    ax.set_title(f"Chat page: {results['none'][0]['bytes'] / 1024:.1f} KiB on the wire, "
                 f"{results['none'][0]['requests']} requests")
    ax.legend(fontsize=8, loc="lower right")
    savefig(fig, "page.png")
