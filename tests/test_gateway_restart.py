"""SIGTERM the gateway: open pages are told, keep their chat sealed, and resume on the restarted
gateway. A stack of its own (its gateway is restarted), with a reconnect grace long enough for a
restart on a busy machine."""

from __future__ import annotations

import asyncio
import base64
import secrets
import tempfile
from pathlib import Path

import pytest

from hotline.devstack import DevStack
from tests.conftest import running
from testkit.clients import Survivor, assert_erased, claim_new_chat, login, until
from webchat import handover

GRACE = 45


@pytest.fixture(scope="module")
def restart_stack():
    root = Path(tempfile.mkdtemp(prefix="hotline-restart-"))
    yield from running(DevStack(root / "stack", advocates=1, settings={"reconnect_grace_seconds": str(GRACE)}))


@pytest.fixture
async def staff(restart_stack):
    client = await login(restart_stack, restart_stack.accounts.advocates[0])
    yield client
    await client.close()


def seqs(page: Survivor) -> list[int]:
    return [f["seq"] for f in page.frames if f.get("type") in ("message", "ask")]


def tampered(state: str) -> str:
    body = state[len(handover.PREFIX):]
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[len(raw) // 2] ^= 1
    return handover.PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


async def test_a_restart_hands_the_chat_to_the_page_and_it_goes_on(restart_stack, staff, canaries):
    stack = restart_stack
    tag = secrets.token_hex(3)
    page = Survivor(stack.page_url)
    ref, case_room = await claim_new_chat(stack, staff, page)
    await until(lambda: "An advocate has joined the chat." in page.texts("hotline"), 30, "joined")
    before = [f"before {n:03d} {tag}" for n in range(200)]
    from_advocate = [f"advocate before {n} {tag}" for n in range(5)]
    canaries += [*before, *from_advocate]
    try:
        # A few hundred messages (the survivor's own Megolm session turns over every 100).
        for n, text in enumerate(before):
            await page.say(text)
            await asyncio.sleep(0.4)  # within the page's frame budget (30 in 10 s)
            if n % 40 == 0:
                await staff.say(case_room, from_advocate[n // 40])
        await until(lambda: all(t in page.texts("advocate") for t in from_advocate), 60, "the advocate's lines")
        await until(lambda: f"Survivor: {before[-1]}" in staff.bodies(case_room), 60, "the survivor's lines")
        shown = page.seen

        await asyncio.to_thread(stack.stop_gateway)  # SIGTERM
        restarting = await until(lambda: page.first("restarting"), 30, "the page told")
        assert page.state == restarting["state"]
        await until(lambda: "The survivor's connection dropped." in " ".join(staff.bodies(case_room)), 30,
                    "the bot told the page is gone")
        size = len(page.state)
        print(f"sealed state of a chat with {len(before) + len(from_advocate)} messages: {size} characters")
        assert size <= handover.MAX_STATE_CHARS
        assert page.seen == shown  # nothing was said to the page that it had not seen
        assert not page.first("ended")
        while_down = f"advocate while the gateway was down {tag}"
        canaries.append(while_down)
        await staff.say(case_room, while_down)

        stack.start_gateway()
        await page.reconnect()
        await until(lambda: page.first("resumed"), 60, "resumed")
        assert page.state is None
        await until(lambda: while_down in page.texts("advocate"), 60, "the line sent while the gateway was down")
        # A message the page sent as the gateway stopped, never acknowledged: sent again, once.
        again = f"after the restart {tag}"
        canaries.append(again)
        await page.say(again, "again-" + tag)
        await page.say(again, "again-" + tag)
        after = f"advocate after the restart {tag}"
        canaries.append(after)
        await staff.say(case_room, after)
        await until(lambda: after in page.texts("advocate"), 60, "relay to the page after the restart")
        await until(lambda: f"Survivor: {again}" in staff.bodies(case_room), 60, "relay to the case room")
        # Nothing lost, nothing twice, in order.
        assert staff.bodies(case_room).count(f"Survivor: {again}") == 1
        relayed = [b for b in staff.bodies(case_room) if b.startswith("Survivor: before")]
        assert relayed == [f"Survivor: {t}" for t in before]
        advocate_lines = [t for t in page.texts("advocate") if tag in t]
        assert advocate_lines == [*from_advocate, while_down, after]
        numbers = seqs(page)
        assert numbers == sorted(set(numbers))
        assert not page.first("ended") and not page.first("error")
        await until(lambda: "The survivor is connected again." in staff.bodies(case_room), 30, "reconnected")
    finally:
        await staff.say(case_room, "!close")
        await until(lambda: page.first("ended"), 60, "ended")
        await page.close()
    await assert_erased(stack, ref, case_room)


async def test_a_tampered_or_foreign_state_is_refused_and_a_page_that_never_returns_is_closed(
        restart_stack, staff, canaries):
    stack = restart_stack
    page = Survivor(stack.page_url)
    ref, case_room = await claim_new_chat(stack, staff, page)
    await until(lambda: "An advocate has joined the chat." in page.texts("hotline"), 30, "joined")
    canaries.append("before the refused restart 7c1e")
    await page.say("before the refused restart 7c1e")
    await stack.restart_gateway()
    state = await until(lambda: page.state, 30, "the state handed over")
    print(f"sealed state of a chat with 4 messages: {len(state)} characters")

    # One bit changed: refused, and that page's chat ends there.
    forged = Survivor(stack.page_url)
    forged.chat, forged.secret = page.chat, page.secret
    await forged.reconnect(state=tampered(state))
    await until(lambda: forged.first("ended"), 30, "the tampered state refused")
    assert [f.get("code") for f in forged.frames if f.get("type") == "error"] == ["bad_state"]
    assert not forged.first("resumed")
    await forged.close()

    # The right state with another resume secret (someone who copied the state): refused.
    other = Survivor(stack.page_url)
    other.chat, other.secret = page.chat, "not-the-secret"
    await other.reconnect(state=state)
    await until(lambda: other.first("ended"), 30, "the state without its secret refused")
    assert [f.get("code") for f in other.frames if f.get("type") == "error"] == ["bad_state"]
    await other.close()

    # A resume frame over the frame limit: the socket is closed, nothing is restored.
    big = Survivor(stack.page_url)
    await big.connect()
    assert big.ws is not None
    await big.ws.send_str('{"type": "resume", "chat": "x", "secret": "y", "seen": 0, "state": "'
                          + "A" * (64 * 1024) + '"}')
    await until(lambda: big.ws is not None and big.ws.closed, 30, "the oversize frame refused")
    assert big.ws.close_code == 1009
    await big.close()

    # The page itself never comes back: the bot closes the chat after its grace and erases it.
    await until(lambda: any("did not come back" in body for body in staff.bodies(case_room)),
                GRACE + 60, "the chat closed by the bot")
    await assert_erased(stack, ref, case_room)
    # Its state, late: refused (the chat is over).
    await page.reconnect()
    await until(lambda: page.first("ended"), 30, "a late resume of an erased chat")
    assert not page.first("resumed")
    await page.close()


async def test_the_page_says_the_service_is_restarting_and_the_chat_continues(restart_stack, staff, canaries):
    """The real page in Debian's chromium: told calmly, the hotline number in view, back in the same
    chat after the restart with what the advocate wrote meanwhile; nothing stored on the device."""
    from playwright.async_api import expect

    from tests.test_page import assert_nothing_stored, open_browser, start_chat
    from testkit.clients import alerts_in, new_alert

    stack = restart_stack
    canaries += ["typed before the restart 3e9a", "written while the gateway restarted 3e9a",
                 "typed after the restart 3e9a"]
    async with open_browser() as (page, problems):
        await page.goto(stack.page_url)
        before = len(alerts_in(stack, staff))
        await start_chat(page)
        ref = await new_alert(stack, staff, before)
        await staff.say(stack.accounts.dispatch_room, f"!claim {ref}")
        case_room = await until(lambda: staff.find_room_with(f"Case room for ref {ref}"), 30, "case room")
        log = page.get_by_role("log")
        await expect(log).to_contain_text("An advocate has joined the chat.", timeout=30_000)
        message = page.get_by_role("textbox", name="Message")
        await message.fill("typed before the restart 3e9a")
        await message.press("Enter")
        await expect(log.locator(".msg.you", has_text="typed before the restart 3e9a")).to_contain_text(
            "Delivered", timeout=30_000)

        await asyncio.to_thread(stack.stop_gateway)  # SIGTERM
        status = page.get_by_role("status").first
        await expect(status).to_have_text(
            "The chat service is restarting. Your chat should continue here in a moment; please keep this "
            "window open. If you need help right now, you can call the hotline.", timeout=10_000)
        await expect(page.get_by_role("link", name="+1 555 0100")).to_be_visible()
        await expect(log).to_contain_text("typed before the restart 3e9a")  # the conversation stays
        # Held in a variable of the page's script only: nothing in any storage of the browser.
        await assert_nothing_stored(page)
        await staff.say(case_room, "written while the gateway restarted 3e9a")
        stack.start_gateway()
        await expect(status).to_have_text("Reconnected. You are back in the same chat.", timeout=60_000)
        await expect(log).to_contain_text("written while the gateway restarted 3e9a", timeout=30_000)
        await message.fill("typed after the restart 3e9a")
        await message.press("Enter")
        await expect(log.locator(".msg.you", has_text="typed after the restart 3e9a")).to_contain_text(
            "Delivered", timeout=30_000)
        await until(lambda: "Survivor: typed after the restart 3e9a" in staff.bodies(case_room), 30, "relay")
        assert staff.bodies(case_room).count("Survivor: typed before the restart 3e9a") == 1
        await page.get_by_role("button", name="End chat").click()
        await page.get_by_role("group").get_by_role("button", name="End chat").click()
        await expect(page.get_by_role("heading", name="Chat ended")).to_be_visible(timeout=20_000)
        await assert_nothing_stored(page)
        # While the gateway was down the browser could not connect: that is all it reported.
        assert [p for p in problems if "WebSocket connection" not in p] == []
    await assert_erased(stack, ref, case_room)
