"""The page in a real browser against bad or unusual input: the message limit in bytes (told before
anything is sent), code-word fields the browser does not offer to save, and a chat resumed from
another browser (this page is told and can no longer send)."""

from __future__ import annotations

import json

from playwright.async_api import expect

from testkit.clients import Survivor, alerts_in, assert_erased, new_alert, until
from tests.test_page import assert_nothing_stored, open_browser, start_chat
from webchat.protocol import MAX_MESSAGE_BYTES

TOO_LONG = "This message is too long. Please shorten it or send it in parts."


async def test_byte_limit_code_words_and_a_takeover_in_a_browser(stack, advocate, canaries):
    at_limit = "д" * (MAX_MESSAGE_BYTES // 2)  # 7,000 letters: under the character limit, at the byte limit
    canaries += [at_limit, "lighthouse 42 kept secret", "from the other browser 5e2d"]
    async with open_browser() as (page, problems):
        received: list[dict] = []
        sent: list[str] = []

        def watch(ws) -> None:
            ws.on("framereceived", lambda payload: received.append(json.loads(payload)))
            ws.on("framesent", lambda payload: sent.append(payload))

        page.on("websocket", watch)
        await page.goto(stack.page_url)
        before = len(alerts_in(stack, advocate))
        await start_chat(page)
        ref = await new_alert(stack, advocate, before)
        await advocate.say(stack.accounts.dispatch_room, f"!claim {ref}")
        case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "case room")
        status = page.get_by_role("status").first
        message = page.get_by_role("textbox", name="Message")
        log = page.get_by_role("log")

        # One byte past the limit: the survivor is told, nothing is sent, the text stays.
        await message.fill(at_limit + "e")
        await message.press("Enter")
        await expect(status).to_have_text(TOO_LONG)
        await expect(message).to_have_value(at_limit + "e")
        assert not any("дддд" in frame for frame in sent)
        # At the limit: delivered, and relayed whole.
        await message.fill(at_limit)
        await message.press("Enter")
        await expect(log.locator(".msg.you").last).to_contain_text("Delivered", timeout=30_000)
        await until(lambda: f"Survivor: {at_limit}" in advocate.bodies(case_room), 30, "the relay")

        # A code word: fields shown as dots that are not password fields, in no form, with
        # autocomplete off, so the browser does not offer to save the word.
        await advocate.say(case_room, "!codeword new")
        word = page.get_by_role("textbox", name="Choose a code word")
        await expect(word).to_be_visible(timeout=20_000)
        for field in (word, page.get_by_role("textbox", name="Type it again")):
            described = await field.evaluate("""el => ({
                type: el.type, autocomplete: el.getAttribute("autocomplete"), form: el.closest("form") !== null,
                masked: getComputedStyle(el).getPropertyValue("-webkit-text-security")})""")
            assert described == {"type": "text", "autocomplete": "off", "form": False, "masked": "disc"}
        assert await page.locator("input[type=password], form").count() == 0
        await word.fill("lighthouse 42 kept secret")
        await page.get_by_role("textbox", name="Type it again").fill("lighthouse 42 kept secret")
        await page.get_by_role("button", name="Save code word").click()
        await expect(status).to_have_text("Your answer was sent.", timeout=20_000)
        await until(lambda: any(b.startswith("Code word set") for b in advocate.bodies(case_room)), 30, "set")

        # Another browser resumes the chat with its id and secret: this page is told, shows no
        # conversation and cannot send; it does not reconnect to take the chat back.
        started = next(f for f in received if f.get("type") == "started")
        other = Survivor(stack.page_url)
        try:
            await other.connect()
            await other.send({"type": "resume", "chat": started["chat"], "secret": started["secret"], "seen": 0})
            await expect(page.get_by_role("heading", name="Chat continued elsewhere")).to_be_visible(timeout=10_000)
            await expect(page.locator("#notice-text")).to_contain_text(
                "This chat was opened in another window or on another device")
            await expect(message).to_be_hidden()
            assert await log.locator(".msg").count() == 0
            await expect(page.get_by_role("link", name="+1 555 0100")).to_be_visible()
            await other.say("from the other browser 5e2d")
            await until(lambda: "Survivor: from the other browser 5e2d" in advocate.bodies(case_room), 20, "relay")
            await advocate.say(case_room, "still with the other browser")
            await until(lambda: "still with the other browser" in other.texts("advocate"), 20, "the other browser")
            assert not other.first("displaced")  # the first page did not take it back
            await advocate.say(case_room, "!close")
            await until(lambda: other.first("ended"), 20, "ended")
        finally:
            await other.close()
        await assert_erased(stack, ref, case_room)
        await assert_nothing_stored(page)
        assert problems == []


async def test_a_survivor_who_sends_faster_than_the_limit_loses_nothing(stack, advocate, canaries):
    """80 messages at once (far more than the socket's 30 frames in 10 s, however fast the gateway
    delivers them): the page is told to wait,
    holds the rest, sends them again when the gateway takes frames again; each arrives once, in
    the order written."""
    texts = [f"quick line {n} 6f0a" for n in range(80)]
    canaries += texts
    async with open_browser() as (page, problems):
        received: list[dict] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: received.append(json.loads(payload))))
        await page.goto(stack.page_url)
        before = len(alerts_in(stack, advocate))
        await start_chat(page)
        ref = await new_alert(stack, advocate, before)
        await advocate.say(stack.accounts.dispatch_room, f"!claim {ref}")
        case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "case room")
        message = page.get_by_role("textbox", name="Message")
        await message.evaluate("""(box, texts) => {
            for (const text of texts) {
                box.value = text;
                box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
            }}""", texts)
        await until(lambda: any(f.get("code") == "rate_limited" for f in received), 20, "rate_limited")
        await expect(page.get_by_role("status").first).to_have_text(
            "Messages are being sent too quickly. Yours will be sent in a moment.")
        log = page.get_by_role("log")
        await expect(log.locator(".msg.you", has_text="Delivered")).to_have_count(80, timeout=90_000)
        await until(lambda: all(f"Survivor: {t}" in advocate.bodies(case_room) for t in texts), 30, "every line")
        relayed = [b for b in advocate.bodies(case_room) if b.startswith("Survivor: quick line")]
        assert relayed == [f"Survivor: {t}" for t in texts]  # each exactly once, in the order written
        await advocate.say(case_room, "!close")
        await assert_erased(stack, ref, case_room)
        assert problems == []
