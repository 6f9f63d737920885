"""The sealed hand-over state (webchat/handover.py): what opens, what is refused. Pure, no network."""

from __future__ import annotations

import base64
import struct
import time
import zlib

import pytest
from nio import AsyncClient
from nio.store import SqliteMemoryStore

from hotline_runtime.matrix_sync import client_config
from webchat import handover

ROOT = handover.root_key("as-token-of-this-hotline")
NOW = 1_800_000_000.0


def snapshot(**changes: object) -> handover.Snapshot:
    fields: dict[str, object] = dict(
        chat="chat-id-1", secret="secret-1", user_id="@survivor_ab:hotline.test", device_id="DEVICE",
        access_token="syt_token", room_id="!room:hotline.test", position="s42_1_0", seq=17,
        delivered=("a1", "b2"), sealed_at=NOW, store=b"SQLite format 3\x00" + bytes(300),
    )
    fields.update(changes)
    return handover.Snapshot.model_validate(fields)


def flip(state: str, at: int) -> str:
    body = state[len(handover.PREFIX):]
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[at] ^= 1
    return handover.PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_a_sealed_state_opens_to_the_same_chat() -> None:
    state = handover.seal(snapshot(), ROOT)
    assert state.startswith(handover.PREFIX)
    assert "syt_token" not in state and "survivor" not in state
    assert handover.unseal(state, "chat-id-1", "secret-1", ROOT, now=NOW + 5, max_age=150) == snapshot()


GOOD = handover.seal(snapshot(), ROOT)


@pytest.mark.parametrize(("state", "chat", "secret", "root", "now", "why"), [
    (GOOD, "chat-id-2", "secret-1", ROOT, NOW, "not sealed by this hotline"),  # another chat's id
    (GOOD, "chat-id-1", "secret-2", ROOT, NOW, "not sealed by this hotline"),  # a wrong resume secret
    (GOOD, "chat-id-1", "secret-1", handover.root_key("another hotline"), NOW, "not sealed by this hotline"),
    (flip(GOOD, 30), "chat-id-1", "secret-1", ROOT, NOW, "not sealed by this hotline"),  # one bit of the text
    (flip(GOOD, 3), "chat-id-1", "secret-1", ROOT, NOW, "not sealed by this hotline"),  # one bit of the nonce
    (GOOD[:-4], "chat-id-1", "secret-1", ROOT, NOW, "not sealed by this hotline"),  # cut short
    ("h2." + GOOD[3:], "chat-id-1", "secret-1", ROOT, NOW, "not a state of this version"),
    ("h1.***", "chat-id-1", "secret-1", ROOT, NOW, "not base64"),
    ("", "chat-id-1", "secret-1", ROOT, NOW, "not a state of this version"),
    (GOOD, "chat-id-1", "secret-1", ROOT, NOW + 150.5, "too old"),  # past the grace
    (GOOD, "chat-id-1", "secret-1", ROOT, NOW - 1, "too old"),  # from the future
    ("h1." + "A" * handover.MAX_STATE_CHARS, "chat-id-1", "secret-1", ROOT, NOW, "at most"),
])
def test_a_state_that_cannot_be_used_is_refused(state: str, chat: str, secret: str, root: bytes,
                                                 now: float, why: str) -> None:
    with pytest.raises(handover.BadState, match=why):
        handover.unseal(state, chat, secret, root, now=now, max_age=150)


def sealed_plain(plain: bytes) -> str:
    """Authentic bytes that are not a state (what a gateway with a bug could seal)."""
    import nacl.secret
    box = nacl.secret.SecretBox(handover._chat_key(ROOT, "chat-id-1", "secret-1"))
    return handover.PREFIX + base64.urlsafe_b64encode(bytes(box.encrypt(plain))).decode().rstrip("=")


@pytest.mark.parametrize("plain", [
    b"not zlib",
    zlib.compress(b""),
    zlib.compress(struct.pack(">I", 500) + b"{}"),  # a header longer than what follows
    zlib.compress(struct.pack(">I", 2) + b"[]" + b"store"),  # not an object
    zlib.compress(struct.pack(">I", 2) + b"{}" + b"store"),  # fields missing
    zlib.compress(bytes(handover.MAX_PLAIN_BYTES + 1)),  # opens to too much
])
def test_authentic_bytes_that_are_not_a_state_are_refused(plain: bytes) -> None:
    with pytest.raises(handover.BadState):
        handover.unseal(sealed_plain(plain), "chat-id-1", "secret-1", ROOT, now=NOW, max_age=150)


def test_age_at_the_limit_opens() -> None:
    assert handover.unseal(GOOD, "chat-id-1", "secret-1", ROOT, now=NOW + 150, max_age=150).seq == 17


def test_a_state_over_the_limit_is_not_made() -> None:
    # Random bytes do not compress: a store this large cannot fit in a resume frame.
    import os
    with pytest.raises(handover.BadState, match="more than"):
        handover.seal(snapshot(store=os.urandom(handover.MAX_STATE_CHARS)), ROOT)
    near = handover.seal(snapshot(store=os.urandom(40_000)), ROOT)
    assert len(near) <= handover.MAX_STATE_CHARS


def test_the_root_key_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        handover.root_key("")
    assert handover.root_key("a") != handover.root_key("b")


async def test_the_key_store_comes_back_with_the_same_olm_account() -> None:
    """nio's in-memory store, serialised and filled into a new client's store before its Olm
    machine loads: the same device keys (no new account), the same one-time key count."""
    first = AsyncClient("http://127.0.0.1:9", "@survivor_ab:hotline.test", device_id="DEVICE",
                        config=client_config(store=SqliteMemoryStore))
    first.restore_login("@survivor_ab:hotline.test", "DEVICE", "syt_token")
    assert first.olm is not None
    first.olm.account.shared = True
    first.store.save_account(first.olm.account)
    keys = first.olm.account.identity_keys
    image = handover.store_image(first.store.database.connection())
    await first.close()
    again = AsyncClient("http://127.0.0.1:9", "@survivor_ab:hotline.test", device_id="DEVICE",
                        store_path="memory", config=client_config(store=handover.restoring_store(image)))
    again.restore_login("@survivor_ab:hotline.test", "DEVICE", "syt_token")
    assert again.olm is not None and again.olm.account.shared
    assert again.olm.account.identity_keys == keys
    # A fresh store makes a new account: the test would see the difference.
    fresh = AsyncClient("http://127.0.0.1:9", "@survivor_ab:hotline.test", device_id="DEVICE",
                        config=client_config(store=SqliteMemoryStore))
    fresh.restore_login("@survivor_ab:hotline.test", "DEVICE", "syt_token")
    assert fresh.olm is not None and fresh.olm.account.identity_keys != keys
    await again.close()
    await fresh.close()
    assert time.time() > 0
