"""Cross-signing checks of a /keys/query answer: which devices chain to a pinned master key.

Pure tables: each case changes one thing in an otherwise valid answer and says whether the
device still counts as signed by its owner.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from hotline_runtime.cross_signing import Identity, fingerprint, master_key, self_signing_key, signed_devices

USER = "@advocate1:hotline.localhost"
DEVICE = "ABCDEFGHIJ"


def device_keys(user: str, device: str, key: Any) -> dict[str, Any]:
    """A device's keys, self-signed, as a client uploads them."""
    public = encode_verify_key_base64(get_verify_key(key))
    keys = {
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"ed25519:{device}": public, f"curve25519:{device}": "c" * 43},
    }
    return sign_json(keys, user, key)


def answer(identity: Identity, device_key: Any) -> dict[str, Any]:
    """A /keys/query answer with the identity published and the device signed by it."""
    body = identity.upload_body()
    device = identity.sign_device(device_keys(identity.user_id, DEVICE, device_key))
    device["unsigned"] = {"device_display_name": "Element"}
    return {
        "device_keys": {identity.user_id: {DEVICE: device}},
        "master_keys": {identity.user_id: body["master_key"]},
        "self_signing_keys": {identity.user_id: body["self_signing_key"]},
    }


def _resign_device_with(other: Identity) -> Callable[[dict[str, Any]], None]:
    def change(query: dict[str, Any]) -> None:
        device = query["device_keys"][USER][DEVICE]
        device["signatures"][USER] = {k: v for k, v in device["signatures"][USER].items()
                                      if k == f"ed25519:{DEVICE}"}
        query["device_keys"][USER][DEVICE] = other.sign_device(device)
    return change


def _swap_self_signing(other: Identity) -> Callable[[dict[str, Any]], None]:
    def change(query: dict[str, Any]) -> None:
        query["self_signing_keys"][USER] = other.upload_body()["self_signing_key"]
    return change


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(query: dict[str, Any]) -> None:
        target = query
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return change


def _drop(path: list[str]) -> Callable[[dict[str, Any]], None]:
    def change(query: dict[str, Any]) -> None:
        target = query
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
    return change


OTHER = Identity.generate(USER)

CASES: list[tuple[str, Callable[[dict[str, Any]], None] | None, bool]] = [
    ("a device signed by its owner's pinned identity", None, True),
    ("signed by another identity's self-signing key", _resign_device_with(OTHER), False),
    ("a self-signing key the master key did not sign", _swap_self_signing(OTHER), False),
    ("no self-signing key", _drop(["self_signing_keys", USER]), False),
    ("no master key", _drop(["master_keys", USER]), False),
    ("the device's keys changed after signing",
     _set(["device_keys", USER, DEVICE, "keys", f"curve25519:{DEVICE}"], "d" * 43), False),
    ("the device's own signature is missing",
     lambda q: q["device_keys"][USER][DEVICE]["signatures"][USER].pop(f"ed25519:{DEVICE}"), False),
    ("the device's keys name another device", _set(["device_keys", USER, DEVICE, "device_id"], "OTHER"), False),
    ("a master key object of another user", _set(["master_keys", USER, "user_id"], "@mallory:x"), False),
    ("a master key object without the master usage", _set(["master_keys", USER, "usage"], ["self_signing"]), False),
    ("a master key with two keys",
     lambda q: q["master_keys"][USER]["keys"].update({"ed25519:x": "x"}), False),
    ("a signature that is not base64", lambda q: q["device_keys"][USER][DEVICE]["signatures"][USER].update(
        {k: "%%%" for k in q["device_keys"][USER][DEVICE]["signatures"][USER] if k != f"ed25519:{DEVICE}"}), False),
    ("garbage where the device's keys should be", _set(["device_keys", USER, DEVICE], "garbage"), False),
]


@pytest.mark.parametrize(("case", "change", "signed"), CASES, ids=[c[0] for c in CASES])
def test_which_devices_chain_to_the_pinned_master_key(case: str, change: Any, signed: bool) -> None:
    identity = Identity.generate(USER)
    device_key = generate_signing_key(DEVICE)
    query = answer(identity, device_key)
    if change is not None:
        change(query)
    expected = {DEVICE: encode_verify_key_base64(get_verify_key(device_key))} if signed else {}
    assert signed_devices(query, USER, identity.master_public) == expected


def test_a_device_counts_only_against_the_master_key_it_chains_to() -> None:
    identity = Identity.generate(USER)
    query = answer(identity, generate_signing_key(DEVICE))
    assert signed_devices(query, USER, identity.master_public)
    assert signed_devices(query, USER, OTHER.master_public) == {}  # a pinned key that changed
    assert master_key(query, USER) == identity.master_public
    assert self_signing_key(query, USER, identity.master_public) == identity.self_signing_public
    assert self_signing_key(query, USER, OTHER.master_public) is None
    assert identity.matches(query) and not OTHER.matches(query)


def test_signing_a_device_leaves_the_answer_it_came_from_alone() -> None:
    identity = Identity.generate(USER)
    device = device_keys(USER, DEVICE, generate_signing_key(DEVICE))
    before = copy.deepcopy(device)
    signed = identity.sign_device(device)
    assert device == before
    assert f"ed25519:{identity.self_signing_public}" in signed["signatures"][USER]


def test_an_identity_survives_its_file(tmp_path) -> None:
    identity = Identity.generate(USER)
    path = tmp_path / "cross-signing.json"
    identity.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = Identity.load(path, USER)
    assert loaded is not None and loaded.upload_body() == identity.upload_body()
    assert Identity.load(tmp_path / "missing.json", USER) is None
    with pytest.raises(ValueError):
        Identity.load(path, "@someone-else:hotline.localhost")


def test_fingerprint_groups_of_four() -> None:
    assert fingerprint("abcdefghij") == "abcd efgh ij"
    assert fingerprint("") == ""
