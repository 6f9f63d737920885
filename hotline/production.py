"""``hotline init DOMAIN``: a complete production configuration in one directory.

Layout of the directory (``/etc/hotline`` by default)::

    secrets.yaml                   every secret, made once (0600); never regenerated
    synapse/homeserver.yaml        Synapse on PostgreSQL with every privacy setting (0600)
    synapse/log.yaml               Synapse's logging: the access log off
    synapse/webchat-appservice.yaml  the gateway's application service (0600)
    bot.env, webchat.env           the bot's and the gateway's settings (0600)
    proxy/unavailable.html         the page the proxy serves when the gateway cannot be reached
    postgres.env                   the database password for the compose file (0600)
    postgres-setup.sql             the database role and database, for psql's standard input (0600)
    proxy/Caddyfile, proxy/nginx.conf   the reverse proxy (Caddy, or nginx with TLS)
    proxy/nginx-bootstrap.conf     nginx over plain HTTP, only until certbot has the certificate
    systemd/*.service              units for an install without containers

With ``--workers N`` (Synapse's worker layout: docs/scaling.md) also::

    synapse/workers/*.yaml         the event persister's and each generic worker's own file
    redis/redis.conf               Redis for replication between Synapse's processes (0600)
    proxy/nginx-internal.conf      (systemd) the loopback entrance for the bot, the gateway, admin
    compose.workers.yml            (compose) the worker services, with deploy/docker-compose.yml
    systemd/hotline-redis.service, systemd/hotline-synapse-worker@.service
    NEXT-STEPS.md                  what to do next, as commands to paste (docs/admin-guide.md "Files")

Running it again keeps every file that exists (and says so); ``--overwrite`` rewrites the
configuration files but still reuses ``secrets.yaml``: a secret is never replaced silently.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from hotline import proxy
from hotline.homeserver import (
    EVENT_PERSISTER,
    GENERIC_WORKER_APP,
    PRODUCTION_RATE_LIMITS,
    SURVIVOR_LOCALPART_PREFIX,
    WorkerPlan,
    appservice_registration,
    generic_worker_names,
    idle_duty_settings,
    invite_policy_module,
    log_config,
    main_replication_listener,
    privacy_settings,
    redis_conf,
    shared_worker_settings,
    worker_configs,
)
from hotline.postgres import synapse_database
from webchat.unavailable import PageFacts, unavailable_page

SECRET_NAMES = (
    "registration_shared_secret",
    "macaroon_secret_key",
    "form_secret",
    "as_token",
    "hs_token",
    "bot_password",
    "postgres_password",
    "codeword_pepper",
)
BOT_LOCALPART = "hotline"
# systemd: one system user per service, so that the internet-facing gateway cannot read the bot's
# or Synapse's secrets. The bot's user also runs `hotline admin` (it uses the bot's login).
SERVICE_USERS = {"synapse": "hotline-synapse", "bot": "hotline", "webchat": "hotline-webchat"}
DB_USER = "synapse"
DB_NAME = "synapse"
# The worker layout (--workers N): two more secrets, and where each process listens. The bot, the
# gateway and `hotline admin` reach Synapse through the proxy's internal entrance on
# --synapse-port (proxy.nginx_internal_site / caddy_internal_site); the main process's client
# listener moves to MAIN_CLIENT_PORT.
WORKER_SECRET_NAMES = ("worker_replication_secret", "redis_password")
MAX_WORKERS = 16
MAIN_CLIENT_PORT = 8100
GENERIC_WORKER_PORT = 8101  # generic_worker1; the next ones on the next ports
MAIN_REPLICATION_PORT = 9093
PERSISTER_PORT = 9094
REDIS_SOCKET = "/run/hotline-redis/redis.sock"  # systemd: hotline-redis.service's RuntimeDirectory
REDIS_IMAGE = "docker.io/library/redis:7-bookworm"
# Several gateways (--gateways N; docs/scaling.md): g1, g2… each its own process, each chat pinned
# by the proxy to the one that started it. Under systemd on --gateway-port and the next ports (a
# unit template, hotline-webchat@NAME, with gateways/NAME.env); under compose the `webchat`
# service is g1 and webchat-g2… are added (compose.gateways.yml), each on --gateway-port.
MAX_GATEWAYS = 8

DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class InitError(Exception):
    """A problem with the arguments or the directory; the message says what to do."""


@dataclass
class Target:
    """Where things are at run time: inside the containers, or on this host under systemd."""

    name: str
    config_root: Path  # where this directory is at run time
    state_root: Path  # Synapse's media and signing key, the bot's DATA_DIR
    bind_host: str  # where Synapse and the gateway listen
    synapse_host: str  # how the bot, the gateway and the proxy reach Synapse
    gateway_host: str  # how the proxy reaches the gateway
    db_host: str
    db_port: int


@dataclass
class InitOptions:
    domain: str
    directory: Path
    target: str = "compose"
    state_dir: Path | None = None
    synapse_port: int = 8008
    gateway_port: int = 8080
    db_host: str | None = None
    db_port: int = 5432
    program_name: str = "Support chat"
    hotline_phone: str = ""
    acme_email: str | None = None
    rights_url: str | None = None
    overwrite: bool = False
    workers: int = 0  # Synapse's generic workers (0: one Synapse process, as by default)
    gateways: int = 1  # web chat gateways behind the proxy (1: one process, as by default)
    python_prefix: Path = field(default_factory=lambda: Path(sys.prefix))

    def resolve(self) -> Target:
        if not DOMAIN.match(self.domain):
            raise InitError(f"{self.domain!r} is not a domain name such as chat.example.org "
                            "(lower case, no scheme, no port)")
        if self.rights_url is not None and not re.fullmatch(r"https?://\S+", self.rights_url):
            raise InitError(f"--rights-url must be a web address (https://…), not {self.rights_url!r}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise InitError(f"--workers must be between 1 and {MAX_WORKERS} (or left out), not {self.workers}")
        if not 1 <= self.gateways <= MAX_GATEWAYS:
            raise InitError(f"--gateways must be between 1 and {MAX_GATEWAYS} (or left out), not {self.gateways}")
        if self.target == "compose":
            # Paths inside the containers: the compose file mounts --dir and --state-dir there
            # (HOTLINE_CONFIG, HOTLINE_STATE), whatever they are on the host.
            return Target("compose", Path("/etc/hotline"), Path("/var/lib/hotline"),
                          "0.0.0.0", "synapse", "webchat", self.db_host or "postgres", self.db_port)
        if self.target == "systemd":
            return Target("systemd", self.directory.resolve(), (self.state_dir or Path("/var/lib/hotline")).resolve(),
                          "127.0.0.1", "127.0.0.1", "127.0.0.1", self.db_host or "127.0.0.1", self.db_port)
        raise InitError(f"--target must be compose or systemd, not {self.target!r}")


@dataclass
class InitReport:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    secrets_reused: bool = False


def load_or_make_secrets(directory: Path, extra: tuple[str, ...] = ()) -> tuple[dict[str, str], bool]:
    """The directory's secrets: the existing ones if any (True), else fresh ones (False).
    ``extra``: more names this configuration needs (the worker layout's)."""
    names = SECRET_NAMES + extra
    path = directory / "secrets.yaml"
    if path.exists():
        values = yaml.safe_load(path.read_text()) or {}
        missing = [name for name in names if not values.get(name)]
        if missing:
            # Add only what is missing (a newer version may need more); never replace.
            for name in missing:
                values[name] = secrets.token_urlsafe(32)
            write_private(path, _secrets_text(values))
        return values, True
    if (directory / "synapse" / "homeserver.yaml").exists():
        raise InitError(f"{directory} has a homeserver.yaml but no secrets.yaml: refusing to make new "
                        "secrets that would not match the existing database and registration. Restore "
                        "secrets.yaml from your backup, or start in an empty directory.")
    values = {name: secrets.token_urlsafe(32) for name in names}
    write_private(path, _secrets_text(values))
    return values, False


def _secrets_text(values: dict[str, str]) -> str:
    return ("# matrix-hotline secrets, made by `hotline init`. Keep this file (0600) and back it up\n"
            "# with the rest of the configuration; every other file is rendered from it.\n"
            + yaml.safe_dump(values, sort_keys=True))


def compose_service(process: str) -> str:
    """The compose service (and host name) of one of Synapse's processes."""
    return "synapse" if process == "main" else "synapse-" + process.replace("_", "-")


def worker_plan(options: InitOptions, target: Target, values: dict[str, str]) -> WorkerPlan | None:
    """Synapse's worker layout for --workers N (None without it)."""
    if not options.workers:
        return None
    processes = ["main", EVENT_PERSISTER, *generic_worker_names(options.workers)]
    if target.name == "compose":
        hosts = {name: compose_service(name) for name in processes}
        redis: dict[str, Any] = {"host": "redis", "port": 6379}
    else:
        hosts = {name: "127.0.0.1" for name in processes}
        redis = {"path": REDIS_SOCKET}
    return WorkerPlan(
        workers=options.workers, bind_host=target.bind_host, hosts=hosts,
        main_replication_port=MAIN_REPLICATION_PORT, persister_port=PERSISTER_PORT,
        worker_ports=tuple(GENERIC_WORKER_PORT + i for i in range(options.workers)),
        redis=redis | {"password": values["redis_password"]},
        replication_secret=values["worker_replication_secret"])


def homeserver_config(options: InitOptions, target: Target, values: dict[str, str]) -> dict[str, Any]:
    config = _homeserver_config(options, target, values)
    plan = worker_plan(options, target, values)
    if plan is not None:
        # The main process's client listener moves off --synapse-port, which the proxy's internal
        # entrance takes (the bot and the gateway reach every process through it).
        config["listeners"][0]["port"] = MAIN_CLIENT_PORT
        config["listeners"].append(main_replication_listener(plan))
        config.update(shared_worker_settings(plan))
    return config


def _homeserver_config(options: InitOptions, target: Target, values: dict[str, str]) -> dict[str, Any]:
    synapse_state = target.state_root / "synapse"
    config_dir = target.config_root / "synapse"
    return {
        "server_name": options.domain,
        "public_baseurl": f"https://{options.domain}/",
        "pid_file": str(synapse_state / "homeserver.pid"),
        # One client listener behind the reverse proxy. No federation listener, no TLS here.
        # x_forwarded: the proxy overwrites X-Forwarded-For with the connecting address; the
        # listener is not reachable except through the proxy (loopback or the compose network).
        "listeners": [{
            "port": options.synapse_port,
            "bind_addresses": [target.bind_host],
            "type": "http",
            "tls": False,
            "x_forwarded": True,
            "resources": [{"names": ["client"], "compress": False}],
        }],
        "database": synapse_database(target.db_port, host=target.db_host, user=DB_USER, name=DB_NAME,
                                     password=values["postgres_password"]),
        "log_config": str(config_dir / "log.yaml"),
        "media_store_path": str(synapse_state / "media"),
        "signing_key_path": str(synapse_state / "signing.key"),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "serve_server_wellknown": False,
        "registration_shared_secret": values["registration_shared_secret"],
        "macaroon_secret_key": values["macaroon_secret_key"],
        "form_secret": values["form_secret"],
        "app_service_config_files": [str(config_dir / "webchat-appservice.yaml")],
        "modules": [invite_policy_module(f"@{BOT_LOCALPART}:{options.domain}")],
        "bcrypt_rounds": 12,
        "max_upload_size": "50M",
        **privacy_settings(),
        **idle_duty_settings(),
        **PRODUCTION_RATE_LIMITS,
    }


SETUP_FILLS = "(filled in by `hotline admin setup`)"


def env_text(title: str, values: dict[str, str | None], notes: dict[str, str] | None = None) -> str:
    """``HOTLINE_NAME=value`` lines; a None value becomes a commented placeholder (``notes`` says
    what belongs there; by default `hotline admin setup` fills it in)."""
    lines = [f"# {title}", "# Every setting: docs/configuration.md. Environment variables win over this file.", ""]
    for key, value in values.items():
        name = f"HOTLINE_{key.upper()}"
        if value is None:
            lines.append(f"# {name}=   {(notes or {}).get(key, SETUP_FILLS)}")
        else:
            lines.append(f"{name}={quote_env(value)}")
    return "\n".join(lines) + "\n"


def quote_env(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_@:./+,!-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(target: Target, prefix: Path, workers: int = 0, gateways: int = 1) -> dict[str, str]:
    """Units for an install without containers; ``prefix`` is the Python environment (venv).
    With ``workers``, also Redis and a template for Synapse's workers (one instance per file in
    synapse/workers/). With ``gateways`` > 1, also a template for the gateways (one instance per
    file in gateways/)."""
    hardening = """NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
UMask=0077"""
    config = target.config_root
    state = target.state_root
    redis = " hotline-redis.service" if workers else ""
    units = {
        "hotline-synapse.service": f"""[Unit]
Description=matrix-hotline homeserver (Synapse on PostgreSQL)
Documentation=file://{config}/NEXT-STEPS.md
After=network-online.target postgresql.service{redis}
Wants=network-online.target postgresql.service{redis}

[Service]
Type=simple
User={SERVICE_USERS["synapse"]}
Group={SERVICE_USERS["synapse"]}
WorkingDirectory={state}/synapse
ExecStart={prefix}/bin/python -m synapse.app.homeserver --config-path {config}/synapse/homeserver.yaml
Restart=on-failure
RestartSec=5
ReadWritePaths={state}/synapse
{hardening}

[Install]
WantedBy=multi-user.target
""",
        "hotline-bot.service": f"""[Unit]
Description=matrix-hotline bot (routes chats; holds the admin token and crypto store)
After=hotline-synapse.service
Wants=hotline-synapse.service

[Service]
Type=simple
User={SERVICE_USERS["bot"]}
Group={SERVICE_USERS["bot"]}
ExecStart={prefix}/bin/hotline-bot --config {config}/bot.env
Restart=on-failure
RestartSec=5
ReadWritePaths={state}/bot
{hardening}

[Install]
WantedBy=multi-user.target
""",
        "hotline-webchat.service": f"""[Unit]
Description=matrix-hotline web chat gateway (the survivor's page and WebSocket)
After=hotline-synapse.service
Wants=hotline-synapse.service

[Service]
Type=simple
User={SERVICE_USERS["webchat"]}
Group={SERVICE_USERS["webchat"]}
ExecStart={prefix}/bin/hotline-webchat --config {config}/webchat.env
Restart=on-failure
RestartSec=2
{hardening}

[Install]
WantedBy=multi-user.target
""",
    }
    if gateways > 1:
        units["hotline-webchat@.service"] = units["hotline-webchat.service"].replace(
            "Description=matrix-hotline web chat gateway (the survivor's page and WebSocket)",
            "Description=matrix-hotline web chat gateway %i (the survivor's page and WebSocket)\n"
            f"AssertPathExists={config}/gateways/%i.env").replace(
            "ExecStart=", f"# Its name and port (they win over webchat.env).\nEnvironmentFile={config}/gateways/%i.env\nExecStart=")
    if not workers:
        return units
    units["hotline-redis.service"] = f"""[Unit]
Description=matrix-hotline Redis (replication between Synapse's processes; nothing on disk)
Documentation=file://{config}/NEXT-STEPS.md
Before=hotline-synapse.service

[Service]
Type=simple
User={SERVICE_USERS["synapse"]}
Group={SERVICE_USERS["synapse"]}
# Debian's redis-server binary with the hotline's own configuration: a Unix socket in this
# runtime directory only (no TCP port), a password, no snapshots.
RuntimeDirectory=hotline-redis
RuntimeDirectoryMode=0700
ExecStart=/usr/bin/redis-server {config}/redis/redis.conf
Restart=on-failure
RestartSec=2
{hardening}

[Install]
WantedBy=multi-user.target
"""
    units["hotline-synapse-worker@.service"] = f"""[Unit]
Description=matrix-hotline homeserver worker %i (Synapse)
Documentation=file://{config}/NEXT-STEPS.md
AssertPathExists={config}/synapse/workers/%i.yaml
# Restarted with the main process; started after it (it prepares the database).
PartOf=hotline-synapse.service
After=hotline-synapse.service hotline-redis.service
Wants=hotline-redis.service

[Service]
Type=simple
User={SERVICE_USERS["synapse"]}
Group={SERVICE_USERS["synapse"]}
WorkingDirectory={state}/synapse
ExecStart={prefix}/bin/python -m {GENERIC_WORKER_APP} --config-path {config}/synapse/homeserver.yaml --config-path {config}/synapse/workers/%i.yaml
Restart=on-failure
RestartSec=5
ReadWritePaths={state}/synapse
{hardening}

[Install]
WantedBy=multi-user.target
"""
    return units


def compose_workers(options: InitOptions, target: Target) -> str:
    """compose.workers.yml: Redis and Synapse's workers, added to deploy/docker-compose.yml."""
    config, state = "${HOTLINE_CONFIG:-/etc/hotline}", "${HOTLINE_STATE:-/var/lib/hotline}"
    synapse_volumes = [f"{config}/synapse:/etc/hotline/synapse:ro", f"{state}/synapse:/var/lib/hotline/synapse"]
    services: dict[str, Any] = {
        "redis": {
            "image": REDIS_IMAGE,
            "user": "10001:10001",
            "command": ["redis-server", "/etc/hotline/redis/redis.conf"],
            "read_only": True,
            "tmpfs": ["/tmp"],
            "volumes": [f"{config}/redis/redis.conf:/etc/hotline/redis/redis.conf:ro"],
            "networks": ["hotline"],
            "restart": "unless-stopped",
        },
        "synapse": {"depends_on": {"redis": {"condition": "service_started"}}},
    }
    for name in [EVENT_PERSISTER, *generic_worker_names(options.workers)]:
        services[compose_service(name)] = {
            "image": "matrix-hotline-synapse:latest",
            "user": "10001:10001",
            "entrypoint": ["python", "-m", GENERIC_WORKER_APP, "--config-path", "/etc/hotline/synapse/homeserver.yaml",
                           "--config-path", f"/etc/hotline/synapse/workers/{name}.yaml"],
            "volumes": list(synapse_volumes),
            "networks": ["hotline"],
            "restart": "unless-stopped",
            "depends_on": {"synapse": {"condition": "service_started"}, "redis": {"condition": "service_started"}},
        }
    return ("# matrix-hotline: Synapse's worker layout (written by `hotline init --workers "
            f"{options.workers}`).\n"
            "# Use it together with the main file, in every compose command:\n"
            "#   docker compose -f deploy/docker-compose.yml -f $HOTLINE_CONFIG/compose.workers.yml ...\n"
            "# Redis (replication, nothing on disk) sees only its own configuration; each worker the same\n"
            "# mounts as the main Synapse process.\n"
            + yaml.safe_dump({"services": services}, sort_keys=False))


def gateway_addresses(options: InitOptions, target: Target) -> proxy.Gateways:
    """(name, host:port) of each gateway with --gateways N (N > 1); () for the one gateway."""
    if options.gateways < 2:
        return ()
    names = proxy.gateway_names(options.gateways)
    if target.name == "compose":
        return tuple((name, f"{compose_gateway_service(name)}:{options.gateway_port}") for name in names)
    return tuple((name, f"{target.gateway_host}:{options.gateway_port + i}") for i, name in enumerate(names))


def compose_gateway_service(name: str) -> str:
    return "webchat" if name == "g1" else f"webchat-{name}"


def gateway_files(options: InitOptions, target: Target) -> dict[str, tuple[str, bool]]:
    """With --gateways N: each gateway's name (and under systemd its port), which win over
    webchat.env; under compose the added services."""
    gateways = gateway_addresses(options, target)
    if not gateways:
        return {}
    if target.name == "compose":
        services: dict[str, Any] = {"webchat": {"environment": {"HOTLINE_GATEWAY_NAME": "g1"}}}
        for name, _ in gateways[1:]:
            services[compose_gateway_service(name)] = {
                "image": "matrix-hotline:latest",
                "user": "10001:10001",
                "restart": "unless-stopped",
                "networks": ["hotline"],
                "depends_on": {"synapse": {"condition": "service_started"}},
                "command": ["hotline-webchat", "--config", "/etc/hotline/webchat.env"],
                "read_only": True,
                "volumes": ["${HOTLINE_CONFIG:-/etc/hotline}/webchat.env:/etc/hotline/webchat.env:ro"],
                "environment": {"HOTLINE_GATEWAY_NAME": name},
            }
        return {"compose.gateways.yml": (
            f"# matrix-hotline: {len(gateways)} web chat gateways (written by `hotline init --gateways {len(gateways)}`).\n"
            "# Use it together with the main file, in every compose command:\n"
            "#   docker compose -f deploy/docker-compose.yml -f $HOTLINE_CONFIG/compose.gateways.yml ...\n"
            "# Each gateway is the `webchat` service's twin with its own name (HOTLINE_GATEWAY_NAME); Caddy\n"
            "# pins each chat to the one that started it (docs/scaling.md).\n"
            + yaml.safe_dump({"services": services}, sort_keys=False), False)}
    return {f"gateways/{name}.env": (
        f"# The web chat gateway {name} (hotline-webchat@{name}.service): these win over webchat.env.\n"
        f"HOTLINE_GATEWAY_NAME={name}\nHOTLINE_LISTEN_PORT={address.rsplit(':', 1)[1]}\n", False)
        for name, address in gateways}


def render(options: InitOptions, values: dict[str, str]) -> dict[str, tuple[str, bool]]:
    """Every file: relative path → (text, private)."""
    target = options.resolve()
    domain = options.domain
    plan = worker_plan(options, target, values)
    synapse_url = f"http://{target.synapse_host}:{options.synapse_port}"
    if plan is not None and target.name == "compose":
        synapse_url = f"http://caddy:{options.synapse_port}"  # Caddy's internal entrance
    bot_user = f"@{BOT_LOCALPART}:{domain}"
    files: dict[str, tuple[str, bool]] = {}
    files["synapse/homeserver.yaml"] = (
        "# Synapse for matrix-hotline, written by `hotline init`. The privacy settings come from\n"
        "# hotline.homeserver.privacy_settings(); `hotline admin check` fails if one is changed.\n"
        + yaml.safe_dump(homeserver_config(options, target, values), sort_keys=False), True)
    files["synapse/log.yaml"] = (yaml.safe_dump(log_config(None), sort_keys=False), False)
    files["synapse/webchat-appservice.yaml"] = (
        yaml.safe_dump(appservice_registration(domain, values["as_token"], values["hs_token"]), sort_keys=False),
        True)
    common: dict[str, str | None] = {
        "homeserver_url": synapse_url,
        "bot_user_id": bot_user,
        "survivor_prefix": SURVIVOR_LOCALPART_PREFIX,
        "hotline_phone": options.hotline_phone,
    }
    rights = {"rights_url": "(your program's web page on rights and confidentiality: hotline init --rights-url)"}
    files["bot.env"] = (env_text("matrix-hotline bot", common | {
        "bot_password": values["bot_password"],
        "data_dir": str(target.state_root / "bot"),
        "dispatch_room": None,
        "admin_room": None,
        "supervisors_room": None,
        "interpreters_room": None,
        "service_room": None,
        "rights_url": options.rights_url,
        "trust_new_staff_devices": "false",
        "codeword_pepper": values["codeword_pepper"],
        "log_level": "INFO",
    }, rights), True)
    files["webchat.env"] = (env_text("matrix-hotline web chat gateway", common | {
        "as_token": values["as_token"],
        "bot_master_key": None,
        "listen_host": target.bind_host,
        "listen_port": str(options.gateway_port),
        "public_url": f"https://{domain}",
        "program_name": options.program_name,
        "rights_url": options.rights_url,
        "service_room": None,
        "log_level": "INFO",
    }, rights), True)
    files["postgres.env"] = (
        f"POSTGRES_USER={DB_USER}\nPOSTGRES_DB={DB_NAME}\nPOSTGRES_PASSWORD={values['postgres_password']}\n"
        "POSTGRES_INITDB_ARGS=--encoding=UTF8 --locale=C\n", True)
    files["postgres-setup.sql"] = (postgres_setup_sql(values["postgres_password"]), True)
    files.update(proxy_and_worker_files(options, target, values, plan))
    files.update(gateway_files(options, target))
    if target.name == "systemd":
        for name, text in systemd_units(target, options.python_prefix, options.workers, options.gateways).items():
            files[f"systemd/{name}"] = (text, False)
    files["NEXT-STEPS.md"] = (next_steps(options, target), False)
    return files


def proxy_and_worker_files(options: InitOptions, target: Target, values: dict[str, str],
                           plan: WorkerPlan | None) -> dict[str, tuple[str, bool]]:
    """The proxy's configs and error page, and with ``--workers`` the workers' files and Redis."""
    domain = options.domain
    files: dict[str, tuple[str, bool]] = {}
    synapse_upstream = f"{target.synapse_host}:{options.synapse_port}"
    gateway_upstream = f"{target.gateway_host}:{options.gateway_port}"
    workers: tuple[str, ...] = ()
    if plan is not None:
        synapse_upstream = f"{plan.hosts['main']}:{MAIN_CLIENT_PORT}"
        workers = tuple(f"{plan.hosts[name]}:{port}" for name, port in zip(plan.names, plan.worker_ports))
        log_path = str(target.config_root / "synapse" / "log.yaml")
        for name, worker in worker_configs(plan, lambda _name: log_path).items():
            files[f"synapse/workers/{name}.yaml"] = (yaml.safe_dump(worker, sort_keys=False), False)
        if target.name == "compose":
            redis = redis_conf(password=values["redis_password"], bind_host="0.0.0.0")
            files["compose.workers.yml"] = (compose_workers(options, target), False)
        else:
            redis = redis_conf(password=values["redis_password"], unix_socket=REDIS_SOCKET,
                               directory=str(Path(REDIS_SOCKET).parent))
            files["proxy/nginx-internal.conf"] = (
                proxy.nginx_internal_site(synapse_upstream, workers, listen=f"127.0.0.1:{options.synapse_port}"), False)
        files["redis/redis.conf"] = (redis, True)
    gateways = gateway_addresses(options, target)
    files["proxy/Caddyfile"] = (proxy.caddyfile(domain, synapse_upstream, gateway_upstream,
                                                acme_email=options.acme_email, workers=workers,
                                                internal_port=options.synapse_port, gateways=gateways), False)
    files["proxy/nginx.conf"] = (proxy.nginx_site(domain, synapse_upstream, gateway_upstream, workers=workers,
                                                  gateways=gateways), False)
    files["proxy/nginx-bootstrap.conf"] = (proxy.nginx_bootstrap_site(domain), False)
    files[f"proxy/{proxy.ERROR_PAGE}"] = (unavailable_page(page_facts(options)), False)
    return files


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def page_facts(options: InitOptions) -> PageFacts:
    """What proxy/unavailable.html says, from the program's settings: init's options, and the
    gateway's webchat.env where it exists already (its hours, time zone, language, title...)."""
    facts = PageFacts(program_name=options.program_name, hotline_phone=options.hotline_phone)
    env = options.directory / "webchat.env"
    if not env.is_file():
        return facts
    from dotenv import dotenv_values

    values = {k: v for k, v in dotenv_values(env).items() if v}
    names = {"program_name", "hotline_phone", "page_title", "exit_url", "hours", "timezone", "default_language"}
    changes: dict[str, Any] = {name: values[f"HOTLINE_{name.upper()}"] for name in names
                               if f"HOTLINE_{name.upper()}" in values}
    catalogs = values.get("HOTLINE_CATALOG_DIR")
    if catalogs and Path(catalogs).is_dir():  # a container path is not on this host
        changes["catalog_dir"] = Path(catalogs)
    return replace(facts, **changes)


def postgres_setup_sql(password: str) -> str:
    """The role and the database, for ``psql`` to read from standard input: the password stays in
    this file (0600) and never reaches a command line or a shell history."""
    literal = "'" + password.replace("'", "''") + "'"
    return (f"-- matrix-hotline: Synapse's PostgreSQL role and database (written by `hotline init`).\n"
            f"CREATE ROLE {DB_USER} LOGIN PASSWORD {literal};\n"
            f"CREATE DATABASE {DB_NAME} OWNER {DB_USER} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0;\n")


def psql_command(target: Target, config: Path) -> str:
    """psql as PostgreSQL's superuser, honouring --db-host and --db-port, the SQL on standard input."""
    sql = f"-v ON_ERROR_STOP=1 -q < {config}/postgres-setup.sql"
    if target.db_host in LOCAL_HOSTS:
        # Debian's cluster: the postgres user through the local socket of that port (peer auth).
        return f"runuser -u postgres -- psql -p {target.db_port} {sql}"
    return f"psql -h {target.db_host} -p {target.db_port} -U postgres {sql}   # asks for the superuser's password"


def next_steps(options: InitOptions, target: Target) -> str:
    if target.name == "compose":
        return compose_next_steps(options, target)
    return systemd_next_steps(options, target)


def _rights_note(options: InitOptions, env: str) -> str:
    if options.rights_url:
        return ""
    return (f"\nNo --rights-url was given: the rights notice cannot link to your program's full text.\n"
            f"Set HOTLINE_RIGHTS_URL in {env}/bot.env and {env}/webchat.env, then restart the bot and the gateway.\n")


def systemd_next_steps(options: InitOptions, target: Target) -> str:
    domain = options.domain
    config = target.config_root
    state = target.state_root
    synapse_user, bot_user, webchat_user = (SERVICE_USERS[name] for name in ("synapse", "bot", "webchat"))
    hotline = f"runuser -u {bot_user} -- {options.python_prefix}/bin/hotline admin --dir {config}"
    packages = "nginx certbot" if target.db_host not in LOCAL_HOSTS else "postgresql nginx certbot"
    email = f"-m {options.acme_email}" if options.acme_email else "--register-unsafely-without-email"
    workers = generic_worker_names(options.workers)
    units = "hotline-synapse.service hotline-bot.service hotline-webchat.service"
    redis_packages = redis_users = synapse_start = redis_note = ""
    gateways = " ".join(f"hotline-webchat@{name}" for name, _ in gateway_addresses(options, target)) or "hotline-webchat"
    if options.gateways > 1:
        units += " hotline-webchat@.service"
    if workers:
        packages += " redis-server"
        units += " hotline-redis.service hotline-synapse-worker@.service"
        redis_note = f"""
Synapse runs as {2 + len(workers)} processes (--workers {len(workers)}; docs/scaling.md): the main one,
an event persister and {len(workers)} generic worker(s) for /sync and client reads, with Redis
for replication. Debian's redis-server package gives the program; the hotline runs its own
instance (hotline-redis: a Unix socket, a password, nothing on disk), so Debian's default one is
stopped. nginx's loopback entrance (proxy/nginx-internal.conf, 127.0.0.1:{options.synapse_port})
routes the bot's, the gateway's and `hotline admin`'s requests to the right process.
"""
        redis_packages = "\nsystemctl disable --now redis-server"
        redis_users = (f"\nchown -R {synapse_user}:{synapse_user} {config}/redis\n"
                       f"chmod 0700 {config}/redis\nchmod 0600 {config}/redis/redis.conf")
        instances = " ".join(f"hotline-synapse-worker@{name}" for name in [EVENT_PERSISTER, *workers])
        synapse_start = (f"\nsystemctl enable --now hotline-redis\n"
                         f"systemctl enable --now hotline-synapse\n"
                         f"systemctl enable --now {instances}\n"
                         "cp " + f"{config}/proxy/nginx-internal.conf /etc/nginx/sites-available/hotline-internal.conf\n"
                         "ln -sf /etc/nginx/sites-available/hotline-internal.conf /etc/nginx/sites-enabled/hotline-internal.conf\n"
                         "nginx -t && systemctl reload nginx")
    return f"""# Next steps for {domain} (systemd, nginx)

Written by `hotline init`. Run each block as root (`su -` first), in this order, on Debian 12 or
a similar system. The admin guide (docs/admin-guide.md) explains each step and the files.

## 1. DNS and packages

Point DNS for {domain} at this machine; open ports 80 and 443 only. Then:

```sh
apt-get install -y {packages}{redis_packages}
```
{redis_note}
## 2. The service users, their directories and the database

Each service runs as its own system user and can read only its own files: Synapse
({synapse_user}) the synapse directory and its state; the bot ({bot_user}, which also runs
`hotline admin`) bot.env, webchat.env (setup fills it in), the synapse directory (setup needs
its registration secret, check its privacy settings) and its data directory; the web chat
gateway ({webchat_user}, the one that faces the internet) webchat.env and nothing else.
secrets.yaml and postgres-setup.sql stay root's. postgres-setup.sql creates the database role
(with the password of secrets.yaml) and the database; psql reads it from standard input, so the
password is never on a command line.

```sh
id -u {bot_user} >/dev/null 2>&1 || useradd --system --user-group --home-dir {state / 'bot'} --shell /usr/sbin/nologin {bot_user}
id -u {synapse_user} >/dev/null 2>&1 || useradd --system --user-group --home-dir {state / 'synapse'} --shell /usr/sbin/nologin {synapse_user}
id -u {webchat_user} >/dev/null 2>&1 || useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin {webchat_user}
install -d -o root -g root -m 0755 {state}
install -d -o {synapse_user} -g {synapse_user} -m 0700 {state}/synapse
install -d -o {bot_user} -g {bot_user} -m 0700 {state}/bot
chown -R root:root {config}
chmod 0755 {config}
chown -R {synapse_user}:{bot_user} {config}/synapse
chmod -R u=rwX,g=rX,o= {config}/synapse
chown {bot_user}:{bot_user} {config}/bot.env
chmod 0600 {config}/bot.env
chown {bot_user}:{webchat_user} {config}/webchat.env
chmod 0640 {config}/webchat.env{redis_users}
{psql_command(target, config)}
```

## 3. Synapse

```sh
cp {" ".join(f"{config}/systemd/{unit}" for unit in units.split())} /etc/systemd/system/
systemctl daemon-reload{synapse_start or chr(10) + "systemctl enable --now hotline-synapse"}
```

## 4. The bot account and the staff rooms

Creates the bot (a server admin), the dispatch, admin, supervisors, interpreters and service
rooms and the bot's cross-signing identity, and writes the room IDs and the bot's master key into
bot.env and webchat.env. It waits for Synapse to answer.

```sh
{hotline} setup
```

## 5. The bot and the web chat gateway

```sh
systemctl enable --now hotline-bot {gateways}
```
{_gateways_note(options, target)}

## 6. nginx and the TLS certificate

First the site over plain HTTP, so that certbot can prove the domain (webroot
/var/www/letsencrypt); then the full site with TLS. Debian's certbot renews by itself (a systemd
timer) and reloads nginx after each renewal (the deploy hook). nginx serves
{proxy.ERROR_ROOT}/unavailable.html (the hotline number, the hours, other ways to get help)
whenever the gateway cannot be reached.

```sh
install -d /var/www/letsencrypt
install -d -m 0755 {proxy.ERROR_ROOT}
install -m 0644 {config}/proxy/unavailable.html {proxy.ERROR_ROOT}/unavailable.html
cp {config}/proxy/nginx-bootstrap.conf /etc/nginx/sites-available/hotline.conf
ln -sf /etc/nginx/sites-available/hotline.conf /etc/nginx/sites-enabled/hotline.conf
nginx -t && systemctl reload nginx
certbot certonly --webroot -w /var/www/letsencrypt -d {domain} {email} --agree-tos --non-interactive --deploy-hook "systemctl reload nginx"
cp {config}/proxy/nginx.conf /etc/nginx/sites-available/hotline.conf
nginx -t && systemctl reload nginx
```

## 7. Staff

The first admin and an advocate (use your own names). Each gets a one-time password, printed only
now: give it in person or by phone. Roles: advocate, supervisor, interpreter, admin.

```sh
{hotline} staff add @alex:{domain} --role admin
{hotline} staff add @sam:{domain} --role advocate
```

## 8. Check

Everything in force, from inside and through the proxy; it must end with "All checks passed".

```sh
{hotline} check --public-url https://{domain}
```
{_rights_note(options, str(config))}
Staff sign in with any Matrix client at https://{domain} and change the one-time password at
once. Keep secrets.yaml, bot.env and the bot's data directory ({state / 'bot'}) in your backups:
see docs/backup.md.
"""


def _gateways_note(options: InitOptions, target: Target) -> str:
    gateways = gateway_addresses(options, target)
    if not gateways:
        return ""
    each = ", ".join(f"{name} on {address}" for name, address in gateways)
    own = ("its own gateways/NAME.env (its name and port)" if target.name == "systemd"
           else "its own name (HOTLINE_GATEWAY_NAME in compose.gateways.yml)")
    return (f"\n{len(gateways)} gateways (--gateways {len(gateways)}; docs/scaling.md): {each}, each with\n"
            f"webchat.env and {own}. The proxy pins each chat to\n"
            "the gateway that started it. Each gateway holds its chats in memory and counts its own\n"
            "HOTLINE_MAX_OPEN_CHATS and per-address limits.\n")


def compose_next_steps(options: InitOptions, target: Target) -> str:
    domain = options.domain
    host_config = options.directory.resolve()
    host_state = (options.state_dir or Path("/var/lib/hotline")).resolve()
    compose = "docker compose -f deploy/docker-compose.yml"
    first = "postgres synapse"
    if options.workers:
        compose += f" -f {host_config}/compose.workers.yml"
        processes = [EVENT_PERSISTER, *generic_worker_names(options.workers)]
        # Caddy too: the bot, the gateway and `admin` reach Synapse's processes through it.
        first = "postgres redis synapse " + " ".join(compose_service(name) for name in processes) + " caddy"
    if options.gateways > 1:
        compose += f" -f {host_config}/compose.gateways.yml"
    return f"""# Next steps for {domain} (docker compose)

Written by `hotline init`. Run the commands from the matrix-hotline checkout (for
deploy/docker-compose.yml) as root. The admin guide (docs/admin-guide.md) explains each step.
Inside the containers this directory is /etc/hotline and the state /var/lib/hotline, whatever
they are on the host; the compose file mounts them from HOTLINE_CONFIG and HOTLINE_STATE.

1. Point DNS for {domain} at this machine; open ports 80 and 443 only. Caddy gets the TLS
   certificate by itself once DNS points here (proxy/Caddyfile).
2. Tell compose where the configuration and the state are (every compose command below needs
   these two variables; put them in deploy/.env to keep them):

```sh
export HOTLINE_CONFIG={host_config} HOTLINE_STATE={host_state}
```

3. Give the containers' user (uid 10001) the configuration and the state, and start PostgreSQL
   and Synapse:

```sh
mkdir -p {host_state}/synapse {host_state}/bot
chown -R 10001:10001 {host_config} {host_state}
{compose} up -d {first}
```

4. Create the bot, the rooms and the bot's cross-signing identity (fills in the room IDs and the
   bot's master key in bot.env and webchat.env), start everything, add the first admin (a one-time password, printed once), and check:

```sh
{compose} run --rm admin setup
{compose} up -d
{compose} run --rm admin staff add @alex:{domain} --role admin
{compose} run --rm admin check --public-url https://{domain}
```
{_rights_note(options, str(host_config))}{_gateways_note(options, target)}
Staff sign in with any Matrix client at https://{domain} and change the one-time password at
once. Keep secrets.yaml, bot.env and the bot's data directory ({host_state / 'bot'}) in your
backups: see docs/backup.md.
"""


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def init(options: InitOptions) -> InitReport:
    options.resolve()
    directory = options.directory
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    report = InitReport()
    values, report.secrets_reused = load_or_make_secrets(directory, WORKER_SECRET_NAMES if options.workers else ())
    for relative, (text, private) in render(options, values).items():
        path = directory / relative
        if path.exists() and not options.overwrite:
            report.kept.append(path)
            continue
        if private:
            write_private(path, text)
        else:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(text)
        report.written.append(path)
    return report
