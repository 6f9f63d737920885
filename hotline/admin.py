"""``hotline admin …``: running a hotline through Synapse's admin API.

Which files: ``--dir DIR`` is the directory ``hotline init`` wrote (``bot.env``, ``webchat.env``,
``synapse/homeserver.yaml``); ``--bot-config``, ``--webchat-config`` and ``--homeserver-config``
name the files one by one instead.

Whose token: the bot's. The bot is a server admin and keeps its device id and access token in
``DATA_DIR/routing.db`` (table ``meta``); these commands read it there, so the bot must have
started once (``setup`` is the exception: it runs before the bot exists, with the registration
shared secret of homeserver.yaml). Using the bot's own token means no second admin device or
password lies around; the commands run on the host (or in the compose ``admin`` service), which
is the only place that can reach the admin API.

Never printed: tokens, passwords other than a new staff member's one-time password, addresses.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml
from dotenv import dotenv_values
from pydantic import ValidationError

from bot import identity as bot_identity
from bot.routing_view import RoutingView
from bot.settings import BotSettings
from hotline.homeserver import health_ok, privacy_settings
from hotline_runtime.client_api import ClientApi, ClientApiError
from hotline_runtime.cross_signing import CrossSigningError, KeysApi
from hotline_runtime.erase import redact_all, shred_room_sessions
from hotline_runtime.errors import AdminApiError, MatrixError
from hotline_runtime.matrix_sync import MUTE_PUSH_PATH
from hotline_runtime.synapse_admin import SynapseAdmin
from hotline_runtime.settings_util import describe
from hotline_runtime.wire import GATEWAY_SENDER_LOCALPART, SERVICE_STATE
from webchat.settings import GatewaySettings

ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
# Each staff role is membership of one room (the bot reads roles from room membership).
ROLE_ROOMS = {"advocate": "dispatch_room", "supervisor": "supervisors_room", "interpreter": "interpreters_room",
              "admin": "admin_room"}
ROLE_ROOM_NAMES = {"advocate": "dispatch room", "supervisor": "supervisors room",
                   "interpreter": "interpreters room", "admin": "admin room"}
# The encrypted staff rooms `setup` creates, in this order (the service room comes after them).
STAFF_ROOMS = ("dispatch_room", "admin_room", "supervisors_room", "interpreters_room")
# Privacy settings that are durations: a shorter value is stricter, so it passes.
DURATIONS_AT_MOST = ("user_ips_max_age", "delete_stale_devices_after", "redaction_retention_period",
                     "forgotten_room_retention_period")
INVITE_POLICY = "hotline.synapse_module.InvitePolicy"


class AdminError(Exception):
    """A failure the operator can act on; the message says what and what to do."""


# --------------------------------------------------------------------------- configuration

@dataclass
class Files:
    bot: Path
    webchat: Path | None
    homeserver: Path | None

    @classmethod
    def from_args(cls, directory: Path | None, bot: Path | None, webchat: Path | None,
                  homeserver: Path | None) -> Files:
        base = directory or Path("/etc/hotline")
        bot = bot or base / "bot.env"
        webchat = webchat or (base / "webchat.env" if (base / "webchat.env").exists() else None)
        homeserver = homeserver or (base / "synapse" / "homeserver.yaml"
                                    if (base / "synapse" / "homeserver.yaml").exists() else None)
        return cls(bot, webchat, homeserver)


def raw_env(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise AdminError(f"the settings file {path} does not exist (give --dir or --bot-config)")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_bot_settings(path: Path) -> BotSettings:
    raw_env(path)
    try:
        return BotSettings(_env_file=str(path))  # type: ignore[call-arg]
    except ValidationError as error:
        raise AdminError(f"{path}: {describe(error)}") from None


def load_gateway_settings(path: Path) -> GatewaySettings:
    try:
        return GatewaySettings(_env_file=str(path))  # type: ignore[call-arg]
    except ValidationError as error:
        raise AdminError(f"{path}: {describe(error)}") from None


BOT_LOGIN_WAIT_SECONDS = 60.0


async def bot_login(settings: BotSettings, wait: float = BOT_LOGIN_WAIT_SECONDS) -> tuple[str, str]:
    """(device id, access token) the bot saved in its routing database.

    A bot that was just started logs in within seconds: wait for that up to ``wait`` seconds."""
    database = settings.data_dir / "routing.db"
    deadline = time.monotonic() + wait
    while True:
        device_id, token = None, None
        if database.exists():
            try:
                with RoutingView(database) as view:
                    device_id, token = view.login()
            except sqlite3.Error:
                device_id, token = None, None
        if token is not None:
            return device_id or "", token
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    if not database.exists():
        raise AdminError(f"{database} does not exist: start the bot once (it logs in and saves its device there)")
    raise AdminError("the bot has not logged in yet: start it once, then try again")


def server_name(user_id: str) -> str:
    return user_id.split(":", 1)[1]


USER_ID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d+)?$")


def parse_staff_id(user_id: str, server: str) -> str:
    if not USER_ID.match(user_id):
        raise AdminError(f"{user_id!r} is not a Matrix user ID like @alex:{server} "
                         "(lower-case letters, digits and . _ = - / + before the colon)")
    if server_name(user_id) != server:
        raise AdminError(f"{user_id} is not on this homeserver ({server})")
    return user_id


# --------------------------------------------------------------------------- HTTP

class Api:
    """The client and admin API with one token (the bot's); failures as AdminError."""

    def __init__(self, http: aiohttp.ClientSession, homeserver: str, token: str | None) -> None:
        self.client_api = ClientApi(http, homeserver, token)
        self.http = http
        self.base = self.client_api.base
        self.token = token
        self.admin = SynapseAdmin(http, homeserver, token)

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                   ok: tuple[int, ...] = ()) -> tuple[int, dict[str, Any]]:
        try:
            return await self.client_api.call(method, path, body, token=token, ok=ok)
        except ClientApiError as error:
            if not error.answered:
                raise AdminError(f"the homeserver at {self.base} did not answer ({error.cause})") from None
            raise AdminError(f"{error.method} {error.path} → {error.status} {error.errcode} {error.error}".rstrip()) from None

    async def get(self, path: str) -> dict[str, Any]:
        return (await self.call("GET", path))[1]

    async def room_members(self, room_id: str) -> list[str]:
        return (await self.get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/members")).get("members", [])

    async def force_join(self, room_id: str, user_id: str) -> None:
        await self.call("POST", f"/_synapse/admin/v1/join/{quote(room_id)}", {"user_id": user_id})


@dataclass
class Context:
    files: Files
    settings: BotSettings
    raw: dict[str, str]

    @classmethod
    def load(cls, files: Files) -> Context:
        return cls(files, load_bot_settings(files.bot), raw_env(files.bot))

    @property
    def server(self) -> str:
        return server_name(self.settings.bot_user_id)

    def room(self, name: str) -> str | None:
        value = getattr(self.settings, name, None) or self.raw.get(f"HOTLINE_{name.upper()}")
        return value or None

    def configured_rooms(self) -> set[str]:
        """Every room ID in the bot's and the gateway's settings: never swept."""
        rooms = {v for v in self.raw.values() if v.startswith("!")}
        if self.files.webchat and self.files.webchat.exists():
            rooms |= {v for v in raw_env(self.files.webchat).values() if v.startswith("!")}
        return rooms


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


# --------------------------------------------------------------------------- setup

def set_env_values(path: Path, values: dict[str, str]) -> None:
    """Fill in or replace ``HOTLINE_NAME=`` lines (also commented placeholders), keeping the rest."""
    lines = path.read_text().splitlines()
    remaining = dict(values)
    for index, line in enumerate(lines):
        for key in list(remaining):
            name = f"HOTLINE_{key.upper()}"
            if re.match(rf"^#?\s*{name}=", line):
                lines[index] = f"{name}={remaining.pop(key)}"
    lines += [f"HOTLINE_{key.upper()}={value}" for key, value in remaining.items()]
    path.write_text("\n".join(lines) + "\n")


SETUP_WAIT_SECONDS = 120.0


async def wait_for_homeserver(http: aiohttp.ClientSession, homeserver: str,
                              timeout: float = SETUP_WAIT_SECONDS) -> None:
    """Synapse was just started (systemd does not wait for it): wait until it answers /health."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await health_ok(http, homeserver):
        if loop.time() >= deadline:
            raise AdminError(f"the homeserver at {homeserver} did not answer within {timeout:.0f} s: "
                             "is it running? (journalctl -u hotline-synapse)")
        await asyncio.sleep(1)


async def setup(files: Files) -> dict[str, str]:
    """Create the bot account (server admin), the staff rooms (dispatch, admin, supervisors,
    interpreters: encrypted) and the service room; fill in the room IDs of bot.env and
    webchat.env. A hotline set up by an earlier version gets only the rooms it lacks; one that
    has them all is refused.

    Each step is one small function call below (the bot account, the rooms, the bot's
    cross-signing identity), before the env files are written."""
    raw = raw_env(files.bot)
    have = {name: raw[f"HOTLINE_{name.upper()}"] for name in (*STAFF_ROOMS, "service_room")
            if raw.get(f"HOTLINE_{name.upper()}")}
    if len(have) == len(STAFF_ROOMS) + 1:
        raise AdminError(f"{files.bot} already names a dispatch room and every other room: "
                         "this hotline is set up already")
    if files.homeserver is None or files.webchat is None:
        raise AdminError("setup needs the homeserver.yaml and webchat.env that `hotline init` wrote (give --dir)")
    hs_config = yaml.safe_load(files.homeserver.read_text())
    shared = hs_config.get("registration_shared_secret")
    if not shared:
        raise AdminError(f"{files.homeserver} has no registration_shared_secret, which setup needs once")
    bot_user = raw.get("HOTLINE_BOT_USER_ID", "")
    password = raw.get("HOTLINE_BOT_PASSWORD", "")
    homeserver = raw.get("HOTLINE_HOMESERVER_URL", "")
    as_token = raw_env(files.webchat).get("HOTLINE_AS_TOKEN", "")
    if not (bot_user.startswith("@") and password and homeserver and as_token):
        raise AdminError("bot.env needs HOTLINE_BOT_USER_ID, HOTLINE_BOT_PASSWORD and HOTLINE_HOMESERVER_URL, "
                         "webchat.env HOTLINE_AS_TOKEN")
    async with session() as http:
        await wait_for_homeserver(http, homeserver)
        token = await _setup_bot_account(Api(http, homeserver, None), shared, bot_user, password)
        api = Api(http, homeserver, token)
        try:
            rooms = await _setup_rooms(api, bot_user, as_token, have)
            await api.admin.exempt_from_rate_limits(bot_user)
            await api.call("PUT", MUTE_PUSH_PATH, {"enabled": True})  # no push actions for the bot
            master = await _bot_identity(http, homeserver, token, password, raw, bot_user)
        finally:
            await api.call("POST", "/_matrix/client/v3/logout", {}, ok=(401,))
    set_env_values(files.bot, rooms)
    gateway = {"bot_master_key": master} | ({"service_room": rooms["service_room"]} if "service_room" in rooms else {})
    set_env_values(files.webchat, gateway)
    return rooms | {"bot_master_key": master}


async def _setup_bot_account(api: Api, shared: str, bot_user: str, password: str) -> str:
    """Register the bot as a server admin (unless it exists) and log in once; returns the token."""
    localpart = bot_user[1:].split(":", 1)[0]
    try:
        await api.admin.register(shared, localpart, password, admin=True)
    except AdminApiError as error:
        if "USER_IN_USE" not in str(error):
            raise AdminError(f"could not create the bot account: {error}") from None
    _, login = await api.call("POST", "/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": password, "initial_device_display_name": "hotline setup"})
    return login["access_token"]


async def _setup_rooms(api: Api, bot_user: str, as_token: str, have: dict[str, str]) -> dict[str, str]:
    """The rooms ``have`` lacks: the encrypted staff rooms, and the service room (which holds only
    the program's open/closed notice, state that is never encrypted) joined by the gateway."""
    rooms: dict[str, str] = {}
    for name in STAFF_ROOMS:
        if name not in have:
            _, created = await api.call("POST", "/_matrix/client/v3/createRoom",
                                        {"preset": "private_chat", "initial_state": [ENCRYPTION]})
            rooms[name] = created["room_id"]
    if "service_room" not in have:
        gateway_user = f"@{GATEWAY_SENDER_LOCALPART}:{server_name(bot_user)}"
        _, created = await api.call("POST", "/_matrix/client/v3/createRoom",
                                    {"preset": "private_chat", "invite": [gateway_user]})
        rooms["service_room"] = created["room_id"]
        await api.call("POST", f"/_matrix/client/v3/join/{quote(created['room_id'])}", token=as_token)
    return rooms


async def _bot_identity(http: aiohttp.ClientSession, homeserver: str, token: str, password: str,
                        raw: dict[str, str], bot_user: str) -> str:
    """The bot's cross-signing identity: made in its data directory (readable by the directory's
    owner only), published on the homeserver; returns the master key the gateway pins."""
    data_dir = Path(raw.get("HOTLINE_DATA_DIR") or "")
    if not raw.get("HOTLINE_DATA_DIR"):
        raise AdminError("bot.env needs HOTLINE_DATA_DIR: the bot's cross-signing keys are kept there")
    try:
        own = bot_identity.create(data_dir, bot_user)
        _give_to_owner(data_dir, bot_identity.identity_path(data_dir))
    except OSError as error:
        raise AdminError(f"could not write the bot's cross-signing keys to {data_dir}: {error.strerror}") from None
    try:
        await bot_identity.publish(http, homeserver, token, password, own)
    except CrossSigningError as error:
        raise AdminError(f"could not publish the bot's cross-signing identity: {error}") from None
    return own.master_public


def _give_to_owner(directory: Path, path: Path) -> None:
    """Run as root, setup leaves the file to whoever owns the bot's data directory."""
    if os.geteuid() == 0:
        owner = directory.stat()
        os.chown(path, owner.st_uid, owner.st_gid)


async def replace_bot_identity(files: Files) -> str:
    """A new cross-signing identity for the bot, in place of the one in its data directory (kept
    beside it as ``.replaced``); the gateway's pinned key is updated. Returns the new master key."""
    raw = raw_env(files.bot)
    bot_user, password = raw.get("HOTLINE_BOT_USER_ID", ""), raw.get("HOTLINE_BOT_PASSWORD", "")
    homeserver, data_dir = raw.get("HOTLINE_HOMESERVER_URL", ""), raw.get("HOTLINE_DATA_DIR", "")
    if not (bot_user and password and homeserver and data_dir):
        raise AdminError("bot.env needs HOTLINE_BOT_USER_ID, HOTLINE_BOT_PASSWORD, HOTLINE_HOMESERVER_URL "
                         "and HOTLINE_DATA_DIR")
    async with session() as http:
        api = Api(http, homeserver, None)
        _, login = await api.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bot_user},
            "password": password, "initial_device_display_name": "hotline admin"})
        token = login["access_token"]
        try:
            new = bot_identity.replace(Path(data_dir), bot_user)
            _give_to_owner(Path(data_dir), bot_identity.identity_path(Path(data_dir)))
            await KeysApi(http, homeserver, token).upload_identity(new, password)
        except CrossSigningError as error:
            raise AdminError(f"the homeserver refused the new identity: {error}") from None
        finally:
            await Api(http, homeserver, token).call("POST", "/_matrix/client/v3/logout", {}, ok=(401,))
    if files.webchat is not None:
        set_env_values(files.webchat, {"bot_master_key": new.master_public})
    return new.master_public


