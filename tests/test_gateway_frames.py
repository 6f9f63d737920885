"""Bad input on the real WebSocket gets a clear error and loses nothing; a down homeserver fails safely."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from hotline.devstack import free_port
from testkit.clients import Survivor, assert_erased, claim_new_chat, routing, until
from webchat.app import create_app
from webchat.settings import GatewaySettings


def errors(survivor: Survivor) -> list[str]:
    return [f["code"] for f in survivor.frames if f.get("type") == "error"]


async def test_malformed_frames_get_errors_and_the_chat_goes_on(stack, survivor, canaries):
    await survivor.connect()
    await survivor.send({"type": "say", "id": "early", "text": "before start"})
    await until(lambda: "not_started" in errors(survivor), 10, "not_started")
    await survivor.start()
    assert survivor.ws is not None
    await survivor.ws.send_str("this is not json")
    await survivor.ws.send_str("[1, 2, 3]")
    await survivor.send({"type": "teleport"})
    await survivor.send({"type": "say", "id": "bad id with spaces", "text": "x"})
    await survivor.send({"type": "say", "id": "ok1"})
    await survivor.send({"type": "say", "id": "ok2", "text": "   \n  "})
    await survivor.send({"type": "say", "id": "ok3", "text": "y" * 10_001})
    await survivor.ws.send_str('{"type": "say", "id": "ok4", "text": "\\ud800 lone surrogate"}')
    await survivor.send({"type": "start"})
    await survivor.ws.send_bytes(b"\x00\x01")
    await until(lambda: len(errors(survivor)) >= 11, 10, "every error")
    assert errors(survivor) == ["not_started", "bad_frame", "bad_frame", "bad_frame", "bad_frame", "bad_frame",
                                "empty", "too_long", "bad_frame", "already_started", "bad_frame"]
    too_long = next(f for f in survivor.frames if f.get("code") == "too_long")
    assert too_long["id"] == "ok3" and "10000" in too_long["message"]
    # The chat still works.
    await survivor.say("still here")
    await survivor.send({"type": "end"})
    await until(lambda: survivor.first("ended"), 20, "ended")


async def test_oversized_frame_closes_the_socket_with_1009(stack, survivor):
    await survivor.connect()
    assert survivor.ws is not None
    await survivor.ws.send_str(json.dumps({"type": "say", "id": "big", "text": "z" * 70_000}))
    await until(lambda: survivor.ws.closed, 10, "the close")
    assert survivor.ws.close_code == 1009


async def test_socket_from_another_origin_is_refused(stack):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(stack.page_url + "ws", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403


async def test_resume_with_a_wrong_secret_reveals_nothing(stack, survivor):
    await survivor.start()
    other = Survivor(stack.page_url)
    try:
        await other.connect()
        await other.send({"type": "resume", "chat": survivor.chat, "secret": "wrong", "seen": 0})
        await until(lambda: other.first("ended"), 10, "ended")
        assert not other.texts()
    finally:
        await other.close()
    await survivor.send({"type": "end"})
    await until(lambda: survivor.first("ended"), 20, "ended")


async def test_a_flood_of_frames_gets_one_rate_limited_reply_and_binary_frames_count(stack, survivor):
    """30 frames in 10 s are handled (at the limit); past it, one ``rate_limited`` and nothing else
    until the socket may send again, whether the frames are text or binary."""
    await survivor.connect()
    assert survivor.ws is not None
    for _ in range(100):
        await survivor.ws.send_bytes(b"\x00\x01")
    for _ in range(50):
        await survivor.ws.send_str("not json")
    await until(lambda: "rate_limited" in errors(survivor), 10, "rate_limited")
    await asyncio.sleep(1)  # let any later replies arrive (there must be none beyond the slack below)
    codes = errors(survivor)
    assert codes.count("rate_limited") == 1
    # 30 within the limit, plus what leaks back (3 a second) while the gateway reads the flood.
    assert 30 <= codes.count("bad_frame") <= 36, codes.count("bad_frame")
    assert codes.index("rate_limited") >= 30
    told = next(f for f in survivor.frames if f.get("code") == "rate_limited")
    assert 5 <= told["retry_after"] <= 10.4  # until the bucket is empty (less what leaked while reading)
    await survivor.ws.close()


async def test_a_resume_from_another_page_displaces_the_first(stack, advocate, canaries):
    """The chat id and secret used from a second browser: the first page is told and its socket
    closes (it can send nothing more); the chat goes on with the second, not counted as a dropped
    connection."""
    canaries += ["from the page that took over 3b7e", "from the first page 9a1c"]
    first, second = Survivor(stack.page_url), Survivor(stack.page_url)
    try:
        ref, case_room = await claim_new_chat(stack, advocate, first)
        await first.say("from the first page 9a1c")
        await second.connect()
        await second.send({"type": "resume", "chat": first.chat, "secret": first.secret, "seen": 0})
        await until(lambda: second.first("resumed"), 10, "resumed")
        await until(lambda: first.first("displaced"), 10, "the first page is told")
        await until(lambda: first.ws.closed, 10, "the first page's socket closes")
        assert first.ws.close_code == 4001
        assert first.frames[-1] == {"type": "displaced"}
        # The second page got the conversation so far and carries on.
        assert second.texts("hotline") == first.texts("hotline")
        await second.say("from the page that took over 3b7e")
        await until(lambda: "Survivor: from the page that took over 3b7e" in advocate.bodies(case_room), 20, "relay")
        await advocate.say(case_room, "seen on the second page only")
        await until(lambda: "seen on the second page only" in second.texts("advocate"), 20, "to the second page")
        assert "seen on the second page only" not in first.texts()
        # The first socket's close was not taken for a lost connection (the bot saw the message
        # above after anything the gateway sent when that socket closed).
        with routing(stack) as view:
            assert view.chat(ref).disconnected_at is None
        await advocate.say(case_room, "!close")
        await until(lambda: second.first("ended"), 20, "ended")
        await assert_erased(stack, ref, case_room)
    finally:
        await first.close()
        await second.close()


async def test_homeserver_down_means_a_clear_unavailable_error():
    """A gateway whose homeserver does not answer tells the page, and keeps running."""
    port = free_port()
    settings = GatewaySettings(
        homeserver_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        bot_user_id="@hotline:hotline.localhost",
        as_token="unused",
        bot_master_key="A" * 43,
        listen_port=port,
        bot_join_timeout_seconds=5,
    )
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    page = Survivor(f"http://127.0.0.1:{port}/")
    try:
        await page.connect()
        await page.send({"type": "start"})
        await until(lambda: "unavailable" in errors(page), 30, "unavailable")
        await until(lambda: page.ws.closed, 10, "the close")
        async with aiohttp.ClientSession() as http, http.get(page.page_url) as response:
            assert response.status == 200  # the page itself (with the hotline number) still loads
            # ... and says that chat cannot be reached (its status: tests/test_page_states.py shows it).
            assert '"reachable":false' in await response.text()
        async with aiohttp.ClientSession() as http, http.get(page.page_url + "status") as response:
            assert (await response.json())["reachable"] is False
    finally:
        await page.close()
        await runner.cleanup()
