"""An advocate on a Rust-crypto Matrix client, as Element is today, driven from the tests.

Element (Web, Desktop, X) uses matrix-rust-sdk crypto and excludes insecure devices (MSC4153):
room keys go only to devices cross-signed by their owner, and events from a device that is not
cross-signed do not decrypt. ``RustAdvocate`` runs ``tests/rustcrypto/advocate.mjs`` (matrix-js-sdk
with its Rust crypto, set up as Element sets itself up at sign-in) in a Node child process and
talks to it in JSON lines; see that file for the protocol.

The JavaScript packages are not vendored: ``ensure_node_modules`` runs ``npm ci`` from the
committed ``package-lock.json`` when ``tests/rustcrypto/node_modules`` is missing or stale.
``.ci/run`` relies on this: it only makes sure ``npm`` (and with it ``node``) is installed from
Debian, and the first test that needs the harness installs the packages from the npm registry.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.clients import until

HARNESS = Path(__file__).parent / "rustcrypto"
SCRIPT = HARNESS / "advocate.mjs"
NODE_MODULES = HARNESS / "node_modules"
STAMP = NODE_MODULES / ".hotline-lock.sha256"  # the lock file's hash at the last `npm ci`

# What a Rust-crypto client says of an event from a device that its owner did not cross-sign
# (matrix-js-sdk's DecryptionFailureCode), and of a room key withheld from such a device.
UNSIGNED_SENDER_DEVICE = "UNSIGNED_SENDER_DEVICE"
KEY_WITHHELD_FOR_UNVERIFIED_DEVICE = "MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE"


MIN_NODE_MAJOR = 20  # with the one ES2024 function polyfilled in advocate.mjs; js-sdk 43 targets 22


def ensure_node_modules() -> None:
    """``npm ci`` in tests/rustcrypto unless node_modules matches the committed lock file.

    ``.ci/run`` relies on this and on ``npm`` being installed (it installs Debian's npm if
    missing); nothing else installs these packages, so a fresh CI clone gets them here.
    """
    npm = shutil.which("npm")
    node = shutil.which("node") or shutil.which("nodejs")
    assert npm and node, "the Rust-crypto advocate needs npm and node (Debian: apt-get install npm)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= MIN_NODE_MAJOR, \
        f"the Rust-crypto advocate needs Node {MIN_NODE_MAJOR} or newer, found {version}"
    lock = hashlib.sha256((HARNESS / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == lock:
        return
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=HARNESS, check=True, timeout=600)
    STAMP.write_text(lock + "\n")


@pytest.fixture(scope="session")
def rust_crypto_harness() -> Path:
    """Import this fixture into a test module that uses ``RustAdvocate``."""
    ensure_node_modules()
    return SCRIPT


class RustAdvocateError(RuntimeError):
    """A command that the Node process answered with ``ok: false``."""


class RustAdvocate:
    """One Rust-crypto Matrix client (one account, one new device) in a Node child process.

    Events arrive in the background: ``events`` has every event line in arrival order,
    ``invites``/``joined`` the room ids of those lines, ``messages(room)`` the latest line for
    each timeline event of a room.
    """

    def __init__(self, name: str = "rust-advocate") -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.invites: list[str] = []
        self.joined: list[str] = []
        self.stray: list[str] = []  # stdout lines that were not JSON (none expected)
        self.user_id: str | None = None
        self.device_id: str | None = None
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        if self._process is not None:
            return
        node = shutil.which("node") or shutil.which("nodejs")
        assert node, "the Rust-crypto advocate needs node (Debian: apt-get install npm)"
        with open(self.log_path, "ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                node, str(SCRIPT), cwd=HARNESS, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, limit=16 * 1024 * 1024,
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for raw in self._process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:  # not the protocol (something wrote to stdout): keep it for reading
                self.stray.append(raw.decode(errors="replace"))
                continue
            if "id" in line and line["id"] in self._answers:
                future = self._answers.pop(line["id"])
                if not future.done():
                    future.set_result(line)
                continue
            self.events.append(line)
            if line.get("event") == "invite":
                self.invites.append(line["room_id"])
            elif line.get("event") == "joined":
                self.joined.append(line["room_id"])
        exit_error = RustAdvocateError(f"{self.name} exited; see {self.log_path}")
        for future in self._answers.values():
            if not future.done():
                future.set_exception(exit_error)
        self._answers.clear()

    async def command(self, cmd: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; ``RustAdvocateError`` if it failed."""
        await self.start()
        assert self._process is not None and self._process.stdin is not None
        if self._reader is not None and self._reader.done():
            raise RustAdvocateError(f"{self.name} is not running; see {self.log_path}")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = future
        self._process.stdin.write((json.dumps({"id": request_id, "cmd": cmd, **args}) + "\n").encode())
        await self._process.stdin.drain()
        try:
            answer = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            self._answers.pop(request_id, None)
            raise RustAdvocateError(f"{self.name}: no answer to {cmd} in {timeout:.0f} s; see {self.log_path}")
        if not answer.get("ok"):
            raise RustAdvocateError(f"{self.name}: {cmd} failed: {answer.get('error')}")
        return {k: v for k, v in answer.items() if k not in ("id", "ok")}

    # Commands

    async def login(self, homeserver: str, user_id: str, password: str, mode: str = "signed") -> dict[str, Any]:
        """Password login on a new device, Rust crypto in memory, cross-signing bootstrapped
        (the own device is cross-signed), isolation ``mode`` ("signed": Element's default, only
        cross-signed devices; "all": every device), syncing, invites joined automatically.
        Returns ``status()``."""
        status = await self.command("login", timeout=120, homeserver=homeserver, user_id=user_id,
                                    password=password, mode=mode)
        self.user_id, self.device_id = status["user_id"], status["device_id"]
        return status

    async def status(self) -> dict[str, Any]:
        """``user_id``, ``device_id``, ``cross_signing_ready``, ``cross_signing`` (the SDK's
        CrossSigningStatus), ``own_device`` (signedByOwner, crossSigningVerified, localVerified)."""
        return await self.command("status")

    async def join(self, room_id: str) -> None:
        await self.command("join", room_id=room_id)

    async def send(self, room_id: str, body: str) -> str:
        """An m.text message (encrypted if the room is); waits until this client has joined the
        room. Returns the event id."""
        return (await self.command("send", room_id=room_id, body=body))["event_id"]

    async def members(self, room_id: str) -> dict[str, list[str]]:
        """``{"joined": [...], "invited": [...]}`` user ids, as this client's sync has them."""
        return await self.command("members", room_id=room_id)

    async def wait_for_member(self, room_id: str, user_id: str, timeout: float = 30.0) -> None:
        """Until this client has seen ``user_id`` join (send only after that, or they get no key)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while user_id not in (await self.members(room_id))["joined"]:
            if loop.time() > deadline:
                raise AssertionError(f"{self.name} did not see {user_id} join {room_id} in {timeout:.0f} s")
            await asyncio.sleep(0.1)

    async def import_room_keys(self, keys: list[dict[str, Any]]) -> None:
        """Import megolm sessions (the decrypted form of a key export), as Element's "Import E2E
        room keys"; events waiting for them are decrypted again and reported again."""
        await self.command("import_room_keys", keys=keys)

    async def cached(self, room_id: str) -> dict[str, Any]:
        """What the client keeps of a room in memory: ``{"known", "membership", "events": [{event_id,
        type, body (None if redacted or undecrypted), redacted}]}``."""
        return await self.command("cached", room_id=room_id)

    async def device_info(self, user_id: str) -> dict[str, Any]:
        """This client's view of a user's devices: ``{"devices": [{device_id, signedByOwner,
        crossSigningVerified, localVerified, verified}], "user": {known, crossSigningVerified,
        needsUserApproval}}`` (device lists downloaded first)."""
        return await self.command("device_info", user_id=user_id)

    # What it saw

    def mark(self) -> int:
        """A point in ``events``: pass it as ``after`` to see only events first reported since."""
        return len(self.events)

    def messages(self, room_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The latest line for each timeline event of the room, in order of first arrival; with
        ``after`` (from ``mark()``), only events first reported after that point (a new login
        also reports the room's recent history).

        Keys: room_id, event_id, sender, sender_device (None if unknown), type, msgtype, body
        (None unless decrypted or unencrypted), encrypted, decryption_failure (a
        DecryptionFailureCode name such as "UNSIGNED_SENDER_DEVICE", or None), shield (None for
        unencrypted or undecrypted events, else {"color": "none"|"grey"|"red", "reason": an
        EventShieldReason name such as "UNSIGNED_DEVICE", or None}), ts.
        """
        latest: dict[str, dict[str, Any]] = {}
        for index, line in enumerate(self.events):
            if line.get("event") == "message" and line["room_id"] == room_id:
                if line["event_id"] in latest or index >= after:
                    latest[line["event_id"]] = line
        return list(latest.values())

    def history(self, event_id: str) -> list[dict[str, Any]]:
        """Every line emitted for one event (a failure first, then the body if the key came late)."""
        return [line for line in self.events if line.get("event_id") == event_id]

    def bodies(self, room_id: str, after: int = 0) -> list[str]:
        return [m["body"] for m in self.messages(room_id, after) if m["body"] is not None]

    def find_message(self, predicate: Callable[[dict[str, Any]], bool],
                     room_id: str | None = None, after: int = 0) -> dict[str, Any] | None:
        """The latest line of the first message (in any room, or ``room_id``) that fits."""
        rooms = [room_id] if room_id else list(dict.fromkeys(
            line["room_id"] for line in self.events if line.get("event") == "message"))
        for room in rooms:
            for message in self.messages(room, after):
                if predicate(message):
                    return message
        return None

    async def wait_for_message(self, predicate: Callable[[dict[str, Any]], bool], room_id: str | None = None,
                               timeout: float = 30.0, what: str = "a message", after: int = 0) -> dict[str, Any]:
        """Until a message fits ``predicate`` (it is called again on each newer line of an event,
        so ``lambda m: m["body"] or m["decryption_failure"]`` waits for an outcome)."""
        return await until(lambda: self.find_message(predicate, room_id, after), timeout,
                           f"{what} at {self.name}")

    async def wait_for_outcome(self, event_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Until the event is decrypted or has failed to; its latest line (a later retry may
        still report it again)."""
        def outcome() -> dict[str, Any] | None:
            lines = self.history(event_id)
            done = lines and (lines[-1]["body"] is not None or lines[-1]["decryption_failure"])
            return lines[-1] if done else None
        return await until(outcome, timeout, f"{event_id} to decrypt or fail at {self.name}")

    async def wait_for_invite(self, timeout: float = 30.0) -> str:
        before = len(self.invites)
        return await until(lambda: self.invites[before:] and self.invites[before], timeout, f"an invite to {self.name}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def close(self) -> None:
        """Stop syncing and end the Node process (closing its stdin ends it)."""
        process = self._process
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._process = None

    async def __aenter__(self) -> RustAdvocate:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
