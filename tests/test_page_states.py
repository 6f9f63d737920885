"""The page in a real browser beyond the happy path: reconnect, closed hours, emergency closure,
optional questions with the preferred language, a right-to-left language, and its weight."""

from __future__ import annotations

import gzip
import json

import aiohttp
from playwright.async_api import expect

from aiohttp import web

from hotline.devstack import free_port
from testkit.clients import alerts_in, new_alert, until
from tests.test_page import assert_nothing_stored, open_browser, start_chat
from tests.test_webchat_service import answer_counts, closed_days, closure, gateway
from webchat import app_keys
from webchat.app import create_app
from webchat.i18n import load_catalogs
from webchat.settings import GatewaySettings
from webchat.unavailable import PageFacts, unavailable_page

MAX_FIRST_LOAD_BYTES = 30 * 1024
MAX_FIRST_LOAD_REQUESTS = 4


async def test_a_dropped_connection_reconnects_to_the_same_chat(stack, advocate, canaries):
    canaries += ["written while the line was down 7a3c", "sent while the page was away 4d1f"]
    async with gateway(stack) as (url, app), open_browser() as (page, problems):
        await page.goto(url)
        before = len(alerts_in(stack, advocate))
        await start_chat(page)
        ref = await new_alert(stack, advocate, before)
        await advocate.say(stack.accounts.dispatch_room, f"!claim {ref}")
        case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "case room")
        status = page.get_by_role("status").first
        # The gateway drops every socket, as a proxy restart or a phone network change would.
        for ws in list(app[app_keys.SOCKETS]):
            await ws.close()
        await expect(status).to_have_text("Connection lost. Trying to reconnect to the same chat…", timeout=5_000)
        await advocate.say(case_room, "sent while the page was away 4d1f")
        await expect(status).to_have_text("Reconnected. You are back in the same chat.", timeout=20_000)
        log = page.get_by_role("log")
        await expect(log).to_contain_text("sent while the page was away 4d1f", timeout=20_000)
        # And while the browser itself is offline, a message waits and goes once it is back.
        await page.context.set_offline(True)
        for ws in list(app[app_keys.SOCKETS]):
            await ws.close()
        await expect(status).to_have_text("Connection lost. Trying to reconnect to the same chat…", timeout=5_000)
        message = page.get_by_role("textbox", name="Message")
        await message.fill("written while the line was down 7a3c")
        await message.press("Enter")
        await page.context.set_offline(False)
        await expect(log.locator(".msg.you", has_text="written while the line was down 7a3c")).to_contain_text(
            "Delivered", timeout=30_000)
        await until(lambda: "Survivor: written while the line was down 7a3c" in advocate.bodies(case_room), 20, "relay")
        assert advocate.bodies(case_room).count("Survivor: written while the line was down 7a3c") == 1
        await page.get_by_role("button", name="End chat").click()
        await page.get_by_role("group").get_by_role("button", name="End chat").click()
        await expect(page.get_by_role("heading", name="Chat ended")).to_be_visible(timeout=20_000)
        await assert_nothing_stored(page)
        assert problems == []


async def test_closed_hours_say_when_chat_opens_and_keep_other_help_visible(stack):
    async with gateway(stack, holidays=closed_days(), timezone="UTC") as (url, _), \
            open_browser() as (page, problems):
        await page.goto(url)
        await expect(page.get_by_role("heading", name="Chat is closed")).to_be_visible()
        hours = page.locator("#hours")
        await expect(hours).to_contain_text("Chat is closed right now. It opens again")
        assert await page.get_by_role("button", name="Start chat").count() == 0
        await expect(page.get_by_role("link", name="+1 555 0100")).to_be_visible()
        await expect(page.get_by_role("heading", name="Other ways to get help")).to_be_visible()
        await expect(page.get_by_text("You can call the hotline: +1 555 0100")).to_be_visible()
        await expect(page.get_by_role("button", name="Leave quickly")).to_be_visible()
        assert problems == []


async def test_an_emergency_closure_shows_on_an_open_page_within_seconds(stack):
    async with gateway(stack, service_poll_seconds=0.5, status_poll_seconds=1) as (url, _), \
            open_browser() as (page, problems):
        await page.goto(url)
        await expect(page.get_by_role("button", name="Start chat")).to_be_visible()
        async with closure(stack, "Chat is closed this afternoon. Please call the hotline."):
            await expect(page.get_by_role("heading", name="Chat is closed for now")).to_be_visible(timeout=8_000)
            await expect(page.get_by_text("Chat is closed this afternoon. Please call the hotline.")).to_be_visible()
            assert await page.get_by_role("button", name="Start chat").count() == 0
        await expect(page.get_by_role("button", name="Start chat")).to_be_visible(timeout=10_000)
        assert problems == []


