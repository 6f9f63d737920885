"""Opening hours, the emergency closure, the preferred language, typing and pooled answers.

All on the real stack: Synapse, the bot and gateways on loopback. Extra gateways with other
settings run in-process against the same homeserver (``gateway``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from hotline.devstack import DevStack, free_port
from hotline_runtime.hours import ALWAYS, Schedule
from hotline_runtime.wire import SERVICE_STATE
from testkit.clients import Survivor, alerts_in, assert_erased, claim_new_chat, new_alert, routing, until
from webchat import app_keys
from webchat.app import create_app
from webchat.service import Closure, page_status
from webchat.settings import GatewaySettings


@contextlib.asynccontextmanager
async def gateway(stack: DevStack, **changes: Any) -> AsyncIterator[tuple[str, web.Application]]:
    """A second gateway in this process, on the stack's homeserver, with other settings."""
    assert stack.accounts is not None
    port = free_port()
    values: dict[str, Any] = {
        "homeserver_url": stack.homeserver.url,
        "bot_user_id": stack.accounts.bot.user_id,
        "as_token": stack.homeserver.secrets()["as_token"],
        "bot_master_key": stack.bot_master_key,
        "survivor_prefix": "chat_",
        "service_room": stack.accounts.service_room,
        "hotline_phone": "+1 555 0100",
        "listen_port": port,
        "reconnect_grace_seconds": 4,
    } | changes
    app = create_app(GatewaySettings(**values))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        await runner.cleanup()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        return await response.json()


def closed_days() -> str:
    """Today and tomorrow (UTC) as holidays: closed now, open again the day after tomorrow."""
    today = datetime.now(UTC).date()
    return f"{today}, {today + timedelta(days=1)}"


# ---------------------------------------------------------------------- opening hours


async def test_outside_opening_hours_start_is_refused_with_when_it_opens(stack):
    async with gateway(stack, holidays=closed_days(), timezone="UTC") as (url, _):
        status = await get_json(url + "status")
        reopening = datetime.now(UTC).date() + timedelta(days=2)
        assert status["accepting"] is False and status["closed"] is False
        assert status["next_open"] == f"{reopening}T00:00:00+00:00"
        page = Survivor(url)
        try:
            await page.connect()
            await page.send({"type": "start"})
            error = await until(lambda: page.first("error"), 10, "the error")
            assert error["code"] == "closed"
            assert error["status"]["next_open"] == status["next_open"]
            await until(lambda: page.ws.closed, 10, "the close")
            assert not page.first("started")
        finally:
            await page.close()


NY = "America/New_York"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(NY))


PAGE_STATUS = [
    # (now, closure, accepting, open, closes_at, next_open)
    ("2026-11-30 10:00", Closure(), True, True, "2026-11-30T17:00:00-05:00", None),
    ("2026-11-30 16:45", Closure(), False, True, "2026-11-30T17:00:00-05:00", "2026-12-01T09:00:00-05:00"),
    ("2026-11-30 18:00", Closure(), False, False, None, "2026-12-01T09:00:00-05:00"),
    ("2026-11-30 10:00", Closure(True, "Closed for a staff day."), False, True, "2026-11-30T17:00:00-05:00", None),
]


@pytest.mark.parametrize(("now", "closure_state", "accepting", "is_open", "closes_at", "next_open"), PAGE_STATUS)
def test_page_status_from_hours_and_closure(now, closure_state, accepting, is_open, closes_at, next_open):
    schedule = Schedule.parse("mon-fri 09:00-17:00", NY, "", 30)
    status = page_status(schedule, closure_state, at(now))
    assert (status["accepting"], status["open"]) == (accepting, is_open)
    assert (status["closes_at"], status["next_open"]) == (closes_at, next_open)
    assert status["closed"] is closure_state.closed and status["message"] == closure_state.message


def test_always_open_shows_no_closing_time():
    status = page_status(Schedule.parse(ALWAYS), Closure(), datetime.now(UTC))
    assert status["accepting"] and status["closes_at"] is None and status["next_open"] is None


@pytest.mark.parametrize("reachable", [True, False])
def test_page_status_says_whether_the_homeserver_answers(reachable):
    status = page_status(Schedule.parse(ALWAYS), Closure(), datetime.now(UTC), reachable)
    assert status["reachable"] is reachable and status["accepting"]  # the page hides "Start chat" when False


# ---------------------------------------------------------------------- emergency closure