# --------------------------------------------------------------------------- staff

async def staff_add(ctx: Context, user_id: str, role: str) -> str:
    """Create a staff account with a one-time password and put it in its role's room."""
    user_id = parse_staff_id(user_id, ctx.server)
    room = ctx.room(ROLE_ROOMS[role])
    if room is None:
        raise AdminError(f"the bot's settings name no {ROLE_ROOM_NAMES[role]} (HOTLINE_{ROLE_ROOMS[role].upper()}): "
                         "run `hotline admin setup` (it adds the rooms a hotline lacks), then restart the bot")
    if user_id == ctx.settings.bot_user_id or user_id[1:].startswith(ctx.settings.survivor_prefix):
        raise AdminError(f"{user_id} is reserved (the bot or the web chat's namespace)")
    _, token = await bot_login(ctx.settings)
    password = secrets.token_urlsafe(15)
    async with session() as http:
        api = Api(http, ctx.settings.homeserver, token)
        status, existing = await api.call("GET", f"/_synapse/admin/v2/users/{quote(user_id)}", ok=(404,))
        if status == 200:
            state = "deactivated" if existing.get("deactivated") else "active"
            raise AdminError(f"{user_id} already exists ({state}); choose another ID")
        await api.call("PUT", f"/_synapse/admin/v2/users/{quote(user_id)}",
                       {"password": password, "admin": role == "admin", "logout_devices": True})
        await api.force_join(room, user_id)
    return password


