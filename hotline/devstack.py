"""A whole hotline on loopback: embedded Synapse, bot and web chat gateway as child processes.

``make demo`` runs one in ``var/demo`` (kept between runs); the tests run one in a temporary
directory. The first start creates the accounts and rooms (see ``bootstrap``) and writes
``credentials.json``; later starts reuse them.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import sqlite3
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot import identity
from bot.routing_view import FILE_NAME as ROUTING_FILE
from bot.routing_view import RoutingView
from hotline_runtime.client_api import ClientApi
from hotline_runtime.synapse_admin import SynapseAdmin
from hotline.homeserver import (
    EVENT_PERSISTER,
    SURVIVOR_LOCALPART_PREFIX,
    EmbeddedHomeserver,
    HomeserverProcess,
    WorkerPlan,
    generic_worker_names,
)
from hotline_runtime.matrix_sync import MUTE_PUSH_PATH
from hotline_runtime.wire import GATEWAY_SENDER_LOCALPART
from hotline.postgres import ThrowawayPostgres, synapse_database
from hotline import proxy
from hotline.throwaway import LoopbackEntrance, LoopbackFront, ThrowawayRedis

SERVER_NAME = "hotline.localhost"
DATABASE_ENV = "HOTLINE_TEST_DATABASE"
ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Account:
    user_id: str
    password: str


@dataclass
class Bootstrap:
    bot: Account
    advocates: list[Account]
    admins: list[Account]
    dispatch_room: str
    admin_room: str
    service_room: str
    supervisors: list[Account] = field(default_factory=list)
    interpreters: list[Account] = field(default_factory=list)
    supervisors_room: str = ""
    interpreters_room: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "bot": vars(self.bot),
            "advocates": [vars(a) for a in self.advocates],
            "admins": [vars(a) for a in self.admins],
            "dispatch_room": self.dispatch_room,
            "admin_room": self.admin_room,
            "service_room": self.service_room,
            "supervisors": [vars(a) for a in self.supervisors],
            "interpreters": [vars(a) for a in self.interpreters],
            "supervisors_room": self.supervisors_room,
            "interpreters_room": self.interpreters_room,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bootstrap:
        return cls(
            bot=Account(**data["bot"]),
            advocates=[Account(**a) for a in data["advocates"]],
            admins=[Account(**a) for a in data["admins"]],
            dispatch_room=data["dispatch_room"],
            admin_room=data["admin_room"],
            service_room=data["service_room"],
            supervisors=[Account(**a) for a in data.get("supervisors", [])],
            interpreters=[Account(**a) for a in data.get("interpreters", [])],
            supervisors_room=data.get("supervisors_room", ""),
            interpreters_room=data.get("interpreters_room", ""),
        )


async def _client_api(http: aiohttp.ClientSession, hs: str, token: str, method: str, path: str,
                      body: dict[str, Any] | None = None) -> dict[str, Any]:
    return (await ClientApi(http, hs, token).call(method, path, body if body is not None else {}))[1]


async def bootstrap(homeserver: EmbeddedHomeserver, advocates: int = 1, admins: int = 1) -> Bootstrap:
    """Create the bot (a server admin), advocates, admins, and the dispatch and admin rooms."""
    hs = homeserver.url
    secret = homeserver.secrets()["registration_shared_secret"]
    async with aiohttp.ClientSession() as http:
        admin_api = SynapseAdmin(http, hs, None)

        async def register(localpart: str, admin: bool) -> tuple[Account, str]:
            password = secrets.token_urlsafe(18)
            data = await admin_api.register(secret, localpart, password, admin=admin)
            return Account(data["user_id"], password), data["access_token"]

        bot, bot_token = await register(homeserver.bot_localpart, True)
        # Muted from the start (the bot does it again at every start): no push actions for it.
        await _client_api(http, hs, bot_token, "PUT", MUTE_PUSH_PATH, {"enabled": True})
        staff = [await register(f"advocate{i}", False) for i in range(1, advocates + 1)]
        bosses = [await register(f"admin{i}", True) for i in range(1, admins + 1)]
        seniors = [await register("supervisor1", False)]
        linguists = [await register("interpreter1", False)]

        async def room(invite: list[str]) -> str:
            created = await _client_api(http, hs, bot_token, "POST", "/_matrix/client/v3/createRoom",
                                        {"preset": "private_chat", "invite": invite, "initial_state": [ENCRYPTION]})
            return created["room_id"]

        dispatch = await room([a.user_id for a, _ in staff])
        admin_room = await room([a.user_id for a, _ in bosses])
        supervisors_room = await room([a.user_id for a, _ in seniors])
        interpreters_room = await room([a.user_id for a, _ in linguists])
        memberships = ([(s, dispatch) for s in staff] + [(b, admin_room) for b in bosses]
                       + [(s, supervisors_room) for s in seniors] + [(i, interpreters_room) for i in linguists])
        for (account, token), room_id in memberships:
            await _client_api(http, hs, token, "POST", f"/_matrix/client/v3/join/{room_id}")
        # The service room: the bot publishes whether chat is open (state event), the gateway's
        # application-service user reads it. Not encrypted: it holds only the program's notice.
        gateway_user = f"@{GATEWAY_SENDER_LOCALPART}:{homeserver.server_name}"
        service = await _client_api(http, hs, bot_token, "POST", "/_matrix/client/v3/createRoom",
                                    {"preset": "private_chat", "invite": [gateway_user]})
        as_token = homeserver.secrets()["as_token"]
        await _client_api(http, hs, as_token, "POST", f"/_matrix/client/v3/join/{service['room_id']}")
        await SynapseAdmin(http, hs, bot_token).exempt_from_rate_limits(bot.user_id)
        # The registration logins are not anyone's device: log them out. The bot logs in on its
        # own first start; staff log in with their Matrix client.
        for token in [bot_token] + [t for _, t in staff + bosses + seniors + linguists]:
            await _client_api(http, hs, token, "POST", "/_matrix/client/v3/logout")
    return Bootstrap(bot, [a for a, _ in staff], [a for a, _ in bosses], dispatch, admin_room, service["room_id"],
                     [a for a, _ in seniors], [a for a, _ in linguists], supervisors_room, interpreters_room)


def _write_env(path: Path, values: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        for key, value in values.items():
            handle.write(f"HOTLINE_{key.upper()}={value}\n")


@dataclass
class DevStack:
    root: Path
    synapse_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    # Synapse's client rate limits as shipped (PRODUCTION_RATE_LIMITS); only a benchmark that
    # says why may relax them.
    relaxed_rate_limits: bool = False
    advocates: int = 1
    settings: dict[str, str] = field(default_factory=dict)  # extra HOTLINE_ settings for both
    # "sqlite" (default) or "postgres": a throwaway PostgreSQL cluster for the homeserver.
    database: str = field(default_factory=lambda: os.environ.get(DATABASE_ENV, "sqlite"))
    # The interpreter that runs the bot and the gateway (tests/test_install.py: an installed venv).
    python: str = sys.executable
    # Synapse's worker layout (`hotline init --workers N`): N generic workers, an event persister,
    # a throwaway Redis and nginx as the entrance on synapse_port (PostgreSQL: Synapse does not
    # support workers on SQLite). 0: one Synapse process.
    workers: int = 0
    # Several gateways (`hotline init --gateways N`): g1…gN on ports of their own, behind nginx on
    # gateway_port with the generated proxy's routes (each chat pinned to its own gateway). 1: the
    # one gateway, on gateway_port itself.
    gateways: int = 1

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        if self.database not in ("sqlite", "postgres"):
            raise ValueError(f"{DATABASE_ENV} must be sqlite or postgres, not {self.database!r}")
        if self.workers:
            self.database = "postgres"
        self.postgres: ThrowawayPostgres | None = None
        database = None
        if self.database == "postgres":
            self.postgres = ThrowawayPostgres(free_port())
            database = synapse_database(self.postgres.port)
        self.redis: ThrowawayRedis | None = None
        self.entrance: LoopbackEntrance | None = None
        if self.workers:
            self.homeserver = self._worker_homeserver(database)
        else:
            self.homeserver = EmbeddedHomeserver(self.root / "homeserver", SERVER_NAME, self.synapse_port,
                                                 database=database)
        self.synapse = HomeserverProcess(self.homeserver)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.accounts: Bootstrap | None = None
        # name → port of each gateway behind the front (empty: the one gateway on gateway_port).
        self.gateway_ports: dict[str, int] = {}
        self.front: LoopbackFront | None = None
        if self.gateways > 1:
            self.gateway_ports = {name: free_port() for name in proxy.gateway_names(self.gateways)}
            self.front = LoopbackFront(self.root / "front", self.gateway_port, tuple(
                (name, f"127.0.0.1:{port}") for name, port in self.gateway_ports.items()))

    def _worker_homeserver(self, database: dict[str, Any] | None) -> EmbeddedHomeserver:
        directory = self.root / "homeserver"
        values = EmbeddedHomeserver(directory, SERVER_NAME, 0).secrets()
        self.redis = ThrowawayRedis(values["redis_password"])
        names = ["main", EVENT_PERSISTER, *generic_worker_names(self.workers)]
        plan = WorkerPlan(workers=self.workers, bind_host="127.0.0.1", hosts={name: "127.0.0.1" for name in names},
                          main_replication_port=free_port(), persister_port=free_port(),
                          worker_ports=tuple(free_port() for _ in range(self.workers)),
                          redis=self.redis.synapse_section(), replication_secret=values["worker_replication_secret"])
        main_port = free_port()
        self.entrance = LoopbackEntrance(self.root / "entrance", self.synapse_port, f"127.0.0.1:{main_port}",
                                         tuple(f"127.0.0.1:{port}" for port in plan.worker_ports))
        return EmbeddedHomeserver(directory, SERVER_NAME, main_port, database=database, workers=plan,
                                  entrance_port=self.synapse_port)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/"

    def gateway_url(self, name: str) -> str:
        """One gateway's own address, past the front (several gateways only)."""
        return f"http://127.0.0.1:{self.gateway_ports[name]}/"

    @property
    def _gateway_processes(self) -> list[str]:
        return [f"webchat-{name}" for name in self.gateway_ports] or ["webchat"]

    def credentials(self) -> dict[str, Any]:
        assert self.accounts is not None
        return {
            "homeserver": self.homeserver.url,
            "page_url": self.page_url,
            "dispatch_room": self.accounts.dispatch_room,
            "admin_room": self.accounts.admin_room,
            "advocates": [vars(a) for a in self.accounts.advocates],
            "admins": [vars(a) for a in self.accounts.admins],
            "supervisors": [vars(a) for a in self.accounts.supervisors],
            "interpreters": [vars(a) for a in self.accounts.interpreters],
        }

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logs.mkdir(exist_ok=True)
        self.homeserver.write_config(relaxed_rate_limits=self.relaxed_rate_limits)
        state = self.root / "bootstrap.json"
        if self.postgres is not None:
            await self.postgres.start()  # a fresh cluster each start: forget earlier accounts
            state.unlink(missing_ok=True)
            shutil.rmtree(self.root / "bot", ignore_errors=True)
        if self.redis is not None:
            await self.redis.start()
        await self.synapse.start()
        if self.entrance is not None:
            await self.entrance.start()
        if self.front is not None:
            await self.front.start()
        if state.exists():
            self.accounts = Bootstrap.from_json(json.loads(state.read_text()))
        else:
            self.accounts = await bootstrap(self.homeserver, advocates=self.advocates)
            _write_private_json(state, self.accounts.to_json())
        self._write_settings()
        self.start_bot()
        self.start_gateway()
        await self._wait_for_gateway()
        await self._wait_for_bot()
        _write_private_json(self.root / "credentials.json", self.credentials())

    def _write_settings(self) -> None:
        assert self.accounts is not None
        common = {
            "homeserver_url": self.homeserver.url,
            "bot_user_id": self.accounts.bot.user_id,
            "survivor_prefix": SURVIVOR_LOCALPART_PREFIX,
            "hotline_phone": "+1 555 0100",
            "service_room": self.accounts.service_room,
            "log_level": "INFO",
        }
        _write_env(self.root / "bot.env", common | {
            "bot_password": self.accounts.bot.password,
            "codeword_pepper": self.codeword_pepper(),
            "data_dir": str(self.root / "bot"),
            "dispatch_room": self.accounts.dispatch_room,
            "admin_room": self.accounts.admin_room,
            "trust_new_staff_devices": "true",
        } | ({"supervisors_room": self.accounts.supervisors_room} if self.accounts.supervisors_room else {})
          | ({"interpreters_room": self.accounts.interpreters_room} if self.accounts.interpreters_room else {})
          | self.settings)
        # The bot's cross-signing identity is made here (the bot publishes it at its first start),
        # so that the gateway can pin its master key from the start, as `hotline admin setup` does.
        bot_identity = identity.create(self.root / "bot", self.accounts.bot.user_id)
        self.bot_master_key = bot_identity.master_public
        gateway = common | {
            "bot_master_key": bot_identity.master_public,
            "as_token": self.homeserver.secrets()["as_token"],
            "listen_host": "127.0.0.1",
            "listen_port": str(self.gateway_port),
        }
        _write_env(self.root / "webchat.env", gateway | self.settings)
        for name, port in self.gateway_ports.items():  # several: each its name and port, one origin
            _write_env(self.root / f"webchat-{name}.env", gateway | {
                "gateway_name": name, "listen_port": str(port), "public_url": self.page_url.rstrip("/")} | self.settings)

    def codeword_pepper(self) -> str:
        """The code words' secret key, made on the first start and kept (as `hotline init` does):
        code words are on, and a code word set in an earlier run still matches."""
        path = self.root / "codeword-pepper"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def _spawn(self, name: str, module: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        self.processes[name] = subprocess.Popen(
            [self.python, "-m", module, "--config", str(self.root / f"{name}.env")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environment,
            cwd=self.root,  # `python -m` puts the working directory first on sys.path: not the checkout
        )
        log.close()

    def start_bot(self) -> None:
        self._spawn("bot", "bot")

    def start_gateway(self) -> None:
        for name in self._gateway_processes:
            self._spawn(name, "webchat")

    def stop_gateway(self) -> None:
        """SIGTERM (every gateway), as a restart would."""
        for name in self._gateway_processes:
            process = self.processes.pop(name)
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)

    async def restart_gateway(self) -> None:
        """SIGTERM the gateway (it hands open chats to their pages), start it again, wait for it.
        The stop waits in a thread: the pages' sockets on this loop answer the gateway's close."""
        await asyncio.to_thread(self.stop_gateway)
        self.start_gateway()
        await self._wait_for_gateway()

    async def wait_until_serving(self) -> None:
        await self._wait_for_gateway()

    def kill_bot(self) -> None:
        """SIGKILL, as a crash would."""
        process = self.processes.pop("bot")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    async def _wait_for_gateway(self, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited with code {process.returncode}; see {self.logs / name}.log")
                if all([await _answers(http, url) for url in self._gateway_urls()]):
                    return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the web chat gateway did not answer on {self.page_url}")

    def _gateway_urls(self) -> list[str]:
        """The page, and with several gateways each of them too."""
        return [self.page_url, *(self.gateway_url(name) for name in self.gateway_ports)]

    async def _wait_for_bot(self, timeout: float = 60.0) -> None:
        """Until the bot has signed in and saved its login in its routing database (what a test that
        reads the database first, or a person who writes at once, needs)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        path = self.root / "bot" / ROUTING_FILE
        while loop.time() < deadline:
            bot = self.processes.get("bot")
            if bot is not None and bot.poll() is not None:
                raise RuntimeError(f"bot exited with code {bot.returncode}; see {self.logs / 'bot'}.log")
            if path.exists():
                try:
                    with RoutingView(path) as view:
                        if view.login()[0] is not None:
                            return
                except sqlite3.Error:
                    pass  # made a moment ago, its tables not there yet
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the bot did not sign in within {timeout:.0f} s; see {self.logs / 'bot'}.log")

    def stop(self) -> None:
        for name in (*self._gateway_processes, "bot"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.front is not None:
            self.front.stop()
        if self.entrance is not None:
            self.entrance.stop()
        self.synapse.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


async def _answers(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
