"""axe-core finds no WCAG 2.2 A/AA violation on any screen of the page, light and dark, LTR and RTL.

axe-core is not vendored: the test installs it from the npm registry into a temporary directory
(``npm`` must be on PATH). The page's CSP forbids injected scripts, so only these browser
contexts bypass it (``bypass_csp``), to let axe in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.async_api import expect

from testkit.clients import alerts_in, new_alert, until
from tests.test_page import MIXED_SCRIPTS, open_browser, start_chat
from tests.test_page_states import RTL_TEST_CATALOG
from tests.test_webchat_service import closed_days, gateway

AXE_VERSION = "4"
# A new message fades in (unless reduced motion is asked for); axe would measure the contrast of
# a half-transparent frame. The colours at rest are the same either way.
STILL = {"bypass_csp": True, "reduced_motion": "reduce"}
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


@pytest.fixture(scope="session")
def axe_source(tmp_path_factory) -> str:
    npm = shutil.which("npm")
    assert npm, "these tests need npm (Debian: apt-get install npm) to fetch axe-core"
    where = tmp_path_factory.mktemp("axe")
    subprocess.run([npm, "install", "--prefix", str(where), "--no-audit", "--no-fund", "--silent",
                    f"axe-core@{AXE_VERSION}"], check=True, timeout=300)
    return (Path(where) / "node_modules" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")


async def violations(page, axe_source: str) -> list[dict]:
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=axe_source)
    found = await page.evaluate(
        """async (tags) => {
            const r = await axe.run(document, {runOnly: {type: "tag", values: tags}});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           nodes: v.nodes.map(n => n.target.join(" "))}));
        }""",
        TAGS,
    )
    return found


async def assert_accessible(page, axe_source: str, screen: str) -> None:
    found = await violations(page, axe_source)
    assert found == [], f"{screen}: " + json.dumps(found, indent=1)


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_every_screen_of_a_chat_has_no_violations(stack, advocate, axe_source, scheme):
    async with open_browser(**STILL, color_scheme=scheme) as (page, problems):
        await page.goto(stack.page_url)
        await expect(page.get_by_role("button", name="Start chat")).to_be_visible()
        await assert_accessible(page, axe_source, "before the chat")
        before = len(alerts_in(stack, advocate))
        await page.get_by_role("button", name="Start chat").click()
        await expect(page.get_by_role("heading", name="Some optional questions")).to_be_visible()
        await assert_accessible(page, axe_source, "optional questions")
        await page.get_by_role("button", name="Skip").click()
        await expect(page.get_by_role("textbox", name="Message")).to_be_enabled(timeout=30_000)
        ref = await new_alert(stack, advocate, before)
        await advocate.say(stack.accounts.dispatch_room, f"!claim {ref}")
        case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "case room")
        await advocate.client.room_typing(case_room, True, timeout=10_000)
        await expect(page.locator("#typing")).to_have_text("Advocate is typing…", timeout=20_000)
        for text in MIXED_SCRIPTS[:2]:
            await advocate.say(case_room, text)
        message = page.get_by_role("textbox", name="Message")
        await message.fill("a message from the survivor")
        await message.press("Enter")
        await expect(page.get_by_role("log")).to_contain_text(MIXED_SCRIPTS[1], timeout=20_000)
        await expect(page.get_by_role("log")).to_contain_text("Delivered", timeout=20_000)
        await assert_accessible(page, axe_source, "during the chat")
        await page.get_by_role("button", name="End chat").click()
        await assert_accessible(page, axe_source, "confirming the end")
        await page.get_by_role("group").get_by_role("button", name="End chat").click()
        await expect(page.get_by_role("heading", name="Chat ended")).to_be_visible(timeout=20_000)
        await assert_accessible(page, axe_source, "ended, with the survey")
        assert problems == []


async def test_closed_hours_and_rtl_screens_have_no_violations(stack, axe_source, tmp_path):
    (tmp_path / "ar.json").write_text(json.dumps(RTL_TEST_CATALOG), encoding="utf-8")
    async with gateway(stack, holidays=closed_days(), catalog_dir=str(tmp_path), languages="en,ar") as (url, _):
        async with open_browser(**STILL) as (page, problems):
            await page.goto(url)
            await expect(page.get_by_role("heading", name="Chat is closed")).to_be_visible()
            await assert_accessible(page, axe_source, "closed hours")
            assert problems == []
        async with open_browser(**STILL, locale="ar") as (page, problems):
            await page.goto(url)
            await expect(page.locator("html")).to_have_attribute("dir", "rtl")
            await assert_accessible(page, axe_source, "closed hours, right to left")
            assert problems == []


async def test_small_screen_and_zoom_keep_every_control_reachable(stack, axe_source):
    """320 CSS px wide (a phone, or 1280 px at 400% zoom): nothing scrolls sideways."""
    async with open_browser(**STILL, viewport={"width": 320, "height": 640}) as (page, problems):
        await page.goto(stack.page_url)
        await expect(page.get_by_role("button", name="Leave quickly")).to_be_in_viewport()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 320
        await start_chat(page)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 320
        await expect(page.get_by_role("button", name="Send")).to_be_in_viewport()
        await assert_accessible(page, axe_source, "320 px wide")
        await page.get_by_role("button", name="Leave quickly").click()
        assert problems == []
