"""Cross-signing (Matrix spec: "Cross-signing"; MSC4153 "exclude insecure devices").

Today's Element shares room keys only with devices that their owner has cross-signed, and does
not decrypt events from devices that are not. So the bot has a cross-signing identity of its own
(master, self-signing and user-signing keys) and signs each of its devices with it; the gateway
pins the bot's master key and trusts only the bot devices whose signatures chain to it; the bot
pins each staff member's master key and trusts only the staff devices signed by it.

This module holds both halves: an ``Identity`` (the private keys, their upload and the signing of
a device) and the checks of a ``/keys/query`` answer (which devices of a user chain to a given
master key). Signing and verifying are done by signedjson, the Matrix project's canonical-JSON
Ed25519 library. The checks are pure functions of the answer, tested with tables.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from signedjson.key import (
    decode_signing_key_base64,
    decode_verify_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
)
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json

from hotline_runtime.client_api import ClientApi, ClientApiError

ED25519 = "ed25519"
USAGES = ("master", "self_signing", "user_signing")


class CrossSigningError(Exception):
    """The homeserver refused a cross-signing request (the message says which, never a secret)."""


# ---------------------------------------------------------------------- checks of /keys/query

def _public_key(key_object: Any, user_id: str, usage: str) -> str | None:
    """The one Ed25519 public key of a well-formed cross-signing key object, else None."""
    if not isinstance(key_object, Mapping) or key_object.get("user_id") != user_id:
        return None
    if usage not in (key_object.get("usage") or []):
        return None
    keys = key_object.get("keys")
    if not isinstance(keys, Mapping) or len(keys) != 1:
        return None
    ((key_id, public),) = keys.items()
    if not isinstance(public, str) or key_id != f"{ED25519}:{public}":
        return None
    return public


def _signed_by(obj: Mapping[str, Any], user_id: str, public: str, key_name: str | None = None) -> bool:
    """Whether ``obj`` carries a valid signature of ``user_id``'s key ``ed25519:<key_name>``
    (a cross-signing key is named by itself, a device key by the device id)."""
    try:
        verify_key = decode_verify_key_base64(ED25519, key_name or public, public)
        verify_signed_json(dict(obj), user_id, verify_key)
    except (SignatureVerifyException, ValueError, TypeError, KeyError):
        return False
    return True


def master_key(query: Mapping[str, Any], user_id: str) -> str | None:
    """The user's master public key in a /keys/query answer (None if there is none)."""
    return _public_key((query.get("master_keys") or {}).get(user_id), user_id, "master")


def self_signing_key(query: Mapping[str, Any], user_id: str, master: str) -> str | None:
    """The user's self-signing public key, if the master key ``master`` signed it."""
    key_object = (query.get("self_signing_keys") or {}).get(user_id)
    public = _public_key(key_object, user_id, "self_signing")
    if public is None or not _signed_by(key_object, user_id, master):
        return None
    return public


def signed_devices(query: Mapping[str, Any], user_id: str, master: str) -> dict[str, str]:
    """The devices of ``user_id`` whose keys chain to ``master``: device id → its Ed25519 key.

    A device counts when its keys are signed by the device itself and by the self-signing key,
    and the self-signing key is signed by ``master``, and the answer's master key is ``master``.
    """
    if master_key(query, user_id) != master:
        return {}
    self_signing = self_signing_key(query, user_id, master)
    if self_signing is None:
        return {}
    devices = (query.get("device_keys") or {}).get(user_id) or {}
    signed = {}
    for device_id, keys in devices.items():
        if not isinstance(keys, Mapping) or keys.get("device_id") != device_id or keys.get("user_id") != user_id:
            continue
        own = (keys.get("keys") or {}).get(f"{ED25519}:{device_id}")
        if isinstance(own, str) and _signed_by(keys, user_id, own, device_id) and _signed_by(keys, user_id, self_signing):
            signed[device_id] = own
    return signed


def fingerprint(public: str) -> str:
    """A master key as people compare it: groups of four characters."""
    return " ".join(public[i:i + 4] for i in range(0, len(public), 4))


# ---------------------------------------------------------------------- an identity of our own

def _new_key() -> Any:
    key = generate_signing_key("new")
    key.version = encode_verify_key_base64(get_verify_key(key))  # cross-signing key ids are the key
    return key


