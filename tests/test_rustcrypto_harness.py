"""The Rust-crypto advocate harness works, and behaves as Element does today.

Element uses matrix-rust-sdk crypto and excludes insecure devices (MSC4153): a room key goes only
to devices that their owner cross-signed, and an event from a device that is not cross-signed
does not decrypt. These tests run on a bare homeserver of their own (no bot, no gateway): two
Rust-crypto advocates read each other; a nio client, which has no cross-signing, is neither read
by a Rust-crypto advocate in Element's mode nor given its room keys, and is in the old mode.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import MegolmEvent, RoomMessageText, UnknownToDeviceEvent

from hotline_runtime.synapse_admin import SynapseAdmin
from hotline.devstack import ENCRYPTION, SERVER_NAME, free_port
from hotline.homeserver import EmbeddedHomeserver, HomeserverProcess
from tests.rustcrypto_client import UNSIGNED_SENDER_DEVICE, RustAdvocate, rust_crypto_harness  # noqa: F401
from testkit.clients import Advocate, until


@pytest.fixture(scope="module")
def homeserver() -> Iterator[EmbeddedHomeserver]:
    directory = Path(tempfile.mkdtemp(prefix="rustcrypto-hs-"))
    server = EmbeddedHomeserver(directory, SERVER_NAME, free_port())
    server.write_config(relaxed_rate_limits=True)
    process = HomeserverProcess(server)
    asyncio.run(process.start())
    try:
        yield server
    finally:
        process.stop()


async def register(homeserver: EmbeddedHomeserver, name: str, admin: bool = False) -> tuple[str, str, str]:
    """A fresh account: (user id, password, access token of the registration's own session)."""
    password = secrets.token_urlsafe(18)
    localpart = f"{name}{secrets.token_hex(3)}"
    async with aiohttp.ClientSession() as http:
        data = await SynapseAdmin(http, homeserver.url, None).register(
            homeserver.secrets()["registration_shared_secret"], localpart, password, admin=admin)
    return data["user_id"], password, data["access_token"]


async def encrypted_room(homeserver: EmbeddedHomeserver, invite: list[str],
                         preset: str = "private_chat") -> tuple[str, str]:
    """An encrypted room made by a host account that has no encrypting device (a server admin,
    so the homeserver's invite policy lets it invite): (room id, the host's access token)."""
    _, _, token = await register(homeserver, "host", admin=True)
    created = await client_api(homeserver, token, "POST", "/_matrix/client/v3/createRoom",
                               {"preset": preset, "invite": invite, "initial_state": [ENCRYPTION]})
    return created["room_id"], token


async def client_api(homeserver: EmbeddedHomeserver, token: str, method: str, path: str,
                     body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, homeserver.url + path, json=body,
                                headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200, await response.text()
            return await response.json()


class NioClient(Advocate):
    """The tests' nio advocate (no cross-signing), also noting events it could not decrypt."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args, cross_signed=False)
        self.decrypted: dict[str, str] = {}  # event id → body
        self.undecryptable: set[str] = set()
        self.withheld: list[dict[str, Any]] = []  # m.room_key.withheld contents (nio ignores them)

    async def _on_sync(self, response: Any) -> None:
        await super()._on_sync(response)
        for info in response.rooms.join.values():
            for event in info.timeline.events:
                if isinstance(event, RoomMessageText):
                    self.decrypted[event.event_id] = event.body
                elif isinstance(event, MegolmEvent):
                    self.undecryptable.add(event.event_id)
        for event in response.to_device_events:
            if isinstance(event, UnknownToDeviceEvent) and event.type == "m.room_key.withheld":
                self.withheld.append(event.source["content"])


@pytest.fixture
async def rust_clients(rust_crypto_harness):
    started: list[RustAdvocate] = []

    def make(name: str) -> RustAdvocate:
        started.append(RustAdvocate(name))
        return started[-1]

    yield make
    for client in started:
        await client.close()


@pytest.fixture
async def nio_clients():
    started: list[NioClient] = []

    async def make(homeserver: EmbeddedHomeserver, user_id: str, password: str) -> NioClient:
        client = NioClient(homeserver.url, user_id, password)
        await client.login()
        started.append(client)
        return client

    yield make
    for client in started:
        await client.close()


async def test_a_rust_advocate_signs_in_as_element_does(homeserver, rust_clients):
    user_id, password, _ = await register(homeserver, "rust")
    status = await rust_clients("rust").login(homeserver.url, user_id, password, mode="signed")
    assert status["user_id"] == user_id
    assert status["cross_signing_ready"] is True
    assert status["own_device"] == {"signedByOwner": True, "crossSigningVerified": True, "localVerified": True}
    # The homeserver holds the account's cross-signing keys and the device's signature by them.
    rows = homeserver.query("SELECT keytype FROM e2e_cross_signing_keys WHERE user_id = ?", [user_id])
    assert sorted(keytype for (keytype,) in rows) == ["master", "self_signing", "user_signing"]
    [(device_keys,)] = homeserver.query(
        "SELECT key_json FROM e2e_device_keys_json WHERE user_id = ? AND device_id = ?", [user_id, status["device_id"]])
    signers = set(json.loads(device_keys)["signatures"][user_id])
    assert f"ed25519:{status['device_id']}" in signers and len(signers) == 2  # itself and the self-signing key


async def test_two_cross_signed_rust_advocates_read_each_other(homeserver, rust_clients):
    (alice_id, alice_pw, _), (bob_id, bob_pw, _) = [await register(homeserver, n) for n in ("alice", "bob")]
    alice, bob = rust_clients("alice"), rust_clients("bob")
    await asyncio.gather(alice.login(homeserver.url, alice_id, alice_pw, mode="signed"),
                         bob.login(homeserver.url, bob_id, bob_pw, mode="signed"))
    # Alice is invited (and joins by herself); Bob joins the public room when told to.
    room, _ = await encrypted_room(homeserver, [alice_id], preset="public_chat")
    await bob.join(room)
    await until(lambda: room in alice.joined and room in bob.joined, 30, "both to join")
    assert room in alice.invites and room not in bob.invites
    await alice.wait_for_member(room, bob_id)
    await bob.wait_for_member(room, alice_id)
    # Each sees the other's device as cross-signed by its owner.
    seen_by_alice = (await alice.device_info(bob_id))["devices"]
    assert [(d["device_id"], d["signedByOwner"]) for d in seen_by_alice] == [(bob.device_id, True)]

    first = await alice.send(room, "hello from alice")
    got = await bob.wait_for_outcome(first)
    assert (got["sender"], got["sender_device"], got["body"], got["decryption_failure"]) == \
        (alice_id, alice.device_id, "hello from alice", None)
    assert got["encrypted"] is True and got["type"] == "m.room.message" and got["msgtype"] == "m.text"
    assert got["shield"] == {"color": "none", "reason": None}

    second = await bob.send(room, "hello from bob")
    back = await alice.wait_for_outcome(second)
    assert (back["sender_device"], back["body"], back["decryption_failure"], back["shield"]) == \
        (bob.device_id, "hello from bob", None, {"color": "none", "reason": None})


@pytest.mark.parametrize("mode", ["signed", "all"])
async def test_a_device_that_is_not_cross_signed(homeserver, rust_clients, nio_clients, mode):
    """Element's mode ("signed"): the nio device's messages do not decrypt and its room key is
    withheld from it. The old mode ("all") reads it and shares with it: the difference is the
    mode alone."""
    (rust_id, rust_pw, _), (nio_id, nio_pw, _) = [await register(homeserver, n) for n in ("rust", "nio")]
    rust = rust_clients("rust")
    await rust.login(homeserver.url, rust_id, rust_pw, mode=mode)
    nio = await nio_clients(homeserver, nio_id, nio_pw)
    room, _ = await encrypted_room(homeserver, [rust_id, nio_id])
    await until(lambda: room in rust.joined and room in nio.client.rooms
                and nio_id in nio.client.rooms[room].users and rust_id in nio.client.rooms[room].users,
                30, "both to join")
    await rust.wait_for_member(room, nio_id)
    [nio_device] = (await rust.device_info(nio_id))["devices"]
    assert (nio_device["device_id"], nio_device["signedByOwner"]) == (nio.client.device_id, False)

    # nio → Rust: nio shares its key with every device; the Rust client refuses the sender.
    await nio.say(room, "from the nio device")
    sent = await rust.wait_for_message(lambda m: m["sender"] == nio_id, room, what="the nio message")
    outcome = await rust.wait_for_outcome(sent["event_id"])
    if mode == "signed":
        assert (outcome["body"], outcome["decryption_failure"]) == (None, UNSIGNED_SENDER_DEVICE)
    else:
        assert (outcome["body"], outcome["decryption_failure"]) == ("from the nio device", None)
        assert outcome["shield"]["color"] == "red" and outcome["shield"]["reason"] == "UNSIGNED_DEVICE"

    # Rust → nio: the room key travels (to-device) before the event, so when nio's sync brings the
    # event, nio either decrypts it or never will.
    event_id = await rust.send(room, "from the rust device")
    await until(lambda: event_id in nio.decrypted or event_id in nio.undecryptable, 30, "the event at nio")
    if mode == "signed":
        assert event_id in nio.undecryptable and event_id not in nio.decrypted
        # ... and says so: the key is withheld from it because its owner did not verify it.
        assert [(w["room_id"], w["code"]) for w in nio.withheld] == [(room, "m.unverified")]
    else:
        assert nio.decrypted.get(event_id) == "from the rust device"
        assert nio.withheld == []


async def test_an_event_that_decrypts_later_is_reported_again(homeserver, rust_clients, nio_clients):
    """A key that arrives after the event (here: imported, as from a key export) decrypts it on
    retry, and the harness reports the event a second time, with its body."""
    (rust_id, rust_pw, _), (nio_id, nio_pw, _) = [await register(homeserver, n) for n in ("rust", "nio")]
    nio = await nio_clients(homeserver, nio_id, nio_pw)
    room, host = await encrypted_room(homeserver, [nio_id])
    await until(lambda: room in nio.client.rooms and nio_id in nio.client.rooms[room].users, 30, "nio to join")
    await nio.say(room, "before the rust advocate came")  # its key goes to nobody else
    rust = rust_clients("rust")
    await rust.login(homeserver.url, rust_id, rust_pw, mode="all")
    await client_api(homeserver, host, "POST", f"/_matrix/client/v3/rooms/{room}/invite", {"user_id": rust_id})
    early = await rust.wait_for_message(lambda m: m["sender"] == nio_id, room, what="the earlier message")
    failed = await rust.wait_for_outcome(early["event_id"])
    assert (failed["body"], failed["decryption_failure"]) == (None, "HISTORICAL_MESSAGE_USER_NOT_JOINED")

    sessions = [session for session in nio.client.store.load_inbound_group_sessions() if session.room_id == room]
    await rust.import_room_keys([{
        "algorithm": "m.megolm.v1.aes-sha2", "room_id": room, "sender_key": session.sender_key,
        "sender_claimed_keys": {"ed25519": session.ed25519}, "forwarding_curve25519_key_chain": [],
        "session_id": session.id, "session_key": session.export_session(session.first_known_index),
    } for session in sessions])
    await until(lambda: rust.history(early["event_id"])[-1]["body"], 30, "the retry to decrypt it")
    lines = rust.history(early["event_id"])
    assert lines[0]["decryption_failure"] is not None and lines[0]["body"] is None
    assert (lines[-1]["decryption_failure"], lines[-1]["body"]) == (None, "before the rust advocate came")
