"""The embedded homeserver: Synapse's configuration with the privacy settings, and its process.

The settings follow ``shared/design/privacy.md``. ``privacy_settings()`` is the single source of
those values: the generated config uses it, and tests compare a running config against it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp
import yaml

from hotline_runtime.wire import GATEWAY_SENDER_LOCALPART

APPSERVICE_ID = "hotline-webchat"
SURVIVOR_LOCALPART_PREFIX = "chat_"


def privacy_settings() -> dict[str, Any]:
    """homeserver.yaml keys that carry the privacy rules (see docs/privacy.md)."""
    return {
        "federation_domain_whitelist": [],
        "enable_registration": False,
        "allow_guest_access": False,
        "user_ips_max_age": "5m",
        "delete_stale_devices_after": "7d",
        "redaction_retention_period": "1m",
        "forget_rooms_on_leave": True,
        "forgotten_room_retention_period": "1h",
        "retention": {
            "enabled": True,
            "default_policy": {"min_lifetime": "1m", "max_lifetime": "1d"},
            "allowed_lifetime_min": "1m",
            "allowed_lifetime_max": "1d",
            "purge_jobs": [{"interval": "1h"}],
        },
        "enable_search": False,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "media_retention": {"local_media_lifetime": "1d", "remote_media_lifetime": "1d"},
        "user_directory": {"enabled": False},
        # No `stats: {enabled: false}`: Synapse deprecates it (a warning at every start) and may
        # ignore it. The room statistics hold nothing identifying here (no room has a name or a
        # topic) and are purged with each room (tests/test_chat_path.py checks both).
        "require_auth_for_profile_requests": True,
        "limit_profile_requests_to_users_who_share_rooms": True,
        "include_profile_data_on_invite": False,
        "encryption_enabled_by_default_for_room_type": "all",
        "push": {"include_content": False},
        "enable_metrics": False,
        "report_stats": False,
        # Invites are limited by hotline.synapse_module.InvitePolicy instead of
        # block_non_admin_invites: a survivor account must be able to invite the bot,
        # and nobody else but server admins may invite anyone (see docs/privacy.md).
        "block_non_admin_invites": False,
    }


# No Synapse process has this name, so none pushes events to application services.
NO_APPSERVICE_PUSHES = "no_appservice_pushes"


def idle_duty_settings() -> dict[str, Any]:
    """homeserver.yaml keys that turn off work Synapse would do for every event and this hotline
    never needs (issue 15; measured in docs/performance.md, "Server CPU per relayed message").

    - ``federation_sender_instances: []``: federation is off (``federation_domain_whitelist: []``,
      no federation listener), yet the main process would still run the federation sender, which
      reads every new event and works out the (no) remote servers to send it to.
    - ``notify_appservices_from_worker`` names a process that does not exist: the gateway's
      application service has no URL (``url: null``: it only registers survivor accounts) and is
      sent nothing, yet Synapse would still read every new event, match it against the survivor
      namespace and write (and complete) one transaction in its database for each event in a
      survivor room.
    """
    return {
        "federation_sender_instances": [],
        "notify_appservices_from_worker": NO_APPSERVICE_PUSHES,
    }


def invite_policy_module(bot_user_id: str) -> dict[str, Any]:
    return {
        "module": "hotline.synapse_module.InvitePolicy",
        "config": {
            "survivor_prefix": SURVIVOR_LOCALPART_PREFIX,
            "bot_user_id": bot_user_id,
        },
    }


# The client rate limits the hotline ships with, in production (`hotline init`), in `make demo`
# and under the tests. The homeserver has no open registration and no federation: the only
# accounts are staff (people), one survivor account per chat (made by the gateway, which also
# limits each survivor's socket to 30 frames per 10 s) and the bot (exempted from every limit by
# `hotline admin setup`, a server admin's override_ratelimit). Synapse's defaults are made for
# public servers; these fit people typing, and still bound any one account. See
# docs/admin-guide.md, "Rate limits".
PRODUCTION_RATE_LIMITS: dict[str, Any] = {
    # Events sent per account: a survivor or an advocate typing short lines quickly is never
    # held back. Above what the gateway allows each survivor's socket (30 frames at once, then 3
    # a second; one frame sends at most one event), with room for the events the gateway sends
    # for the survivor's account itself (the start's profile, a dropped and resumed connection),
    # so a survivor meets the gateway's limit, which tells the page to wait, never Synapse's.
    # Synapse's default (10 at once, then one every 5 s) held a fast typist's messages back by
    # about 5 s each.
    "rc_message": {"per_second": 3.0, "burst_count": 40},
    "rc_registration": {"per_second": 0.17, "burst_count": 3},
    "rc_login": {
        # Per address: a whole team signs in behind one office address at shift change (30 at
        # once, then one every 20 s). Guessing stays bounded per account by failed_attempts.
        "address": {"per_second": 0.05, "burst_count": 30},
        # Per account: a person with a phone and a computer, signing in again now and then.
        "account": {"per_second": 0.003, "burst_count": 5},
        # Wrong passwords per account: 3, then one try every ~5.5 minutes.
        "failed_attempts": {"per_second": 0.003, "burst_count": 3},
    },
    "rc_room_creation": {"per_second": 0.016, "burst_count": 10},
}

_UNLIMITED = {"per_second": 1000, "burst_count": 10000}

# For benchmarks that say so (bench/): every client-facing rate limit out of the way.
RELAXED_RATE_LIMITS: dict[str, Any] = {
    **{
        key: _UNLIMITED
        for key in (
            "rc_message",
            "rc_registration",
            "rc_room_creation",
            "rc_joins_per_room",
            "rc_key_requests",
            "rc_admin_redaction",
            "rc_third_party_invite",
            "rc_delayed_event_mgmt",
        )
    },
    "rc_login": {k: _UNLIMITED for k in ("address", "account", "failed_attempts")},
    "rc_joins": {k: _UNLIMITED for k in ("local", "remote")},
    "rc_invites": {k: _UNLIMITED for k in ("per_room", "per_user", "per_issuer")},
}


def appservice_registration(server_name: str, as_token: str, hs_token: str) -> dict[str, Any]:
    """The gateway's application service: an exclusive namespace for survivor accounts."""
    return {
        "id": APPSERVICE_ID,
        "url": None,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": GATEWAY_SENDER_LOCALPART,
        "rate_limited": False,
        "namespaces": {
            "users": [
                {
                    "exclusive": True,
                    "regex": f"@{SURVIVOR_LOCALPART_PREFIX}[a-z0-9]+:{re.escape(server_name)}",
                }
            ],
            "rooms": [],
            "aliases": [],
        },
    }