async def test_optional_questions_language_to_the_advocate_the_rest_only_counted(stack, advocate):
    before_counts = answer_counts(stack)
    async with gateway(stack, chat_languages="en,es", answers_pool_min=1) as (url, app), \
            open_browser() as (page, problems):
        await page.goto(url)
        before = len(alerts_in(stack, advocate))
        await page.get_by_role("button", name="Start chat").click()
        await expect(page.get_by_role("heading", name="Some optional questions")).to_be_focused()
        language = page.get_by_role("group", name="Which language would you like to chat in?")
        await expect(language).to_contain_text("So that we can connect you with an advocate")
        await language.get_by_label("Spanish").check()
        age = page.get_by_role("group", name="How old are you?")
        await expect(age.get_by_label("Prefer not to say")).to_be_visible()
        await age.get_by_label("25 to 34").check()
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_role("textbox", name="Message")).to_be_enabled(timeout=30_000)
        ref = await new_alert(stack, advocate, before)
        await until(lambda: any(f"Ref {ref} · preferred language: es" in b
                                for b in advocate.bodies(stack.accounts.dispatch_room)), 20, "the language")
        # The age answer arrives on its own, later, and only as a count.
        expected = dict(before_counts)
        expected[("answer:age", "25_34")] = expected.get(("answer:age", "25_34"), 0) + 1
        await until(lambda: answer_counts(stack) == expected, 40, "the age to be counted")
        assert not any(metric == "answer:language" for metric, _ in answer_counts(stack))
        await page.get_by_role("button", name="End chat").click()
        await page.get_by_role("group").get_by_role("button", name="End chat").click()
        await expect(page.get_by_role("heading", name="Chat ended")).to_be_visible(timeout=20_000)
        await page.get_by_role("button", name="Skip").click()
        await expect(page.get_by_role("region", name="How was this chat?")).to_be_hidden()
        assert app[app_keys.ANSWERS].pool.pooled == 0
        assert problems == []


RTL_TEST_CATALOG = {
    # Test data, not a translation: the texts stay English with a marker, only the direction is RTL.
    "_name": "RTL test",
    "_dir": "rtl",
    "start_chat": "[rtl] Start chat",
    "leave": "[rtl] Leave quickly",
    "welcome_title": "[rtl] Chat with an advocate",
}


async def test_a_right_to_left_language_mirrors_the_page(stack, tmp_path):
    (tmp_path / "ar.json").write_text(json.dumps(RTL_TEST_CATALOG), encoding="utf-8")
    async with gateway(stack, catalog_dir=str(tmp_path), languages="en,ar") as (url, _), \
            open_browser(locale="ar") as (page, problems):
        await page.goto(url)
        html = page.locator("html")
        await expect(html).to_have_attribute("dir", "rtl")
        await expect(html).to_have_attribute("lang", "ar")
        await expect(page.get_by_role("heading", name="[rtl] Chat with an advocate")).to_be_visible()
        await expect(page.get_by_text("Before you start")).to_be_visible()  # not in the catalog: English
        leave = await page.get_by_role("button", name="[rtl] Leave quickly").bounding_box()
        name = await page.get_by_role("heading", level=1).bounding_box()
        assert leave["x"] < name["x"], 'RTL: the name starts on the right, Leave quickly ends on the left'
        # Switching the language re-renders the page left to right, without a reload.
        await page.get_by_label("Language").select_option("en")
        await expect(html).to_have_attribute("dir", "ltr")
        await expect(page.get_by_role("button", name="Start chat")).to_be_visible()
        await expect(html).to_have_attribute("lang", "en")
        leave = await page.get_by_role("button", name="Leave quickly").bounding_box()
        name = await page.get_by_role("heading", level=1).bounding_box()
        assert leave["x"] > name["x"]
        assert problems == []


async def test_first_load_is_light(stack):
    async with open_browser() as (page, problems):
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        await page.goto(stack.page_url)
        await page.wait_for_load_state("networkidle")
        assert len(requests) <= MAX_FIRST_LOAD_REQUESTS, requests
        assert all(r.startswith(stack.page_url) or r.startswith(stack.page_url.rstrip("/")) for r in requests)
        assert problems == []
    total = 0
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for request in requests:
            async with http.get(request, headers={"Accept-Encoding": "gzip"}) as response:
                body = await response.read()
                total += len(body)
                if len(body) > 200:
                    assert response.headers.get("Content-Encoding") == "gzip", request
                    gzip.decompress(body)
    assert total < MAX_FIRST_LOAD_BYTES, f"first load is {total} bytes compressed"
    print(f"first load: {len(requests)} requests, {total} bytes compressed")


async def test_a_homeserver_that_does_not_answer_shows_what_the_proxys_unavailable_page_shows():
    """The gateway up, its homeserver not: the page says chat cannot be reached, in the same words as
    proxy/unavailable.html (served when the gateway itself is down), with no "Start chat"."""
    port = free_port()
    settings = GatewaySettings(homeserver_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
                               bot_user_id="@hotline:hotline.localhost", as_token="unused", bot_master_key="A" * 43,
                               listen_port=port, hotline_phone="+1 555 0100", service_poll_seconds=0.5,
                               status_poll_seconds=1)
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    english = load_catalogs()["en"]
    static = unavailable_page(PageFacts(hotline_phone="+1 555 0100"))
    try:
        async with open_browser() as (page, problems):
            await page.goto(f"http://127.0.0.1:{port}/")
            await expect(page.get_by_role("heading", name=english["unavailable_title"])).to_be_visible(timeout=10_000)
            await expect(page.get_by_text(english["down"])).to_be_visible()
            assert await page.get_by_role("button", name="Start chat").count() == 0
            await expect(page.get_by_role("link", name="+1 555 0100")).to_be_visible()
            await expect(page.get_by_role("heading", name=english["other_help_title"])).to_be_visible()
            await expect(page.get_by_text(english["other_help"])).to_be_visible()
            for key in ("unavailable_title", "down", "other_help_title", "other_help"):
                assert english[key] in static, key  # the same words as the proxy's page
            assert problems == []
    finally:
        await runner.cleanup()