def _load_key(seed: str) -> Any:
    key = decode_signing_key_base64(ED25519, "new", seed)
    key.version = encode_verify_key_base64(get_verify_key(key))
    return key


@dataclass(frozen=True)
class Identity:
    """A cross-signing identity: the three private keys of one account."""

    user_id: str
    master: Any
    self_signing: Any
    user_signing: Any

    @classmethod
    def generate(cls, user_id: str) -> Identity:
        return cls(user_id, _new_key(), _new_key(), _new_key())

    @property
    def master_public(self) -> str:
        return str(self.master.version)

    @property
    def self_signing_public(self) -> str:
        return str(self.self_signing.version)

    def _key_object(self, usage: str, key: Any) -> dict[str, Any]:
        obj = {"user_id": self.user_id, "usage": [usage], "keys": {f"{ED25519}:{key.version}": key.version}}
        if usage != "master":
            obj = sign_json(obj, self.user_id, self.master)
        return obj

    def upload_body(self) -> dict[str, Any]:
        """The body of POST /keys/device_signing/upload (without the auth part)."""
        return {
            "master_key": self._key_object("master", self.master),
            "self_signing_key": self._key_object("self_signing", self.self_signing),
            "user_signing_key": self._key_object("user_signing", self.user_signing),
        }

    def sign_device(self, device_keys: Mapping[str, Any]) -> dict[str, Any]:
        """The device's keys signed by the self-signing key, as /keys/signatures/upload wants them."""
        keys = copy.deepcopy({k: v for k, v in device_keys.items() if k != "unsigned"})
        return sign_json(keys, self.user_id, self.self_signing)

    def matches(self, query: Mapping[str, Any]) -> bool:
        """Whether the homeserver holds this identity (master and self-signing key) for the user."""
        return (master_key(query, self.user_id) == self.master_public
                and self_signing_key(query, self.user_id, self.master_public) == self.self_signing_public)

    # A file of the three private keys, readable by its owner only.

    def save(self, path: Path) -> None:
        data = {"user_id": self.user_id} | {
            usage: encode_signing_key_base64(getattr(self, usage)) for usage in USAGES
        }
        temporary = path.with_name(path.name + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path, user_id: str) -> Identity | None:
        """The saved identity; None if there is no file. Raises ValueError for a file of another account."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        if data.get("user_id") != user_id:
            raise ValueError(f"{path} holds the cross-signing keys of another account")
        return cls(user_id, *(_load_key(data[usage]) for usage in USAGES))


# ---------------------------------------------------------------------- the client API

class KeysApi:
    """The three cross-signing requests, with one account's access token."""

    def __init__(self, http: aiohttp.ClientSession, homeserver: str, token: str) -> None:
        self._api = ClientApi(http, homeserver, token, timeout=30)

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            return await self._api.request("POST", "/_matrix/client/v3/keys/" + path, body)
        except ClientApiError as error:
            raise CrossSigningError(f"{path}: {error.cause}") from error

    async def query(self, users: list[str]) -> dict[str, Any]:
        status, data = await self._post("query", {"device_keys": {user: [] for user in users}})
        if status != 200:
            raise CrossSigningError(f"keys/query refused ({status} {data.get('errcode')})")
        return data

    async def upload_identity(self, identity: Identity, password: str | None) -> None:
        """Publish the identity; the homeserver asks for the password when one is already there."""
        body = identity.upload_body()
        status, data = await self._post("device_signing/upload", body)
        if status == 401 and "session" in data and password is not None:
            body["auth"] = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": identity.user_id},
                "password": password,
                "session": data["session"],
            }
            status, data = await self._post("device_signing/upload", body)
        if status != 200:
            raise CrossSigningError(f"device_signing/upload refused ({status} {data.get('errcode')})")

    async def sign_device(self, identity: Identity, device_id: str) -> bool:
        """Sign one of the identity's own devices. False if the device has no keys yet."""
        query = await self.query([identity.user_id])
        device = (query.get("device_keys") or {}).get(identity.user_id, {}).get(device_id)
        if device is None:
            return False
        if device_id in signed_devices(query, identity.user_id, identity.master_public):
            return True
        signed = identity.sign_device(device)
        status, data = await self._post("signatures/upload", {identity.user_id: {device_id: signed}})
        if status != 200 or data.get("failures"):
            raise CrossSigningError(f"signatures/upload refused ({status} {sorted(data.get('failures') or {})})")
        return True
