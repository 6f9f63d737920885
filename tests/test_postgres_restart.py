"""PostgreSQL restarted under live chats, on the shipped settings: nothing lost, nothing doubled.

Synapse on PostgreSQL (as in production, with the shipped rate limits); ``pg_ctl restart -m fast``
closes every connection of Synapse's pool, and for a few seconds Synapse answers 500 to whatever
request meets a dead connection: the page's, an advocate's, the bot's. The page and an advocate's
client are told and send again (a person presses "Try again" / "Resend"); the bot, which has no
person behind it, must do so by itself, and none of the three may lose its login over it (the
matrix-nio bug that hotline_runtime.nio_client corrects). Its own stack, since it restarts the
database under it.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path

import pytest
from aiohttp import web
from nio import AsyncClient, ShareGroupSessionError, ShareGroupSessionResponse

from hotline.devstack import DevStack, free_port
from hotline_runtime.nio_client import HotlineClient
from tests.conftest import running
from testkit.clients import Advocate, Survivor, assert_erased, chat_row_exists, claim_new_chat, login, until

CHATS = 2
LINES = 16  # per side and chat, one every half second: under the shipped 3 a second per account
RESTARTS = 3


@pytest.fixture(scope="module")
def pg_stack():
    root = Path(tempfile.mkdtemp(prefix="hotline-pgrestart-"))
    yield from running(DevStack(root / "stack", advocates=CHATS, database="postgres",
                                settings={"reconnect_grace_seconds": "60"}))


async def page_says(page: Survivor, text: str) -> int:
    """What the page does: send, and on ``send_failed`` send it again with the same id (the
    survivor presses "Try again"). Returns how many times it was told it failed."""
    failures = 0
    frame_id = secrets.token_hex(8)
    while True:
        page.frames[:] = [f for f in page.frames if f.get("id") != frame_id]
        await page.send({"type": "say", "id": frame_id, "text": text})
        answer = await until(lambda: next((f for f in page.frames if f.get("id") == frame_id
                                           and f.get("type") in ("ack", "error")), None), 60, "an answer")
        if answer["type"] == "ack":
            return failures
        assert answer.get("code") == "send_failed", answer
        failures += 1
        assert failures < 20, "the page's message never went through"
        await asyncio.sleep(1)


async def advocate_says(advocate: Advocate, room: str, text: str) -> int:
    """What an advocate's client does when a send fails: resend, with the same transaction id."""
    txn = secrets.token_hex(8)
    failures = 0
    while True:
        try:
            response = await advocate.client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text},
                                                       ignore_unverified_devices=True, tx_id=txn)
            if hasattr(response, "event_id"):
                return failures
        except Exception:  # e.g. the room's members could not be fetched for encryption
            pass
        failures += 1
        assert failures < 20, "the advocate's message never went through"
        await asyncio.sleep(1)


async def test_postgres_restarted_under_live_chats_loses_and_duplicates_nothing(pg_stack, canaries):
    assert pg_stack.postgres is not None
    pages = [Survivor(pg_stack.page_url) for _ in range(CHATS)]
    advocates = [await login(pg_stack, account) for account in pg_stack.accounts.advocates[:CHATS]]
    chats = [await claim_new_chat(pg_stack, advocate, page) for advocate, page in zip(advocates, pages)]
    for page in pages:
        await until(lambda page=page: "An advocate has joined the chat." in page.texts("hotline"), 30, "joined")
    tag = secrets.token_hex(3)
    said = {i: ([f"s{i}-{n:02d} {tag}" for n in range(LINES)], [f"a{i}-{n:02d} {tag}" for n in range(LINES)])
            for i in range(CHATS)}
    canaries += [t for pair in said.values() for side in pair for t in side]
    told_failed = {"page": 0, "advocate": 0}

    async def survivor_writes(i: int) -> None:
        for text in said[i][0]:
            told_failed["page"] += await page_says(pages[i], text)
            await asyncio.sleep(0.5)

    async def advocate_writes(i: int) -> None:
        for text in said[i][1]:
            told_failed["advocate"] += await advocate_says(advocates[i], chats[i][1], text)
            await asyncio.sleep(0.5)

    async def restart_postgres() -> None:
        # Before, while and after: lines go out before the first restart, between and after them.
        for _ in range(RESTARTS):
            await asyncio.sleep(2.5)
            await pg_stack.postgres.restart()

    try:
        await asyncio.gather(restart_postgres(), *(survivor_writes(i) for i in range(CHATS)),
                             *(advocate_writes(i) for i in range(CHATS)))
        for i, page in enumerate(pages):
            from_survivor, from_advocate = said[i]
            relayed = [f"Survivor: {t}" for t in from_survivor]
            case_room = chats[i][1]
            await until(lambda: all(t in advocates[i].bodies(case_room) for t in relayed), 90,
                        f"chat {i}: the survivor's lines in the case room")
            await until(lambda: all(t in page.texts("advocate") for t in from_advocate), 90,
                        f"chat {i}: the advocate's lines on the page")
        await asyncio.sleep(2)  # anything sent twice would have arrived by now
        for i, page in enumerate(pages):
            from_survivor, from_advocate = said[i]
            relayed = [f"Survivor: {t}" for t in from_survivor]
            assert [b for b in advocates[i].bodies(chats[i][1]) if b in relayed] == relayed, f"chat {i}"
            assert [t for t in page.texts("advocate") if t in from_advocate] == from_advocate, f"chat {i}"
            assert not page.first("ended")
        # The restarts did reach the clients (else this test would show nothing).
        assert told_failed["page"] + told_failed["advocate"] > 0, told_failed
    finally:
        for advocate, (_, case_room) in zip(advocates, chats):
            await advocate_says(advocate, case_room, "!close")
        for page in pages:
            await until(lambda page=page: page.first("ended"), 60, "ended")
            await page.close()
        for advocate in advocates:
            await advocate.close()
    # A room whose message was being stored when the connection died keeps a lock in Synapse's
    # database that is never released; Synapse lets it expire after 2 minutes, and the purge waits
    # for it (the bot retries it until then): the erase finishes, a little late.
    for ref, _ in chats:
        await until(lambda ref=ref: not chat_row_exists(pg_stack, ref), 240, "the bot to erase the chat")
    for ref, case_room in chats:
        await assert_erased(pg_stack, ref, case_room)


@pytest.mark.parametrize(("client_class", "stays_logged_in"), [(AsyncClient, False), (HotlineClient, True)])
async def test_a_refused_room_key_share_does_not_sign_the_client_out(client_class, stays_logged_in):
    """What a 500 to a room-key share's to-device request does to a client (a real HTTP answer
    from a loopback server, as Synapse gives it while its database restarts): matrix-nio alone
    forgets its access token; HotlineClient keeps it and notes the room for a new share."""
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_UNKNOWN", "error": "Internal server error"}, status=500)

    app = web.Application()
    app.router.add_put("/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = client_class(f"http://127.0.0.1:{port}", "@hotline:example.org")
    client.restore_login("@hotline:example.org", "DEVICE", "token")
    try:
        response = await client._send(ShareGroupSessionResponse, "PUT", "/_matrix/client/v3/sendToDevice/x/1", "{}",
                                      response_data=("!room:example.org", {("@survivor:example.org", "PHONE")}))
        assert isinstance(response, ShareGroupSessionError)
        assert client.logged_in is stays_logged_in
        if stays_logged_in:
            assert response.room_id == "!room:example.org" and response.retry_after_ms is None
    finally:
        await client.close()
        await runner.cleanup()