async def staff_remove(ctx: Context, user_id: str, *, erase: bool) -> None:
    user_id = parse_staff_id(user_id, ctx.server)
    if user_id == ctx.settings.bot_user_id:
        raise AdminError("that is the bot's account")
    _, token = await bot_login(ctx.settings)
    async with session() as http:
        api = Api(http, ctx.settings.homeserver, token)
        status, existing = await api.call("GET", f"/_synapse/admin/v2/users/{quote(user_id)}", ok=(404,))
        if status == 404 or existing.get("deactivated"):
            raise AdminError(f"{user_id} is not an active account here")
        for name in ROLE_ROOMS.values():
            room = ctx.room(name)
            if room and user_id in await api.room_members(room):
                await api.call("POST", f"/_matrix/client/v3/rooms/{quote(room)}/kick", {"user_id": user_id})
        # Deactivation logs out every device and removes the keys; erase also drops the profile.
        await api.admin.deactivate(user_id, erase=erase)


@dataclass
class StaffMember:
    user_id: str
    roles: list[str]
    devices: list[dict[str, Any]] = field(default_factory=list)


async def staff_list(ctx: Context) -> list[StaffMember]:
    _, token = await bot_login(ctx.settings)
    held = held_back_devices(ctx.settings)
    members: dict[str, StaffMember] = {}
    async with session() as http:
        api = Api(http, ctx.settings.homeserver, token)
        for role, name in ROLE_ROOMS.items():
            room = ctx.room(name)
            if room is None:
                continue
            for user in await api.room_members(room):
                if user == ctx.settings.bot_user_id:
                    continue
                members.setdefault(user, StaffMember(user, [])).roles.append(role)
        for member in members.values():
            data = await api.get(f"/_synapse/admin/v2/users/{quote(member.user_id)}/devices")
            # Addresses and user agents are left out on purpose.
            member.devices = [{"device_id": d["device_id"], "display_name": d.get("display_name") or "",
                               "last_seen": _day(d.get("last_seen_ts")),
                               "held_back": (member.user_id, d["device_id"]) in held}
                              for d in data.get("devices", [])]
    return sorted(members.values(), key=lambda m: m.user_id)


