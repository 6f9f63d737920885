"""The homeserver's rate limits as shipped: people typing fast are never held back, and the limits
still hold (logins behind one office address at and past the limit)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets

import aiohttp
import pytest
import yaml

from hotline_runtime.synapse_admin import SynapseAdmin
from hotline.homeserver import PRODUCTION_RATE_LIMITS
from testkit.clients import assert_erased, claim_new_chat, until

# A line that says the homeserver held a request back: the status, or Synapse's error code. Not a
# log timestamp's milliseconds (",429") nor a number that merely contains the digits.
HELD_BACK = re.compile(r"(?<![,.\d])429(?!\d)|M_LIMIT_EXCEEDED|ratelimited")

OFFICE = "203.0.113.7"  # one office address (TEST-NET-3), as the proxy's X-Forwarded-For names it


def test_the_test_stack_runs_on_the_shipped_limits(stack):
    config = yaml.safe_load(stack.homeserver.config_path.read_text())
    assert {key: config[key] for key in PRODUCTION_RATE_LIMITS} == PRODUCTION_RATE_LIMITS


async def test_a_fast_survivor_and_a_fast_advocate_are_not_held_back(stack, advocate, survivor, canaries, caplog):
    """40 survivor messages and 30 advocate messages in the same minute, each relayed within 1 s."""
    caplog.set_level(logging.WARNING, logger="nio")
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    await until(lambda: "An advocate has joined the chat." in survivor.texts("hotline"), 20, "joined notice")
    slowest: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def paced(name: str, count: int, send, arrived) -> None:
        start = loop.time()
        for i in range(count):
            text = f"{name} line {i} {secrets.token_hex(3)}"
            canaries.append(text)
            sent = loop.time()
            await send(text)
            await until(lambda: arrived(text), 20, f"{name} line {i}")
            slowest[name] = max(slowest.get(name, 0.0), loop.time() - sent)
            await asyncio.sleep(max(0.0, start + (i + 1) * 60 / count - loop.time()))

    await asyncio.gather(
        paced("survivor", 40, survivor.say, lambda text: f"Survivor: {text}" in advocate.bodies(case_room)),
        paced("advocate", 30, lambda text: advocate.say(case_room, text),
              lambda text: text in survivor.texts("advocate")),
    )
    limited = [line for line in (stack.logs / "webchat.log").read_text().splitlines()
               + (stack.logs / "bot.log").read_text().splitlines() if HELD_BACK.search(line)]
    assert not limited, limited[:3]
    assert not [r for r in caplog.records if HELD_BACK.search(r.getMessage())], "the advocate's client was held back"
    assert slowest["survivor"] < 1.0 and slowest["advocate"] < 1.0, slowest
    await advocate.say(case_room, "!close")
    await assert_erased(stack, ref, case_room)
    # The erase redacted every line of the case room at once, far more than one account's burst:
    # the bot (exempt from the limits) was not held back while erasing either.
    bot_log = (stack.logs / "bot.log").read_text()
    redacted = [int(n) for n in re.findall(r"redacted (\d+) events of a case room", bot_log)]
    assert redacted and redacted[-1] > PRODUCTION_RATE_LIMITS["rc_message"]["burst_count"], redacted
    assert not [line for line in bot_log.splitlines() if HELD_BACK.search(line)]


async def test_past_the_message_limit_an_account_is_slowed_and_nothing_is_lost(stack, advocate, survivor, caplog):
    """One advocate writing as fast as the client can: past the limit Synapse holds the lines back
    (429; the client waits and retries), and every line still reaches the survivor, in order."""
    caplog.set_level(logging.WARNING, logger="nio")
    ref, case_room = await claim_new_chat(stack, advocate, survivor)
    await until(lambda: "An advocate has joined the chat." in survivor.texts("hotline"), 20, "joined notice")
    limit = PRODUCTION_RATE_LIMITS["rc_message"]
    lines: list[str] = []
    held_back = lambda: [r for r in caplog.records if HELD_BACK.search(r.getMessage())]  # noqa: E731
    while not held_back() and len(lines) < 10 * limit["burst_count"]:
        lines.append(f"burst line {len(lines)} {secrets.token_hex(3)}")
        await advocate.say(case_room, lines[-1])
    assert held_back(), "never held back: the limit is not in force"
    assert len(lines) > limit["burst_count"]  # at the limit, nothing was held back
    await until(lambda: survivor.texts("advocate") == lines, 30, "every line, in order")
    await advocate.say(case_room, "!close")
    await assert_erased(stack, ref, case_room)


@pytest.fixture
async def office_staff(stack):
    """Eight staff accounts that are in no room (each signs in at most 5 times: the per-account limit)."""
    secret = stack.homeserver.secrets()["registration_shared_secret"]
    accounts = []
    async with aiohttp.ClientSession() as http:
        admin = SynapseAdmin(http, stack.homeserver.url, None)
        for _ in range(8):
            localpart, password = f"office{secrets.token_hex(4)}", secrets.token_urlsafe(12)
            created = await admin.register(secret, localpart, password, admin=False)
            await _logout(http, stack.homeserver.url, created["access_token"])
            accounts.append((localpart, password))
    return accounts


async def _logout(http: aiohttp.ClientSession, homeserver: str, token: str) -> None:
    async with http.post(f"{homeserver}/_matrix/client/v3/logout", json={},
                         headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200


async def test_a_team_signs_in_behind_one_office_address_at_and_past_the_limit(stack, office_staff):
    limit = PRODUCTION_RATE_LIMITS["rc_login"]["address"]
    loop = asyncio.get_running_loop()
    url = f"{stack.homeserver.url}/_matrix/client/v3/login"
    tokens: list[str] = []
    async with aiohttp.ClientSession() as http:
        started = loop.time()

        async def sign_in(attempt: int, address: str = OFFICE) -> tuple[int, dict]:
            localpart, password = office_staff[attempt % len(office_staff)]
            body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
                    "password": password}
            async with http.post(url, json=body, headers={"X-Forwarded-For": address}) as response:
                data = await response.json()
                if response.status == 200:
                    tokens.append(data["access_token"])
                return response.status, data

        try:
            # At the limit: a whole shift signs in at once.
            for attempt in range(limit["burst_count"]):
                status, data = await sign_in(attempt)
                assert status == 200, (attempt, data)
            # Past it: refused (with the time to wait), after at most the logins the rate has
            # given back meanwhile.
            allowance = int(limit["per_second"] * (loop.time() - started)) + 1
            for attempt in range(limit["burst_count"], limit["burst_count"] + allowance + 1):
                status, data = await sign_in(attempt)
                if status == 429:
                    assert data["errcode"] == "M_LIMIT_EXCEEDED" and data["retry_after_ms"] > 0
                    break
            else:
                raise AssertionError("the office address was never limited")
            # Another address is not held back by the office's (an account signed in 4 times).
            status, data = await sign_in(len(office_staff) - 1, "198.51.100.20")
            assert status == 200, data
        finally:
            for token in tokens:
                await _logout(http, stack.homeserver.url, token)
