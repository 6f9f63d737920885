"""Conversation practice on a real homeserver, with the program's timers set to seconds.

A stack of its own (Synapse, bot, gateway) so that its short timers touch no other test.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

import aiohttp
import pytest

from hotline.devstack import DevStack
from hotline_runtime.wire import SERVICE_STATE
from tests.conftest import running
from testkit.clients import (
    Advocate,
    Survivor,
    alerts_in,
    assert_erased,
    claim_new_chat,
    login,
    new_alert,
    until,
)

FAST = {
    "reassure_minutes": "0.1",  # 6 s
    "realert_minutes": "0.15",  # 9 s
    "escalate_minutes": "0.25",  # 15 s
    "inactivity_warning_minutes": "0.25",
    "inactivity_close_minutes": "0.1",
    "advocate_reminder_minutes": "0.1",
    "reconnect_grace_seconds": "4",
    "rights_url": "https://example.org/rights",
}


@pytest.fixture(scope="module")
def fast_stack():
    root = Path(tempfile.mkdtemp(prefix="hotline-practice-"))
    yield from running(DevStack(root / "stack", advocates=1, settings=FAST))


@pytest.fixture
async def advocate(fast_stack: DevStack):
    client = await login(fast_stack, fast_stack.accounts.advocates[0])
    yield client
    await client.close()


@pytest.fixture
async def admin(fast_stack: DevStack):
    client = await login(fast_stack, fast_stack.accounts.admins[0])
    yield client
    await client.close()


@pytest.fixture
async def survivor(fast_stack: DevStack):
    page = Survivor(fast_stack.page_url)
    yield page
    await page.close()


async def test_rights_notice_first_then_queue_notices_realert_and_escalation(fast_stack, advocate, survivor):
    before = len(alerts_in(fast_stack, advocate))
    await survivor.start()
    first = await until(lambda: survivor.texts(), 20, "the first notice")
    assert "confidential" in first[0] and "https://example.org/rights" in first[0]  # rights come first
    await until(lambda: len(survivor.texts("hotline")) >= 2, 20, "the welcome")
    assert "number 1 in line" in survivor.texts("hotline")[1]
    ref = await new_alert(fast_stack, advocate, before)
    await until(lambda: any("still in line" in t for t in survivor.texts("hotline")), 20, "reassurance")
    assert any("+1 555 0100" in t for t in survivor.texts("hotline") if "still in line" in t)
    dispatch = fast_stack.accounts.dispatch_room
    await until(lambda: any(b.startswith("Still waiting") and ref in b for b in advocate.bodies(dispatch)), 20,
                "the repeated alert")
    supervisor = await login(fast_stack, fast_stack.accounts.supervisors[0])
    try:
        await until(lambda: any("can someone take it" in b and ref in b
                                for b in supervisor.bodies(fast_stack.accounts.supervisors_room)), 30,
                    "the escalation to the supervisors")
    finally:
        await supervisor.close()
    await survivor.send({"type": "end"})  # abandoned while waiting
    await assert_erased(fast_stack, ref, None)


async def test_safety_prompt_canned_messages_and_advocate_reminder(fast_stack, advocate, survivor, canaries):
    canaries.append("I need to think 4e5f")
    ref, case_room = await claim_new_chat(fast_stack, advocate, survivor)
    await until(lambda: any(b.startswith("Safety check-in") for b in advocate.bodies(case_room)), 20, "prompt")
    intro = next(b for b in advocate.bodies(case_room) if b.startswith("Case room"))
    assert "Rights notice shown to the survivor: yes" in intro
    await advocate.say(case_room, "!say")
    await until(lambda: any(b.startswith("Ready-made messages") for b in advocate.bodies(case_room)), 20, "list")
    listing = next(b for b in advocate.bodies(case_room) if b.startswith("Ready-made messages"))
    for key in ("greeting", "safety", "device", "inactivity", "closing", "shift_change", "interpreter_consent",
                "transfer", "closing_soon"):
        assert key in listing
    await advocate.say(case_room, "!say safety")
    await until(lambda: any("are you safe right now" in t for t in survivor.texts("advocate")), 20, "canned")
    await until(lambda: any(b.startswith("Sent to the survivor: Before we go on") for b in advocate.bodies(case_room)),
                20, "the echo in the case room")
    await advocate.say(case_room, "!say nonsense")
    await until(lambda: any("no ready-made message called nonsense" in b for b in advocate.bodies(case_room)), 20,
                "unknown key")
    await survivor.say("I need to think 4e5f")
    await until(lambda: any("is waiting for an answer" in b for b in advocate.bodies(case_room)), 20, "reminder")
    await advocate.say(case_room, "!close")
    await assert_erased(fast_stack, ref, case_room)


async def test_inactivity_warning_then_close_and_erase(fast_stack, advocate, survivor):
    ref, case_room = await claim_new_chat(fast_stack, advocate, survivor)
    await advocate.say(case_room, "hello")
    await until(lambda: any("will close in" in t for t in survivor.texts("hotline")), 30, "the warning")
    await until(lambda: any("was told the chat closes" in b for b in advocate.bodies(case_room)), 10, "advocate told")
    await until(lambda: survivor.first("ended"), 30, "the close")
    await until(lambda: any("closed after a long silence" in b for b in advocate.bodies(case_room)), 10, "notice")
    await assert_erased(fast_stack, ref, case_room)


async def test_emergency_closure_and_statistics_in_the_admin_room(fast_stack, admin):
    admin_room = fast_stack.accounts.admin_room
    await admin.say(admin_room, "!service close Closed today because of a storm. Please call +1 555 0100.")
    await until(lambda: any(b.startswith("Chat intake is closed") for b in admin.bodies(admin_room)), 20, "closed")
    assert await service_state(fast_stack, admin) == {
        "closed": True, "message": "Closed today because of a storm. Please call +1 555 0100."}
    # The page learns it within seconds, and a new chat is refused with the message.
    status = await until_status(fast_stack, lambda s: s.get("closed"), 30)
    assert status["message"] == "Closed today because of a storm. Please call +1 555 0100."
    page = Survivor(fast_stack.page_url)
    try:
        await page.connect()
        await page.send({"type": "start"})
        refusal = await until(lambda: next((f for f in page.frames if f.get("type") == "error"), None), 20, "refusal")
        assert refusal["code"] == "closed"
    finally:
        await page.close()
    await admin.say(admin_room, "!service open")
    await until(lambda: any(b.startswith("Chat intake is open") for b in admin.bodies(admin_room)), 20, "open")
    assert (await service_state(fast_stack, admin))["closed"] is False
    await until_status(fast_stack, lambda s: s.get("accepting"), 30)
    await admin.say(admin_room, "!service close")
    await until(lambda: any(b.startswith("Use !service close MESSAGE") for b in admin.bodies(admin_room)), 20, "usage")
    # The chats of the tests above: 3 started, 2 answered, 1 abandoned, 1 closed for inactivity.
    await admin.say(admin_room, "!stats today")
    report = await until(lambda: next((b for b in admin.bodies(admin_room) if b.startswith("Statistics")), None),
                         20, "statistics")
    counts = dict(re.findall(r"^(\S+(?: · \S+)?): (\d+)$", report, re.MULTILINE))
    assert counts["started"] == "3" and counts["answered"] == "2"
    assert counts["abandoned"] == "1" and counts["closed_inactivity"] == "1" and counts["closed_advocate"] == "1"
    assert sum(int(v) for k, v in counts.items() if k.startswith("wait · ")) == 2
    assert sum(int(v) for k, v in counts.items() if k.startswith("duration · ")) == 2
    assert "@" not in report and "!" not in report.replace("!stats", "")  # no accounts, no rooms


async def service_state(stack: DevStack, admin: Advocate) -> dict:
    room = stack.accounts.service_room
    url = f"{stack.homeserver.url}/_matrix/client/v3/rooms/{room}/state/{SERVICE_STATE}/"
    token = stack.homeserver.secrets()["as_token"]  # read it as the gateway does
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        return await r.json()


async def until_status(stack: DevStack, predicate, timeout: float) -> dict:
    """Poll the page's status endpoint, as an open page does."""
    latest: dict = {}

    async def fetch() -> None:
        async with aiohttp.ClientSession() as http, http.get(stack.page_url + "status") as response:
            latest.clear()
            latest.update(await response.json())

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await fetch()
        if predicate(latest):
            return dict(latest)
        assert loop.time() < deadline, f"status never changed: {latest}"
        await asyncio.sleep(0.5)