def held_back_devices(settings: BotSettings) -> set[tuple[str, str]]:
    """(user, device) pairs the bot holds back keys from: its crypto store's blacklist files
    (``*.blacklisted_devices``, one ``user device key-type key`` line each), read only."""
    held: set[tuple[str, str]] = set()
    for path in (settings.data_dir / "crypto").glob("*.blacklisted_devices"):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 2 and not line.startswith("#"):
                held.add((fields[0], fields[1]))
    return held


def _day(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000)) if ms else "never"


# --------------------------------------------------------------------------- service

async def service(ctx: Context, closed: bool, message: str) -> None:
    """Set the service room's state (hotline_runtime/wire.py): the gateway tells survivors chat is closed."""
    room = ctx.room("service_room")
    if room is None:
        raise AdminError("the bot's settings name no service room (HOTLINE_SERVICE_ROOM)")
    if closed and not message.strip():
        raise AdminError("closing needs a message for survivors, e.g. "
                         "'Chat is closed today. Call the hotline.'")
    _, token = await bot_login(ctx.settings)
    async with session() as http:
        api = Api(http, ctx.settings.homeserver, token)
        await api.call("PUT", f"/_matrix/client/v3/rooms/{quote(room)}/state/{SERVICE_STATE}/",
                       {"closed": closed, "message": message.strip() if closed else ""})


