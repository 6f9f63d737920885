"""The survivor's page in a real browser (Debian's chromium driven by Playwright) on the real stack."""

from __future__ import annotations

import contextlib
import shutil

import pytest
from playwright.async_api import async_playwright, expect

from testkit.clients import alerts_in, assert_erased, chat_row_exists, new_alert, until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
EXIT_URL = "https://www.wikipedia.org/"
MIXED_SCRIPTS = [
    "مرحبا، أنا هنا للمساعدة",  # Arabic
    "שלום, אני כאן",  # Hebrew
    "你好，我在这里。",  # Chinese
    "नमस्ते, मैं यहाँ हूँ",  # Hindi (Devanagari, with combining vowel signs)
    "Zoë e\u0301 🙂👩🏽‍⚕️ mixed עברית and English",  # combining mark, emoji sequences, bidi
]


@contextlib.asynccontextmanager
async def open_browser(**context_options):
    """Chromium with one page; console errors and page errors (CSP violations too) are collected."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(**context_options)
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        # The neutral site of "Leave quickly" is answered here: nothing leaves this machine.
        await context.route(EXIT_URL + "**", lambda route: route.fulfill(body="neutral", content_type="text/plain"))
        try:
            yield page, problems
        finally:
            await browser.close()


@pytest.fixture
async def browser_page():
    async with open_browser() as opened:
        yield opened


async def start_chat(page, *, skip_questions: bool = True) -> None:
    """Start chat; the optional questions are skipped unless the test answers them itself."""
    await page.get_by_role("button", name="Start chat").click()
    if skip_questions and await page.get_by_role("heading", name="Some optional questions").count():
        await page.get_by_role("button", name="Skip").click()
    await expect(page.get_by_role("textbox", name="Message")).to_be_enabled(timeout=30_000)


async def assert_nothing_stored(page, *, on_chat_page: bool = True) -> None:
    state = await page.context.storage_state()
    assert state["cookies"] == []
    assert all(not origin.get("localStorage") for origin in state["origins"])
    if not on_chat_page:
        return
    stored = await page.evaluate("""async () => ({
        local: localStorage.length, session: sessionStorage.length,
        idb: (await indexedDB.databases()).length,
        workers: (await navigator.serviceWorker.getRegistrations()).length})""")
    assert stored == {"local": 0, "session": 0, "idb": 0, "workers": 0}


async def test_start_chat_talk_and_end_in_a_browser(stack, advocate, browser_page, canaries):
    page, problems = browser_page
    canaries += ["typed in the browser 6c2a", "<b>not bold</b> 8f1e", "answer from the advocate 2d9b"]
    response = await page.goto(stack.page_url)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    before = len(alerts_in(stack, advocate))
    await expect(page.get_by_text("Chat is open now.")).to_be_visible()
    await expect(page.get_by_role("heading", name="Before you start")).to_be_visible()
    await start_chat(page)
    message = page.get_by_role("textbox", name="Message")
    ref = await new_alert(stack, advocate, before)
    await message.fill("typed in the browser 6c2a")
    await page.get_by_role("button", name="Send").click()
    await message.fill("<b>not bold</b> 8f1e")
    await message.press("Enter")
    await advocate.say(stack.accounts.dispatch_room, f"!claim {ref}")
    case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "case room")
    await until(lambda: "Survivor: <b>not bold</b> 8f1e" in advocate.bodies(case_room), 20, "relay")
    await advocate.client.room_typing(case_room, True, timeout=10_000)
    await expect(page.locator("#typing")).to_have_text("Advocate is typing…", timeout=20_000)
    await advocate.say(case_room, "answer from the advocate 2d9b")
    log = page.get_by_role("log")
    await expect(log).to_contain_text("answer from the advocate 2d9b", timeout=20_000)
    await expect(page.locator("#typing")).to_have_text("")
    await expect(log).to_contain_text("Advocate")
    await expect(log).to_contain_text("<b>not bold</b> 8f1e")  # shown as text, not markup
    assert await log.locator("b").count() == 0
    # Any script, both ways: each message picks its own direction.
    for text in MIXED_SCRIPTS:
        await advocate.say(case_room, text)
    await message.fill(MIXED_SCRIPTS[0])
    await message.press("Enter")
    for text in MIXED_SCRIPTS:
        await expect(log.locator(".msg .text", has_text=text).first).to_have_text(text, timeout=20_000)
    assert await log.locator(".msg:not([dir=auto])").count() == 0
    await page.get_by_role("button", name="End chat").click()
    await page.get_by_role("group").get_by_role("button", name="End chat").click()
    await expect(page.get_by_role("heading", name="Chat ended")).to_be_visible(timeout=20_000)
    await expect(page.get_by_role("button", name="Start chat")).to_be_visible()
    content = await page.content()
    assert "answer from the advocate" not in content and "typed in the browser" not in content
    # The survey: voluntary; no free text field, no link.
    survey = page.get_by_role("region", name="How was this chat?")
    await expect(survey).to_be_visible()
    assert await survey.locator("textarea, input[type=text], a").count() == 0
    await survey.get_by_role("group", name="Did this chat help you?").get_by_label("Yes").check()
    await survey.get_by_role("button", name="Send answers").click()
    await expect(page.get_by_text("Thank you for your answers.")).to_be_visible()
    await assert_erased(stack, ref, case_room)
    await assert_nothing_stored(page)
    assert problems == []


async def test_leave_quickly_replaces_the_page_and_ends_the_chat(stack, advocate, browser_page):
    page, problems = browser_page
    await page.goto("about:blank")
    await page.goto(stack.page_url)
    before = len(alerts_in(stack, advocate))
    await start_chat(page)
    ref = await new_alert(stack, advocate, before)
    await page.get_by_role("button", name="Leave quickly").click()
    await page.wait_for_url(EXIT_URL)
    await page.go_back()
    assert page.url == "about:blank"  # Back does not return to the chat
    await until(lambda: not chat_row_exists(stack, ref), 60, "the chat to be ended and erased")
    await assert_erased(stack, ref, None)
    await assert_nothing_stored(page, on_chat_page=False)
    assert problems == []


async def test_esc_twice_leaves_quickly_and_ends_the_chat(stack, advocate, browser_page):
    page, problems = browser_page
    await page.goto("about:blank")
    await page.goto(stack.page_url)
    before = len(alerts_in(stack, advocate))
    await start_chat(page)
    ref = await new_alert(stack, advocate, before)
    await page.get_by_role("textbox", name="Message").fill("unsent words")
    await page.keyboard.press("Escape")
    await page.keyboard.press("Escape")
    await page.wait_for_url(EXIT_URL)
    await page.go_back()
    assert page.url == "about:blank"
    await until(lambda: not chat_row_exists(stack, ref), 60, "the chat to be ended and erased")
    assert problems == []