def log_config(log_file: Path | None) -> dict[str, Any]:
    """Synapse's logging: the access log (IP, user agent, URL) stays off."""
    handlers: dict[str, Any] = {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    }
    if log_file is not None:
        handlers = {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "plain",
                "filename": str(log_file),
            }
        }
    names = list(handlers)
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": handlers,
        "loggers": {
            "synapse.access": {"level": "WARNING"},
            "synapse.access.http": {"level": "WARNING"},
            "synapse.storage.SQL": {"level": "WARNING"},
            "synapse.http.matrixfederationclient": {"level": "WARNING"},
        },
        "root": {"level": "WARNING", "handlers": names},
        "disable_existing_loggers": False,
    }


# --------------------------------------------------------------------------- workers
# Synapse's worker layout (Synapse's docs/workers.md), the one `hotline init --workers N` writes
# and tests/test_workers.py runs: the main process, one event persister (`stream_writers:
# events`), N generic workers for /sync and client reads (the proxy routes those to them:
# hotline/proxy.py), Redis for replication. Everything else, the admin API included, stays on the
# main process.
EVENT_PERSISTER = "event_persister1"
GENERIC_WORKER_APP = "synapse.app.generic_worker"


def generic_worker_names(count: int) -> list[str]:
    return [f"generic_worker{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class WorkerPlan:
    """Where each of Synapse's processes listens and how the others reach it.

    ``hosts`` maps a process name ("main", EVENT_PERSISTER, each generic worker) to the host the
    others reach it at (the same 127.0.0.1 on one machine; a service name under compose).
    ``redis`` is Synapse's ``redis:`` section without ``enabled``.
    """

    workers: int
    bind_host: str
    hosts: dict[str, str]
    main_replication_port: int
    persister_port: int
    worker_ports: tuple[int, ...]
    redis: dict[str, Any]
    replication_secret: str

    @property
    def names(self) -> list[str]:
        return generic_worker_names(self.workers)

    def worker_url(self, name: str) -> str:
        return f"http://{self.hosts[name]}:{self.worker_ports[self.names.index(name)]}"


def _listener(port: int, bind_host: str, resource: str) -> dict[str, Any]:
    return {
        "port": port,
        "bind_addresses": [bind_host],
        "type": "http",
        "tls": False,
        # Client listeners sit behind the proxy, as the main one does (X-Forwarded-For overwritten).
        "x_forwarded": resource == "client",
        "resources": [{"names": [resource], "compress": False}],
    }


def shared_worker_settings(plan: WorkerPlan) -> dict[str, Any]:
    """What homeserver.yaml (read by every process) gains for the worker layout."""
    return {
        "instance_map": {
            "main": {"host": plan.hosts["main"], "port": plan.main_replication_port},
            EVENT_PERSISTER: {"host": plan.hosts[EVENT_PERSISTER], "port": plan.persister_port},
        },
        "stream_writers": {"events": [EVENT_PERSISTER]},
        "redis": {"enabled": True, **plan.redis},
        # Replication is plain HTTP on loopback or the compose network: authenticate it anyway.
        "worker_replication_secret": plan.replication_secret,
    }


def main_replication_listener(plan: WorkerPlan) -> dict[str, Any]:
    """The main process's replication listener (never public: loopback or the compose network)."""
    return _listener(plan.main_replication_port, plan.bind_host, "replication")


def worker_configs(plan: WorkerPlan, log_config_path: Callable[[str], str]) -> dict[str, dict[str, Any]]:
    """Each worker's own file (name → config), read after homeserver.yaml."""
    configs: dict[str, dict[str, Any]] = {
        EVENT_PERSISTER: {
            "worker_app": GENERIC_WORKER_APP,
            "worker_name": EVENT_PERSISTER,
            # Replication only: it persists the events the other processes create.
            "worker_listeners": [_listener(plan.persister_port, plan.bind_host, "replication")],
            "worker_log_config": log_config_path(EVENT_PERSISTER),
        }
    }
    for name, port in zip(plan.names, plan.worker_ports):
        configs[name] = {
            "worker_app": GENERIC_WORKER_APP,
            "worker_name": name,
            # The client API only (no federation: it is off on this homeserver).
            "worker_listeners": [_listener(port, plan.bind_host, "client")],
            "worker_log_config": log_config_path(name),
        }
    return configs


def redis_conf(*, password: str, unix_socket: str | None = None, bind_host: str = "127.0.0.1",
               port: int = 6379, directory: str = "/tmp") -> str:
    """redis-server's configuration for Synapse's replication: pub/sub between Synapse's processes
    and a small cache (which servers are in a room); nothing is ever written to disk."""
    where = (f"port 0\nunixsocket {unix_socket}\nunixsocketperm 700\n" if unix_socket
             else f"bind {bind_host}\nport {port}\n")
    return ("# matrix-hotline: Redis for Synapse's workers (replication), written by `hotline init`.\n"
            "# Nothing is saved to disk (no snapshots, no append-only file); a restart empties it.\n"
            f"{where}"
            "protected-mode yes\n"
            f"requirepass {password}\n"
            'save ""\n'
            "appendonly no\n"
            f"dir {directory}\n"
            "daemonize no\n"
            "supervised no\n"
            'logfile ""\n'
            "loglevel warning\n"
            "databases 1\n")


@dataclass(frozen=True)
class EmbeddedHomeserver:
    """Files of an embedded (SQLite, loopback) Synapse in ``directory``."""

    directory: Path
    server_name: str
    port: int
    bot_localpart: str = "hotline"
    # Synapse's ``database:`` section; None means SQLite in ``database_path``.
    database: dict[str, Any] | None = None
    # Synapse's worker layout (PostgreSQL and Redis needed); None: one process, as by default.
    workers: WorkerPlan | None = None
    # With workers: the entrance (nginx, proxy.nginx_internal_site) that routes to the processes;
    # ``url`` is then the entrance's, ``main_url`` the main process's.
    entrance_port: int | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "homeserver.yaml"

    @property
    def database_path(self) -> Path:
        return self.directory / "homeserver.db"

    @property
    def registration_path(self) -> Path:
        return self.directory / "webchat-appservice.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.entrance_port or self.port}"

    @property
    def main_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_config_path(self, name: str) -> Path:
        return self.directory / "workers" / f"{name}.yaml"

    @property
    def bot_user_id(self) -> str:
        return f"@{self.bot_localpart}:{self.server_name}"

    @property
    def uses_postgres(self) -> bool:
        return self.database is not None and self.database["name"] == "psycopg2"

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on Synapse's database, SQLite or PostgreSQL (``?`` placeholders).

        For tests and ``hotline admin`` checks: Synapse's tables are not an API.
        """
        if self.uses_postgres:
            import psycopg2

            assert self.database is not None
            args = {k: v for k, v in self.database["args"].items() if not k.startswith("cp_")}
            connection = psycopg2.connect(**args)
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql.replace("?", "%s"), tuple(params))
                    return list(cursor.fetchall())
            finally:
                connection.close()
        import sqlite3

        with sqlite3.connect(f"file:{self.database_path}?mode=ro", uri=True) as db:
            return list(db.execute(sql, tuple(params)).fetchall())

    def secrets(self) -> dict[str, str]:
        """The config's secrets, made once and kept in ``secrets.yaml`` (mode 0600)."""
        path = self.directory / "secrets.yaml"
        values = yaml.safe_load(path.read_text()) if path.exists() else {}
        missing = [
            name
            for name in (
                "registration_shared_secret",
                "macaroon_secret_key",
                "form_secret",
                "as_token",
                "hs_token",
                "worker_replication_secret",
                "redis_password",
            )
            if not values.get(name)
        ]
        if missing:
            values |= {name: secrets.token_urlsafe(32) for name in missing}
            _write_private(path, yaml.safe_dump(values))
        return values

    def write_config(self, *, relaxed_rate_limits: bool) -> None:
        """Write homeserver.yaml, its log config and the gateway's registration."""
        self.directory.mkdir(parents=True, exist_ok=True)
        values = self.secrets()
        registration = appservice_registration(
            self.server_name, values["as_token"], values["hs_token"]
        )
        _write_private(self.registration_path, yaml.safe_dump(registration))
        log_path = self.directory / "homeserver.log.yaml"
        log_path.write_text(yaml.safe_dump(log_config(self.directory / "homeserver.log")))
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(self.directory / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    # As in production behind the proxy: the client's address comes from
                    # X-Forwarded-For (the listener is on loopback only), so a test can sign in
                    # from an office address.
                    "x_forwarded": True,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": self.database or {"name": "sqlite3", "args": {"database": str(self.database_path)}},
            "log_config": str(log_path),
            "media_store_path": str(self.directory / "media"),
            "signing_key_path": str(self.directory / "signing.key"),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "registration_shared_secret": values["registration_shared_secret"],
            "macaroon_secret_key": values["macaroon_secret_key"],
            "form_secret": values["form_secret"],
            "app_service_config_files": [str(self.registration_path)],
            "modules": [invite_policy_module(self.bot_user_id)],
            "bcrypt_rounds": 4 if relaxed_rate_limits else 12,
            **privacy_settings(),
            **idle_duty_settings(),
        }
        config.update(RELAXED_RATE_LIMITS if relaxed_rate_limits else PRODUCTION_RATE_LIMITS)
        if self.workers is not None:
            config["listeners"].append(main_replication_listener(self.workers))
            config.update(shared_worker_settings(self.workers))

            def worker_log(name: str) -> str:
                path = self.directory / f"{name}.log.yaml"
                path.write_text(yaml.safe_dump(log_config(self.directory / f"{name}.log")))
                return str(path)

            for name, worker in worker_configs(self.workers, worker_log).items():
                _write_private(self.worker_config_path(name), yaml.safe_dump(worker, sort_keys=False))
        _write_private(self.config_path, yaml.safe_dump(config, sort_keys=False))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class HomeserverProcess:
    """Synapse as child processes in their own sessions, stopped with SIGTERM: the main process,
    then (with a worker layout) the event persister and the generic workers, each from its file."""

    def __init__(self, homeserver: EmbeddedHomeserver) -> None:
        self.homeserver = homeserver
        self.process: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.homeserver.directory / f"{name}.stdout", "ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.homeserver.directory,
            )
        finally:
            out.close()

    async def start(self, timeout: float = 60.0) -> None:
        self.process = self._spawn(
            "homeserver", ["synapse.app.homeserver", "-c", str(self.homeserver.config_path)]
        )
        await self._wait_healthy("homeserver", self.process, self.homeserver.main_url, timeout)
        plan = self.homeserver.workers
        if plan is None:
            return
        # After the main process (it prepares the database), as Synapse's systemd units order them.
        for name in [EVENT_PERSISTER, *plan.names]:
            self.workers[name] = self._spawn(
                name,
                [GENERIC_WORKER_APP, "-c", str(self.homeserver.config_path),
                 "-c", str(self.homeserver.worker_config_path(name))],
            )
        urls = {EVENT_PERSISTER: f"http://{plan.hosts[EVENT_PERSISTER]}:{plan.persister_port}"}
        urls |= {name: plan.worker_url(name) for name in plan.names}
        await asyncio.gather(
            *(self._wait_healthy(name, self.workers[name], urls[name], timeout) for name in urls)
        )

    async def _wait_healthy(
        self, name: str, process: subprocess.Popen[bytes], url: str, timeout: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"Synapse ({name}) exited with code {process.returncode}; "
                        f"see {self.homeserver.directory / name}.log and .stdout"
                    )
                if await health_ok(http, url):
                    return
                await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Synapse ({name}) did not answer on {url} in {timeout:.0f} s")

    def all(self) -> dict[str, subprocess.Popen[bytes]]:
        """Every Synapse process by name ("homeserver" for the main one)."""
        return ({"homeserver": self.process} if self.process is not None else {}) | self.workers

    def stop(self) -> None:
        # The workers first, then the main process.
        for process in [*self.workers.values(), self.process]:
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers.values(), self.process]:
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.workers = {}


async def health_ok(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=2)) as response:
            return response.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False