# --------------------------------------------------------------------------- check

@dataclass
class CheckResult:
    lines: list[tuple[str, str]] = field(default_factory=list)  # (OK|FAIL|WARN, text)

    def ok(self, text: str) -> None:
        self.lines.append(("ok", text))

    def fail(self, text: str) -> None:
        self.lines.append(("FAIL", text))

    def warn(self, text: str) -> None:
        self.lines.append(("warn", text))

    @property
    def failed(self) -> bool:
        return any(kind == "FAIL" for kind, _ in self.lines)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(value: Any) -> float | None:
    """Synapse's duration syntax (``5m``, ``7d``, or a number of milliseconds)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 1000
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*", str(value))
    if not match:
        return None
    return float(match.group(1)) * _UNITS[match.group(2) or "ms"]


def check_homeserver_config(path: Path, result: CheckResult) -> None:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        result.fail(f"{path}: cannot read it ({type(error).__name__})")
        return
    for key, want in privacy_settings().items():
        have = config.get(key, "(not set)")
        if key in DURATIONS_AT_MOST:
            good = seconds(have) is not None and seconds(have) <= seconds(want)  # type: ignore[operator]
            if key == "redaction_retention_period" and have is None:
                good = False
            wanted = f"at most {want}"
        else:
            good = have == want
            wanted = repr(want)
        if good:
            result.ok(f"homeserver.yaml {key}")
        else:
            result.fail(f"homeserver.yaml {key} is {have!r}; it must be {wanted}")
    for listener in config.get("listeners", []):
        names = {n for r in listener.get("resources", []) for n in r.get("names", [])}
        extra = names - {"client"}
        if names == {"replication"} and listener.get("type") == "http" and config.get("worker_replication_secret"):
            # Synapse's worker layout (hotline init --workers): the main process's replication
            # listener, on loopback or the compose network, authenticated by the shared secret.
            result.ok(f"homeserver.yaml listener on port {listener.get('port')}: replication between "
                      "Synapse's processes (never public)")
            continue
        if extra or listener.get("type") != "http":
            result.fail(f"homeserver.yaml listener on port {listener.get('port')} serves {sorted(names)} "
                        f"({listener.get('type')}): only the client API may be served (no federation)")
        else:
            result.ok(f"homeserver.yaml listener on port {listener.get('port')}: client API only")
        if listener.get("x_forwarded") and not all(a in ("127.0.0.1", "::1", "0.0.0.0") for a in listener.get("bind_addresses", [])):
            result.warn("homeserver.yaml: x_forwarded is on; make sure only the proxy can reach this listener")
    check_worker_configs(path, config, result)
    modules = [m.get("module") for m in config.get("modules", []) or []]
    if INVITE_POLICY in modules:
        result.ok("homeserver.yaml invite policy module")
    else:
        result.fail(f"homeserver.yaml modules lack {INVITE_POLICY}: anyone could invite anyone")
    log_path = Path(str(config.get("log_config", "")))
    if not log_path.is_file():
        log_path = path.parent / log_path.name
    if not config.get("log_config") or not log_path.is_file():
        result.fail("homeserver.yaml log_config is missing: Synapse would log every request with its address")
        return
    logging_config = yaml.safe_load(log_path.read_text()) or {}
    loggers = logging_config.get("loggers", {})
    levels = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
    root = levels.get(str(logging_config.get("root", {}).get("level", "INFO")).upper(), 20)
    for name in ("synapse.access", "synapse.access.http"):
        level = loggers.get(name, {}).get("level")
        effective = levels.get(str(level).upper(), root) if level else root
        if effective < 30:
            result.fail(f"{log_path.name}: logger {name} is below WARNING: the access log (addresses, "
                        "user agents, URLs) would be written")
    if not result.failed:
        result.ok(f"{log_path.name}: access log off")


def check_worker_configs(path: Path, config: dict[str, Any], result: CheckResult) -> None:
    """Synapse's workers (hotline init --workers): each file in synapse/workers/ serves the client
    API or replication only, and logs with homeserver.yaml's log config (no access log)."""
    for worker_file in sorted((path.parent / "workers").glob("*.yaml")):
        try:
            worker = yaml.safe_load(worker_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            result.fail(f"{worker_file.name}: cannot read it ({type(error).__name__})")
            continue
        for listener in worker.get("worker_listeners", []) or []:
            names = {n for r in listener.get("resources", []) for n in r.get("names", [])}
            if listener.get("type") != "http" or not (names <= {"client"} or names == {"replication"}):
                result.fail(f"workers/{worker_file.name}: listener on port {listener.get('port')} serves "
                            f"{sorted(names)} ({listener.get('type')}): only the client API or replication")
        if worker.get("worker_log_config") != config.get("log_config"):
            result.fail(f"workers/{worker_file.name}: worker_log_config must be homeserver.yaml's log_config "
                        f"({config.get('log_config')}), which keeps the access log off")
        else:
            result.ok(f"workers/{worker_file.name}: client API or replication only, access log off")


async def check(files: Files, *, public_url: str | None = None) -> CheckResult:
    result = CheckResult()
    try:
        ctx = Context.load(files)
        result.ok(f"{files.bot}: the bot's settings are valid")
    except AdminError as error:
        result.fail(str(error))
        ctx = None
    if files.webchat is not None:
        try:
            gateway = load_gateway_settings(files.webchat)
            result.ok(f"{files.webchat}: the gateway's settings are valid")
            if gateway.public_url is None:
                result.warn("webchat.env has no HOTLINE_PUBLIC_URL: WebSockets are accepted only from the listen address")
        except AdminError as error:
            result.fail(str(error))
    else:
        result.warn("no webchat.env given: the gateway's settings were not checked")
    if files.homeserver is not None:
        check_homeserver_config(files.homeserver, result)
    else:
        result.fail("no homeserver.yaml given (--dir or --homeserver-config): the privacy settings were not checked")
    if ctx is not None and "HOTLINE_RIGHTS_URL" not in ctx.raw:
        result.warn("bot.env has no HOTLINE_RIGHTS_URL: the rights notice cannot link to your program's full text")
    async with session() as http:
        if ctx is not None:
            try:
                await check_homeserver_live(http, ctx, result)
            except AdminError as error:
                result.fail(str(error))
        if public_url:
            await check_public(http, public_url, result)
    return result


async def check_homeserver_live(http: aiohttp.ClientSession, ctx: Context, result: CheckResult) -> None:
    if not await health_ok(http, ctx.settings.homeserver):
        result.fail(f"the homeserver at {ctx.settings.homeserver} does not answer /health")
        return
    result.ok(f"the homeserver at {ctx.settings.homeserver} answers")
    api = Api(http, ctx.settings.homeserver, None)
    status, data = await api.call("POST", "/_matrix/client/v3/register",
                                  {"username": "probe" + secrets.token_hex(4), "password": secrets.token_urlsafe(16)},
                                  ok=(400, 401, 403, 429))
    if status == 403:
        result.ok("registration is closed (live)")
    else:
        result.fail(f"the homeserver accepts registration attempts (HTTP {status}): enable_registration must be false")
    status, _ = await api.call("POST", "/_matrix/client/v3/register?kind=guest", {}, ok=(400, 401, 403, 429))
    if status == 403:
        result.ok("guest access is off (live)")
    else:
        result.fail(f"the homeserver gives out guest accounts (HTTP {status}): allow_guest_access must be false")
    try:
        _, token = await bot_login(ctx.settings, wait=0)
    except AdminError as error:
        result.warn(str(error))
        return
    api = Api(http, ctx.settings.homeserver, token)
    status, who = await api.call("GET", "/_matrix/client/v3/account/whoami", ok=(401,))
    if status != 200 or who.get("user_id") != ctx.settings.bot_user_id:
        result.fail("the bot's saved login is refused: it must log in again (see docs/backup.md)")
        return
    status, user = await api.call("GET", f"/_synapse/admin/v2/users/{quote(ctx.settings.bot_user_id)}",
                                  ok=(403,))
    if status == 200 and user.get("admin"):
        result.ok("the bot is logged in and is a server admin")
    else:
        result.fail("the bot is not a server admin: it cannot purge rooms or erase accounts")
    closing, rooms = pending_erases(ctx.settings)
    if closing or rooms:
        result.warn(f"erases pending: {closing} closed chat(s) and {rooms} handed-on case room(s); the bot "
                    "retries until they are done (see its log; `hotline admin sweep` for leftovers)")
    else:
        result.ok("no erase pending")


async def _probe(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or None) of a GET; raises AdminError naming what went wrong."""
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=20), allow_redirects=False) as response:
            body = await response.read()
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            return response.status, dict(response.headers), data
    except aiohttp.ClientSSLError as error:
        raise AdminError(f"{url}: the TLS certificate is not accepted ({type(error).__name__})") from None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
        raise AdminError(f"{url} does not answer ({type(error).__name__})") from None


async def check_public(http: aiohttp.ClientSession, public_url: str, result: CheckResult) -> None:
    """From outside, through the proxy: each probe is one ok or FAIL line, never a crash."""
    base = public_url.rstrip("/")
    if not base.startswith("https://"):
        result.fail(f"--public-url {public_url}: give the https:// address survivors and staff use")

    async def probe(path: str, judge: Any) -> None:
        try:
            status, headers, data = await _probe(http, base + path)
        except AdminError as error:
            result.fail(str(error))
            return
        verdict = judge(status, headers, data)
        if verdict is None:
            return
        good, text = verdict
        (result.ok if good else result.fail)(text)

    await probe("/", lambda status, headers, _: (
        status == 200 and "Strict-Transport-Security" in headers and "Content-Security-Policy" in headers,
        f"{base}/ serves the chat page with HSTS and its security headers"
        if status == 200 and "Strict-Transport-Security" in headers and "Content-Security-Policy" in headers
        else f"{base}/ answers HTTP {status} without the page's security headers: is the proxy in front?"))
    await probe("/_matrix/client/versions", lambda status, _, data: (
        status == 200 and isinstance(data, dict) and "versions" in data,
        f"{base} passes the Matrix client API to the homeserver" if status == 200 and isinstance(data, dict)
        else f"{base}/_matrix/client/versions answers HTTP {status}: staff clients could not sign in"))
    await probe("/.well-known/matrix/client", lambda status, _, data: (
        status == 200 and isinstance(data, dict) and "m.homeserver" in data,
        f"{base}/.well-known/matrix/client names the homeserver" if status == 200 and isinstance(data, dict)
        else f"{base}/.well-known/matrix/client answers HTTP {status}: clients cannot discover the homeserver"))
    for path, what in (("/_synapse/admin/v1/server_version", "the admin API"),
                       ("/_matrix/federation/v1/version", "the federation API")):
        await probe(path, lambda status, _, __, what=what: (
            status in (403, 404, 405),
            f"{base} does not expose {what}" if status in (403, 404, 405)
            else f"{base} exposes {what} (HTTP {status}): the proxy must answer 404 for it"))


# --------------------------------------------------------------------------- sweep

@dataclass
class SweepPlan:
    rooms: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)


def pending_erases(settings: BotSettings) -> tuple[int, int]:
    """(closed chats not erased yet, handed-on case rooms not erased yet) in the routing database."""
    with RoutingView.of(settings.data_dir) as view:
        return view.closing_count(), len(view.pending_erases())


def open_chats(settings: BotSettings) -> tuple[set[str], set[str]]:
    """(rooms, survivor accounts) that open chats in the bot's routing database reference."""
    with RoutingView.of(settings.data_dir) as view:
        return view.rooms_and_survivors()


async def _paged(api: Api, path: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start: Any = 0
    while True:
        joiner = "&" if "?" in path else "?"
        data = await api.get(f"{path}{joiner}limit=500&from={start}")
        items += data.get(key, [])
        start = data.get("next_token")
        if start is None:
            return items


SWEEP_FILTER = {
    "room": {"timeline": {"limit": 0}, "state": {"types": []}, "ephemeral": {"types": []},
             "account_data": {"types": []}},
    "presence": {"types": []}, "account_data": {"types": []},
}


async def candidate_rooms(api: Api, bot: str, survivors: list[str]) -> set[str]:
    """Rooms the bot is in or invited to, rooms of survivor accounts, and Synapse's admin room
    list (built from its room statistics; hotlines configured before they were left on have none).
    """
    rooms = set((await api.get("/_matrix/client/v3/joined_rooms")).get("joined_rooms", []))
    sync = await api.get("/_matrix/client/v3/sync?timeout=0&filter=" + quote(json.dumps(SWEEP_FILTER)))
    rooms |= set(sync.get("rooms", {}).get("invite", {}))
    for user in survivors:
        rooms |= set((await api.get(f"/_synapse/admin/v1/users/{quote(user)}/joined_rooms")).get("joined_rooms", []))
    # The admin room list, for what the above misses (e.g. a room everybody has left).
    rooms |= {room["room_id"] for room in await _paged(api, "/_synapse/admin/v1/rooms", "rooms")}
    return rooms


async def plan_sweep(ctx: Context, api: Api, *, min_age_seconds: float) -> SweepPlan:
    rooms_in_use, users_in_use = open_chats(ctx.settings)
    keep = rooms_in_use | ctx.configured_rooms()
    prefix = "@" + ctx.settings.survivor_prefix
    bot = ctx.settings.bot_user_id
    cutoff_ms = (time.time() - min_age_seconds) * 1000
    plan = SweepPlan()
    survivors = [u for u in await _paged(api, "/_synapse/admin/v2/users?deactivated=false&guests=false"
                                         f"&name={quote(ctx.settings.survivor_prefix)}", "users")
                 if u["name"].startswith(prefix)]
    for user in survivors:
        if user["name"] not in users_in_use and (user.get("creation_ts") or 0) <= cutoff_ms:
            plan.accounts.append(user["name"])
    for room_id in sorted(await candidate_rooms(api, bot, [u["name"] for u in survivors]) - keep):
        status, data = await api.call("GET", f"/_synapse/admin/v1/rooms/{quote(room_id)}/state", ok=(400, 404))
        if status != 200:
            continue
        create = next((e for e in data.get("state", []) if e.get("type") == "m.room.create"), None)
        if create is None:
            # Nobody of this server is in it any more (Synapse keeps no current state for it):
            # abandoned, unusable, and not a chat being set up (its creator would be a member).
            plan.rooms.append(room_id)
            continue
        creator = create.get("sender") or create.get("content", {}).get("creator", "")
        if (creator == bot or creator.startswith(prefix)) and create.get("origin_server_ts", 0) <= cutoff_ms:
            plan.rooms.append(room_id)
    return plan


async def _redact_all(api: Api, room_id: str) -> int:
    """Redact every message event, so that staff clients drop what they hold (erase step 1):
    the bot's own recipe (hotline_runtime/erase.py), with its token."""
    try:
        return await redact_all(api.client_api, room_id)
    except MatrixError as error:
        raise AdminError(f"redacting the messages of {room_id} failed: {error}") from None


def forget_keys(settings: BotSettings, rooms: list[str]) -> int:
    """Delete the rooms' Megolm sessions from the bot's crypto store (crypto-shredding), as the
    bot does when it erases a chat (hotline_runtime/erase.py)."""
    removed = 0
    for database in (settings.data_dir / "crypto").glob("*.db"):
        with sqlite3.connect(database) as db:
            removed += shred_room_sessions(db, rooms)
    return removed


async def sweep(ctx: Context, *, apply: bool, min_age_seconds: float,
                report: Any = print) -> SweepPlan:
    """Rooms and survivor accounts that no open chat references: list them, or erase them."""
    _, token = await bot_login(ctx.settings)
    async with session() as http:
        api = Api(http, ctx.settings.homeserver, token)
        plan = await plan_sweep(ctx, api, min_age_seconds=min_age_seconds)
        if not apply:
            return plan
        for room_id in plan.rooms:
            if ctx.settings.bot_user_id in await api.room_members(room_id):
                redacted = await _redact_all(api, room_id)
                report(f"  {room_id}: {redacted} events redacted")
            try:
                await api.admin.delete_room(room_id)
            except AdminApiError as error:
                raise AdminError(f"deleting {room_id} failed: {error}") from None
            report(f"  {room_id}: deleted with purge")
        for user_id in plan.accounts:
            await api.admin.deactivate(user_id, erase=True)
            report(f"  {user_id}: deactivated with erase")
        if plan.rooms:
            keys = forget_keys(ctx.settings, plan.rooms)
            report(f"  the bot's crypto store: {keys} Megolm sessions of these rooms deleted")
    return plan


# --------------------------------------------------------------------------- statistics

def stats_export(settings: BotSettings) -> str:
    database = settings.data_dir / "routing.db"
    if not database.exists():
        raise AdminError(f"{database} does not exist: start the bot once")
    with RoutingView(database) as view:
        if not view.has_stats():
            raise AdminError("statistics are not available: this version of the bot keeps no statistics table")
        header, rows = view.stats()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def fail(message: str) -> None:
    print(f"hotline admin: {message}", file=sys.stderr)