@contextlib.asynccontextmanager
async def bot_token(stack: DevStack) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A short-lived token of the bot's account (through an admin), with no device of its own."""
    assert stack.accounts is not None
    hs = stack.homeserver.url
    admin = stack.accounts.admins[0]
    async with aiohttp.ClientSession() as http:
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": admin.user_id},
                "password": admin.password}
        async with http.post(hs + "/_matrix/client/v3/login", json=body) as response:
            admin_token = (await response.json())["access_token"]
        try:
            async with http.post(f"{hs}/_synapse/admin/v1/users/{quote(stack.accounts.bot.user_id)}/login",
                                 json={}, headers={"Authorization": f"Bearer {admin_token}"}) as response:
                assert response.status == 200, await response.text()
                token = (await response.json())["access_token"]
            yield http, token
        finally:
            await http.post(hs + "/_matrix/client/v3/logout", headers={"Authorization": f"Bearer {admin_token}"})


async def set_closure(stack: DevStack, closed: bool, message: str = "") -> None:
    """What the bot's ``!service close`` does: the state event in the service room."""
    assert stack.accounts is not None
    room = quote(stack.accounts.service_room)
    async with bot_token(stack) as (http, token):
        async with http.put(f"{stack.homeserver.url}/_matrix/client/v3/rooms/{room}/state/{SERVICE_STATE}/",
                            json={"closed": closed, "message": message},
                            headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200, await response.text()


@contextlib.asynccontextmanager
async def closure(stack: DevStack, message: str) -> AsyncIterator[None]:
    """Chat closed by the program for the duration; open again afterwards, also on the stack's gateway."""
    await set_closure(stack, True, message)
    try:
        yield
    finally:
        await set_closure(stack, False, "")
        await wait_status(stack.page_url, lambda s: s["accepting"], 30)


async def test_emergency_closure_shows_within_seconds_and_open_chats_continue(stack, canaries):
    canaries.append("still talking during the closure 5e1d")
    async with gateway(stack, service_poll_seconds=0.5) as (url, _):
        page = Survivor(url)
        late = Survivor(url)
        try:
            await page.start()
            async with closure(stack, "Chat is closed today because of a storm. Please call us."):
                loop_start = datetime.now(UTC)
                status = await wait_status(url, lambda s: s["closed"])
                assert (datetime.now(UTC) - loop_start).total_seconds() < 5
                assert status["accepting"] is False
                assert status["message"] == "Chat is closed today because of a storm. Please call us."
                # A new chat is refused with the program's message ...
                await late.connect()
                await late.send({"type": "start"})
                error = await until(lambda: late.first("error"), 10, "the error")
                assert error["code"] == "closed" and error["status"]["closed"] is True
                # ... and the chat that was already open goes on.
                await page.say("still talking during the closure 5e1d")
            await wait_status(url, lambda s: s["accepting"] and not s["closed"])
            await page.send({"type": "end"})
            await until(lambda: page.first("ended"), 20, "ended")
        finally:
            await page.close()
            await late.close()


async def wait_status(url: str, predicate: Any, timeout: float = 10) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        seen["status"] = await get_json(url + "status")
        return bool(predicate(seen["status"]))

    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not await check():
        assert datetime.now(UTC) < deadline, f"status stayed {seen['status']}"
        await asyncio.sleep(0.2)
    return seen["status"]


# ---------------------------------------------------------------------- language and typing


async def test_preferred_language_reaches_the_dispatch_alert(stack, advocate):
    async with gateway(stack, chat_languages="en,es") as (url, _):
        page = Survivor(url)
        try:
            await page.connect()
            await page.send({"type": "start", "language": "fr"})  # not a chat language here
            error = await until(lambda: page.first("error"), 10, "the error")
            assert error["code"] == "bad_frame" and "language" in error["message"]
            before = len(alerts_in(stack, advocate))
            await page.send({"type": "start", "language": "es"})
            await until(lambda: page.first("started"), 30, "started")
            ref = await new_alert(stack, advocate, before)
            await until(lambda: any(f"Ref {ref} · preferred language: es" in b
                                    for b in advocate.bodies(stack.accounts.dispatch_room)), 20, "the language line")
            await page.send({"type": "end"})
            await until(lambda: page.first("ended"), 20, "ended")
        finally:
            await page.close()


async def test_advocate_typing_reaches_the_page_as_a_passing_frame(stack, advocate, survivor):
    _, case_room = await claim_new_chat(stack, advocate, survivor)
    await advocate.client.room_typing(case_room, True, timeout=10_000)
    typing = await until(lambda: [f for f in survivor.frames if f.get("type") == "typing"], 20, "typing")
    assert typing[0] == {"type": "typing", "active": True}  # no seq: not replayed after a reconnect
    await advocate.client.room_typing(case_room, False)
    await until(lambda: {"type": "typing", "active": False} in survivor.frames, 20, "typing stopped")
    await survivor.send({"type": "end"})
    await until(lambda: survivor.first("ended"), 20, "ended")


# ---------------------------------------------------------------------- pooled answers


def answer_counts(stack: DevStack) -> dict[tuple[str, str], int]:
    with routing(stack) as view:
        return view.totals("answer:")


async def post_answers(url: str, body: Any, origin: str | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        data = body if isinstance(body, str) else None
        async with http.post(url + "answers", data=data, json=None if data is not None else body,
                             headers={"Origin": origin or url.rstrip("/")}) as response:
            return response.status, await response.text()


async def test_answers_are_pooled_and_reach_the_bot_only_as_encrypted_counts(stack):
    before = answer_counts(stack)
    async with gateway(stack, answers_pool_min=3) as (url, app):
        pool = app[app_keys.ANSWERS].pool
        # Bad submissions are refused with a reason and counted nowhere.
        assert (await post_answers(url, {"answers": {"age": "18_24"}}, "https://evil.example"))[0] == 403
        assert (await post_answers(url, "not json"))[0] == 400
        assert (await post_answers(url, {"answers": {}}))[0] == 400
        status, text = await post_answers(url, {"answers": {"shoe_size": "42"}})
        assert status == 400 and "shoe_size" in text
        assert (await post_answers(url, {"answers": {"age": "forty"}}))[0] == 400
        assert (await post_answers(url, {"answers": {"language": "en"}}))[0] == 400  # goes with the chat only
        assert (await post_answers(url, {"answers": {"age": "18_24"}, "chat": "x"}))[0] == 400
        assert pool.pooled == 0
        # Two submissions stay in the gateway: fewer than the minimum could be matched to chats.
        assert (await post_answers(url, {"answers": {"age": "18_24", "heard": "friend"}}))[0] == 204
        assert (await post_answers(url, {"answers": {"age": "prefer_not"}}))[0] == 204
        assert pool.pooled == 2
        assert answer_counts(stack) == before
        # The third makes a batch: sent encrypted to the service room, counted by the bot.
        assert (await post_answers(url, {"answers": {"helped": "yes", "age": "18_24"}}))[0] == 204
        await until(lambda: pool.pooled == 0, 20, "the batch to leave")
        expected = dict(before)
        for key, n in {("answer:age", "18_24"): 2, ("answer:age", "prefer_not"): 1,
                       ("answer:heard", "friend"): 1, ("answer:helped", "yes"): 1}.items():
            expected[key] = expected.get(key, 0) + n
        await until(lambda: answer_counts(stack) == expected, 30, "the bot to count the answers")
    # The one-off device that sent the batch is gone again.
    assert not await _service_user_devices(stack)


async def _service_user_devices(stack: DevStack) -> list[str]:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {stack.homeserver.secrets()['as_token']}"}
        async with http.get(stack.homeserver.url + "/_matrix/client/v3/devices", headers=headers) as response:
            data = await response.json()
    return [d["device_id"] for d in data.get("devices", [])]


async def test_a_stopping_gateway_closes_every_chat_client_even_when_the_bot_is_not_told(
        stack, advocate, monkeypatch):
    """Shutdown ends each chat (telling the bot); when that cannot finish in time, the chat's
    client is closed all the same: nothing is left open ("Unclosed client session")."""
    from webchat.session import ChatSession

    page = Survivor("")
    async with gateway(stack) as (url, app):
        page.page_url = url
        before = len(alerts_in(stack, advocate))
        await page.start()
        ref = await new_alert(stack, advocate, before)
        session = app[app_keys.CHATS].find(page.chat, page.secret)
        assert session.client is not None and session.client.client_session is not None
        connections = session.client.client_session

        async def not_answered(self: ChatSession, action: Any) -> None:
            await asyncio.Event().wait()  # the homeserver does not answer

        monkeypatch.setattr(ChatSession, "signal", not_answered)
    assert connections.closed
    assert session.client is None
    await page.close()
    # The bot was never told: the chat still waits, and an advocate closes it.
    await advocate.say(stack.accounts.dispatch_room, f"!claim {ref}")
    case_room = await until(lambda: advocate.find_room_with(f"Case room for ref {ref}"), 30, "the case room")
    await advocate.say(case_room, "!close")
    await assert_erased(stack, ref, case_room)
