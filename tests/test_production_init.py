"""`hotline init` and deploy/: the files, their secrets, and the proxy/unit/compose checks.

Docker cannot run here: the compose file is parsed and checked against what `hotline init
--target compose` writes. nginx, Caddy and systemd are checked with their own tools when they are
installed (.ci/run installs nginx and caddy); tests/test_production_stack.py runs the real path.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from hotline import proxy
from hotline.admin import CheckResult, check_homeserver_config
from hotline.homeserver import privacy_settings
from hotline.production import InitOptions, Target, init, systemd_units

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
PRIVATE = ["secrets.yaml", "bot.env", "webchat.env", "postgres.env", "synapse/homeserver.yaml",
           "synapse/webchat-appservice.yaml"]


def hotline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hotline", *args], capture_output=True, text=True, timeout=120)


def make(tmp_path: Path, target: str = "systemd", **extra: object) -> Path:
    directory = tmp_path / "etc"
    options = {"state_dir": tmp_path / "state"} | extra
    init(InitOptions("chat.example.org", directory, target=target, **options))  # type: ignore[arg-type]
    return directory


def test_init_writes_everything_with_private_modes(tmp_path):
    result = hotline("init", "chat.example.org", "--dir", str(tmp_path / "etc"), "--target", "systemd",
                     "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stderr
    directory = tmp_path / "etc"
    for name in PRIVATE:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    secrets = yaml.safe_load((directory / "secrets.yaml").read_text())
    for value in secrets.values():
        assert value not in result.stdout, "a secret was printed"
        assert len(value) >= 40
    config = yaml.safe_load((directory / "synapse/homeserver.yaml").read_text())
    for key, value in privacy_settings().items():
        assert config[key] == value, key
    assert config["database"]["name"] == "psycopg2"
    assert config["public_baseurl"] == "https://chat.example.org/"
    assert [r["names"] for r in config["listeners"][0]["resources"]] == [["client"]]
    assert config["listeners"][0]["bind_addresses"] == ["127.0.0.1"]
    assert config["enable_registration"] is False
    assert "federation" not in str(config["listeners"])
    log = yaml.safe_load((directory / "synapse/log.yaml").read_text())
    assert log["loggers"]["synapse.access"]["level"] == "WARNING"
    registration = yaml.safe_load((directory / "synapse/webchat-appservice.yaml").read_text())
    assert registration["as_token"] == secrets["as_token"]
    assert secrets["as_token"] in (directory / "webchat.env").read_text()
    assert secrets["bot_password"] in (directory / "bot.env").read_text()
    assert secrets["as_token"] not in (directory / "bot.env").read_text()  # the bot never needs it
    assert "HOTLINE_TRUST_NEW_STAFF_DEVICES=false" in (directory / "bot.env").read_text()


def test_running_again_keeps_every_secret_and_says_so(tmp_path):
    directory = make(tmp_path)
    before = {name: (directory / name).read_text() for name in PRIVATE}
    result = hotline("init", "chat.example.org", "--dir", str(directory), "--target", "systemd")
    assert result.returncode == 0, result.stderr
    assert "Kept the existing secrets" in result.stdout and "kept" in result.stdout
    assert {name: (directory / name).read_text() for name in PRIVATE} == before
    # --overwrite rewrites the files, from the same secrets.
    result = hotline("init", "chat.example.org", "--dir", str(directory), "--target", "systemd",
                     "--state-dir", str(tmp_path / "state"), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert (directory / "secrets.yaml").read_text() == before["secrets.yaml"]
    assert (directory / "synapse/homeserver.yaml").read_text() == before["synapse/homeserver.yaml"]


def test_refuses_new_secrets_for_an_existing_configuration(tmp_path):
    directory = make(tmp_path)
    (directory / "secrets.yaml").unlink()
    result = hotline("init", "chat.example.org", "--dir", str(directory))
    assert result.returncode != 0
    assert "refusing to make new secrets" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("domain", ["https://chat.example.org", "Chat.Example.org", "localhost:8008", "a b"])
def test_bad_domain_is_one_clear_line(tmp_path, domain):
    result = hotline("init", domain, "--dir", str(tmp_path / "etc"))
    assert result.returncode != 0
    assert result.stderr.strip().startswith("hotline init:") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "etc").exists()


def test_generated_env_files_load_in_the_settings_models(tmp_path):
    from bot.settings import BotSettings
    from webchat.settings import GatewaySettings

    directory = make(tmp_path)
    from hotline.admin import set_env_values

    # Before `hotline admin setup`, the gateway lacks the bot's master key, which setup pins.
    with pytest.raises(Exception, match="bot_master_key"):
        GatewaySettings(_env_file=str(directory / "webchat.env"))
    set_env_values(directory / "webchat.env", {"bot_master_key": "A" * 43})
    gateway = GatewaySettings(_env_file=str(directory / "webchat.env"))
    assert gateway.origin == "https://chat.example.org"
    assert gateway.server_name == "chat.example.org"
    text = (directory / "bot.env").read_text()
    # Before `hotline admin setup`, the dispatch room is the one thing missing.
    with pytest.raises(Exception, match="dispatch_room"):
        BotSettings(_env_file=str(directory / "bot.env"))
    set_env_values(directory / "bot.env", {"dispatch_room": "!abc", "admin_room": "!def"})
    bot = BotSettings(_env_file=str(directory / "bot.env"))
    assert bot.dispatch_room == "!abc" and bot.trust_new_staff_devices is False
    assert bot.data_dir == tmp_path / "state" / "bot"
    assert (directory / "bot.env").read_text().count("HOTLINE_DISPATCH_ROOM") == 1
    assert text.splitlines()[0].startswith("#")


def test_check_fails_naming_each_privacy_setting_that_is_off(tmp_path):
    directory = make(tmp_path)
    path = directory / "synapse/homeserver.yaml"
    good = CheckResult()
    check_homeserver_config(path, good)
    assert not good.failed, good.lines
    config = yaml.safe_load(path.read_text())
    config["enable_search"] = True
    config["user_ips_max_age"] = "28d"
    config["listeners"][0]["resources"][0]["names"].append("federation")
    config["modules"] = []
    path.write_text(yaml.safe_dump(config))
    log = yaml.safe_load((directory / "synapse/log.yaml").read_text())
    log["loggers"]["synapse.access"]["level"] = "INFO"
    (directory / "synapse/log.yaml").write_text(yaml.safe_dump(log))
    bad = CheckResult()
    check_homeserver_config(path, bad)
    failures = "\n".join(text for kind, text in bad.lines if kind == "FAIL")
    for named in ("enable_search", "user_ips_max_age", "federation", "InvitePolicy", "synapse.access"):
        assert named in failures, named
    # A stricter duration is fine.
    config = yaml.safe_load(path.read_text()) | {"user_ips_max_age": "1m", "enable_search": False}
    path.write_text(yaml.safe_dump(config))
    stricter = CheckResult()
    check_homeserver_config(path, stricter)
    assert "user_ips_max_age" not in str([t for k, t in stricter.lines if k == "FAIL"])


def test_check_command_fails_loudly_on_a_config_with_a_setting_off(tmp_path):
    directory = make(tmp_path)
    path = directory / "synapse/homeserver.yaml"
    path.write_text(path.read_text().replace("enable_search: false", "enable_search: true"))
    result = hotline("admin", "--dir", str(directory), "check")
    assert result.returncode != 0
    assert "FAIL  homeserver.yaml enable_search is True" in result.stdout
    assert "FAILED" in result.stderr


# --------------------------------------------------------------------------- proxies

def caddy_validate(directory: Path) -> subprocess.CompletedProcess[str]:
    """`caddy validate` on the Caddyfile `hotline init` wrote into ``directory``."""
    return subprocess.run(["caddy", "validate", "--adapter", "caddyfile", "--config", str(directory / "proxy/Caddyfile")],
                          capture_output=True, text=True, timeout=60)


def nginx_wrapper(tmp_path: Path, site: str) -> Path:
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "site.conf").write_text(site)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{}}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    include {prefix}/site.conf;
}}
""")
    return conf


def self_signed(tmp_path: Path, domain: str) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", f"/CN={domain}"], check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None, reason="nginx not installed")
def test_nginx_config_passes_nginx_t(tmp_path):
    cert, key = self_signed(tmp_path, "chat.example.org")
    site = proxy.nginx_site("chat.example.org", "127.0.0.1:8008", "127.0.0.1:8080",
                            certificate=str(cert), key=str(key), http_port=18080, https_port=18443)
    conf = nginx_wrapper(tmp_path, site.replace("/var/log/nginx/hotline-error.log", str(tmp_path / "nginx/error.log")))
    result = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path / "nginx")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_proxy_configs_keep_no_access_log_and_hide_the_admin_api(tmp_path):
    directory = make(tmp_path)
    nginx = (directory / "proxy/nginx.conf").read_text()
    caddy = (directory / "proxy/Caddyfile").read_text()
    assert nginx.count("access_log off;") == 2 and "access_log /" not in nginx
    assert "location /_synapse/ {\n        return 404;" in nginx
    assert "Strict-Transport-Security" in nginx and "Upgrade $http_upgrade" in nginx
    assert 'proxy_set_header X-Forwarded-For "";' in nginx  # the survivor's address stops at the proxy
    assert "\tlog {" in caddy and "\t\tlog" not in caddy.split("chat.example.org {", 1)[1]  # no site log
    assert "/_synapse/*" in caddy and "respond 404" in caddy and "Strict-Transport-Security" in caddy
    assert "Content-Security-Policy" in caddy and "Content-Security-Policy" in nginx


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")
def test_caddyfile_validates(tmp_path):
    directory = make(tmp_path)
    result = caddy_validate(directory)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Valid configuration" in result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")
def test_caddy_serves_the_unavailable_page_when_the_gateway_is_down(tmp_path):
    """The generated Caddyfile, run by Caddy (over plain HTTP on loopback: no ACME), with nothing
    listening where the gateway should be: the page, as 503, with the chat page's headers."""
    from hotline.devstack import free_port

    directory = make(tmp_path, hotline_phone="555 0100")
    root = tmp_path / "srv"
    root.mkdir()
    shutil.copy(directory / "proxy/unavailable.html", root / "unavailable.html")
    port = free_port()
    site = proxy.caddyfile(f"http://127.0.0.1:{port}", f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}",
                           error_root=str(root))
    (tmp_path / "Caddyfile").write_text(site)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    caddy = subprocess.Popen(["caddy", "run", "--adapter", "caddyfile", "--config", str(tmp_path / "Caddyfile")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        answer = None
        for _ in range(300):
            try:
                answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            except urllib.error.HTTPError as error:
                answer = error
                break
            except OSError:
                time.sleep(0.1)
        assert isinstance(answer, urllib.error.HTTPError), "Caddy did not answer with an error status"
        body = answer.read().decode()
        assert answer.code == 503
        assert "555 0100" in body and "Chat not available" in body
        for name, value in proxy.page_headers().items():
            assert answer.headers[name] == value, name
        # The staff's Matrix API keeps its plain error (an HTML page is no use to a Matrix client).
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_matrix/client/versions", timeout=5)
        except urllib.error.HTTPError as error:
            assert error.code == 502 and "555 0100" not in error.read().decode()
    finally:
        caddy.terminate()
        caddy.wait(timeout=20)


# --------------------------------------------------------------------------- systemd and compose

@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path):
    directory = make(tmp_path)
    units = sorted((directory / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["hotline-bot.service", "hotline-synapse.service", "hotline-webchat.service"]
    result = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "hotline-bot.service" not in result.stderr and "hotline-synapse" not in result.stderr, result.stderr
    for unit in units:
        text = unit.read_text()
        assert f"{sys.prefix}/bin/" in text and "ProtectSystem=strict" in text and "User=hotline" in text


def test_deploy_examples_are_what_init_writes():
    target = Target("systemd", Path("/etc/hotline"), Path("/var/lib/hotline"), "127.0.0.1", "127.0.0.1",
                    "127.0.0.1", "127.0.0.1", 5432)
    for name, text in systemd_units(target, Path("/opt/hotline/venv")).items():
        assert (DEPLOY / "systemd" / name).read_text() == text, f"regenerate deploy/systemd/{name}"
    assert (DEPLOY / "nginx/hotline.conf.example").read_text() == proxy.nginx_site(
        "chat.example.org", "127.0.0.1:8008", "127.0.0.1:8080")


def test_compose_file_matches_the_compose_configuration(tmp_path):
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "synapse", "bot", "webchat", "admin", "caddy"}
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"caddy"}, "only the proxy may publish ports"
    for name, service in services.items():
        assert "image" in service or "build" in service
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).is_file()
            assert service["user"] == "10001:10001"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("${HOTLINE_") or source in compose["volumes"], volume
    directory = make(tmp_path, target="compose", state_dir=None)
    config = yaml.safe_load((directory / "synapse/homeserver.yaml").read_text())
    mounts = {re.sub(r"\$\{[^}]*\}", "X", v).split(":")[1] for s in services.values() for v in s.get("volumes", [])}
    # What homeserver.yaml and bot.env name inside the containers is mounted there.
    assert {"/etc/hotline/synapse", "/etc/hotline/bot.env", "/etc/hotline/webchat.env", "/var/lib/hotline/synapse",
            "/var/lib/hotline/bot"} <= mounts
    assert config["media_store_path"].startswith("/var/lib/hotline/synapse")
    assert config["database"]["args"]["host"] == "postgres"
    assert config["app_service_config_files"] == ["/etc/hotline/synapse/webchat-appservice.yaml"]
    assert "HOTLINE_DATA_DIR=/var/lib/hotline/bot" in (directory / "bot.env").read_text()
    assert "HOTLINE_HOMESERVER_URL=http://synapse:8008" in (directory / "webchat.env").read_text()
    assert "reverse_proxy synapse:8008" in (directory / "proxy/Caddyfile").read_text()
    assert services["bot"]["command"][-1] == "/etc/hotline/bot.env"
    assert services["webchat"]["command"][-1] == "/etc/hotline/webchat.env"
    assert "/etc/hotline/synapse/homeserver.yaml" in (DEPLOY / "Dockerfile.synapse").read_text()
    assert "log_connections=off" in services["postgres"]["command"]
    env = (directory / "postgres.env").read_text()
    assert "--locale=C" in env and "POSTGRES_PASSWORD=" in env


def host_paths(service: dict) -> dict[str, str]:
    """A compose service's bind mounts: host path (with HOTLINE_CONFIG/STATE as C and S) → container path."""
    paths = {}
    for volume in service.get("volumes", []):
        volume = volume.replace("${HOTLINE_CONFIG:-/etc/hotline}", "C").replace("${HOTLINE_STATE:-/var/lib/hotline}", "S")
        source, target = volume.split(":")[:2]
        paths[source] = target
    return paths


def readable(mounts: dict[str, str], host_file: str) -> bool:
    """Whether a host file (C/… or S/…) is inside one of the mounts."""
    return any(host_file == source or host_file.startswith(source.rstrip("/") + "/") for source in mounts)


# Every secret of the hotline, as a host path; who may see it.
SECRET_FILES = {
    "C/secrets.yaml": {"admin"},
    "C/bot.env": {"bot", "admin"},
    "C/webchat.env": {"webchat", "admin"},
    "C/postgres.env": {"admin"},  # compose reads it for postgres's environment (env_file)
    "C/postgres-setup.sql": {"admin"},
    "C/synapse/homeserver.yaml": {"synapse", "admin"},
    "C/synapse/webchat-appservice.yaml": {"synapse", "admin"},
    "S/synapse/signing.key": {"synapse"},
    "S/bot/cross-signing.json": {"bot", "admin"},
    "S/bot/routing.db": {"bot", "admin"},
}


def test_compose_mounts_give_each_service_only_its_own_secrets():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    mounts = {name: host_paths(service) for name, service in services.items()}
    for secret, allowed in SECRET_FILES.items():
        seen_by = {name for name, paths in mounts.items() if readable(paths, secret)}
        assert seen_by <= allowed, f"{secret} is mounted into {sorted(seen_by - allowed)}"
    # The gateway, the one container that faces the internet: its settings and nothing else.
    assert mounts["webchat"] == {"C/webchat.env": "/etc/hotline/webchat.env"}
    assert services["webchat"]["read_only"] is True
    # Each service still gets what it needs (the check above must not pass by mounting nothing).
    assert readable(mounts["bot"], "C/bot.env") and readable(mounts["bot"], "S/bot/cross-signing.json")
    assert readable(mounts["synapse"], "C/synapse/homeserver.yaml") and readable(mounts["synapse"], "S/synapse/signing.key")
    assert mounts["caddy"]["C/proxy/unavailable.html"] == f"{proxy.CADDY_ERROR_ROOT}/{proxy.ERROR_PAGE}"


def test_compose_mount_check_sees_a_whole_directory_mount():
    """The check above can fail: the old compose file mounted all of /etc/hotline into the gateway."""
    assert readable({"C": "/etc/hotline"}, "C/bot.env") and readable({"C/synapse": "x"}, "C/synapse/homeserver.yaml")
    assert not readable({"C/webchat.env": "x"}, "C/bot.env") and not readable({"C/synapse": "x"}, "C/synapse.env")


def test_systemd_units_run_each_service_as_its_own_user(tmp_path):
    directory = make(tmp_path)
    users = {}
    for unit in (directory / "systemd").glob("*.service"):
        users[unit.name] = re.search(r"^User=(\S+)$", unit.read_text(), re.M).group(1)
    assert len(set(users.values())) == 3, users
    assert users["hotline-webchat.service"] == "hotline-webchat"


# --------------------------------------------------------------------------- the page when chat is down

def test_init_writes_the_unavailable_page_from_the_catalog_and_the_settings(tmp_path):
    directory = make(tmp_path, hotline_phone="+1 555 0100", program_name="Safe Harbor")
    page = (directory / "proxy/unavailable.html").read_text()
    assert stat.S_IMODE((directory / "proxy/unavailable.html").stat().st_mode) & 0o044  # nginx reads it
    from webchat.i18n import load_catalogs

    english = load_catalogs()["en"]
    for key in ("unavailable_title", "down", "other_help_title", "other_help", "hours_title", "hours_always", "leave"):
        assert html.escape(english[key]) in page, key
    assert 'href="tel:+15550100"' in page and ">+1 555 0100</a>" in page and "Safe Harbor" in page
    assert "<script" not in page and "style" not in page  # the chat page's CSP allows neither inline
    # The program's own settings: hours, language and its own texts (webchat.env, HOTLINE_CATALOG_DIR).
    catalogs = tmp_path / "catalogs"
    catalogs.mkdir()
    (catalogs / "es.json").write_text(json.dumps({"_name": "Español", "down": "El chat no responde ahora.",
                                                  "day_mon": "lunes", "hours_title": "Horario"}))
    env = directory / "webchat.env"
    env.write_text(env.read_text() + f"HOTLINE_HOURS=mon-fri 09:00-17:00; sat 10:00-12:00, 13:00-14:00\n"
                   f"HOTLINE_TIMEZONE=America/New_York\nHOTLINE_DEFAULT_LANGUAGE=es\nHOTLINE_CATALOG_DIR={catalogs}\n")
    (directory / "proxy/unavailable.html").unlink()
    init(InitOptions("chat.example.org", directory, target="systemd", state_dir=tmp_path / "state",
                     hotline_phone="+1 555 0100"))
    page = (directory / "proxy/unavailable.html").read_text()
    assert '<html lang="es"' in page and "El chat no responde ahora." in page and "Horario" in page
    assert "lunes: 09:00–17:00" in page and "Saturday: 10:00–12:00, 13:00–14:00" in page  # English for gaps
    assert "Sunday" not in page and "America/New_York" in page and english["hours_always"] not in page


@pytest.mark.parametrize(("hours", "lines"), [
    ("mon-sun 00:00-24:00", []),
    ("mon 09:00-17:00", ["Monday: 09:00–17:00"]),
    ("sun 18:00-24:00; mon-tue 08:30-12:00, 13:00-17:00",
     ["Monday: 08:30–12:00, 13:00–17:00", "Tuesday: 08:30–12:00, 13:00–17:00", "Sunday: 18:00–24:00"]),
])
def test_hours_in_words(hours, lines):
    from webchat.i18n import load_catalogs
    from webchat.unavailable import hours_lines

    assert hours_lines(hours, load_catalogs()["en"]) == lines


# --------------------------------------------------------------------------- NEXT-STEPS and check

def next_steps_commands(text: str) -> list[str]:
    """The shell commands of NEXT-STEPS.md: the lines of its ```sh blocks."""
    return [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize(("extra", "wanted", "unwanted"), [
    ({}, ["runuser -u postgres -- psql -p 5432 ", "apt-get install -y postgresql nginx certbot"], ["psql -h"]),
    ({"db_port": 5433}, ["runuser -u postgres -- psql -p 5433 "], ["-p 5432"]),
    ({"db_host": "db.internal", "db_port": 6432}, ["psql -h db.internal -p 6432 -U postgres ",
                                                   "apt-get install -y nginx certbot"], ["runuser -u postgres"]),
    ({"acme_email": "it@example.org"}, ["-m it@example.org"], ["--register-unsafely-without-email"]),
])
def test_systemd_next_steps_honour_the_flags(tmp_path, extra, wanted, unwanted):
    directory = make(tmp_path, **extra)
    text = (directory / "NEXT-STEPS.md").read_text()
    commands = "\n".join(next_steps_commands(text))
    for piece in wanted:
        assert piece in commands, piece
    for piece in unwanted:
        assert piece not in commands, piece
    assert "sudo" not in text  # root's shell; runuser for the service user (no sudo needed)
    for line in next_steps_commands(text):
        command = re.sub(r"^runuser -u \S+ -- ", "", line).split()[0]
        assert command != "hotline", f"a bare `hotline` is on nobody's PATH: {line}"
    assert f"{sys.prefix}/bin/hotline admin --dir {directory.resolve()}" in commands
    secrets = yaml.safe_load((directory / "secrets.yaml").read_text())
    assert not any(value in text for value in secrets.values()), "a secret in NEXT-STEPS.md"
    sql = (directory / "postgres-setup.sql").read_text()
    assert f"PASSWORD '{secrets['postgres_password']}'" in sql and "LC_COLLATE 'C'" in sql
    assert stat.S_IMODE((directory / "postgres-setup.sql").stat().st_mode) == 0o600
    # nginx: the site over HTTP first (it names no certificate), certbot, then the TLS site.
    order = [next(i for i, line in enumerate(next_steps_commands(text)) if piece in line)
             for piece in ("nginx-bootstrap.conf", "certbot certonly --webroot -w /var/www/letsencrypt",
                           "proxy/nginx.conf")]
    assert order == sorted(order)
    assert "ssl_certificate" not in (directory / "proxy/nginx-bootstrap.conf").read_text()


def test_compose_with_other_directories_names_only_container_paths(tmp_path):
    directory = make(tmp_path, target="compose", state_dir=tmp_path / "somewhere" / "state")
    for name in ("synapse/homeserver.yaml", "bot.env", "webchat.env"):
        text = (directory / name).read_text()
        assert str(tmp_path) not in text, f"{name} names a host path the containers do not have"
    config = yaml.safe_load((directory / "synapse/homeserver.yaml").read_text())
    assert config["media_store_path"] == "/var/lib/hotline/synapse/media"
    commands = "\n".join(next_steps_commands((directory / "NEXT-STEPS.md").read_text()))
    assert f"export HOTLINE_CONFIG={directory.resolve()} HOTLINE_STATE={tmp_path / 'somewhere/state'}" in commands
    assert "run --rm admin check --public-url https://chat.example.org" in commands
    compose = (DEPLOY / "docker-compose.yml").read_text()
    assert "${HOTLINE_CONFIG:-/etc/hotline}:/etc/hotline" in compose and "${HOTLINE_STATE:-/var/lib/hotline}/bot" in compose


def test_rights_url_goes_to_both_settings_files_and_a_bad_one_is_refused(tmp_path):
    result = hotline("init", "chat.example.org", "--dir", str(tmp_path / "etc"), "--target", "systemd",
                     "--state-dir", str(tmp_path / "state"), "--rights-url", "https://example.org/rights")
    assert result.returncode == 0, result.stderr
    for name in ("bot.env", "webchat.env"):
        assert "HOTLINE_RIGHTS_URL=https://example.org/rights" in (tmp_path / "etc" / name).read_text()
    assert "--rights-url" not in (tmp_path / "etc/NEXT-STEPS.md").read_text()
    bad = hotline("init", "chat.example.org", "--dir", str(tmp_path / "other"), "--rights-url", "example.org")
    assert bad.returncode != 0 and bad.stderr.startswith("hotline init: --rights-url")
    without = make(tmp_path / "without")
    assert "HOTLINE_RIGHTS_URL in" in (without / "NEXT-STEPS.md").read_text()


async def test_check_public_url_reports_each_probe_and_never_crashes(tmp_path):
    """A proxy that answers HTML (nginx's own 404 pages) or nothing at all: FAIL lines, no traceback."""
    from aiohttp import web

    from hotline.admin import Files, check
    from hotline.devstack import free_port

    directory = make(tmp_path)

    async def html_404(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<html><body>404 Not Found</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", html_404)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        result = await check(Files.from_args(directory, None, None, None), public_url=f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
    failures = "\n".join(text for kind, text in result.lines if kind == "FAIL")
    assert "give the https:// address" in failures
    assert "/_matrix/client/versions answers HTTP 404" in failures
    assert "without the page's security headers" in failures
    assert f"http://127.0.0.1:{port} does not expose the admin API" in [t for k, t in result.lines if k == "ok"]
    closed = hotline("admin", "--dir", str(directory), "check", "--public-url", f"https://127.0.0.1:{free_port()}")
    assert closed.returncode != 0 and "Traceback" not in closed.stderr
    assert "does not answer" in closed.stdout and "FAILED" in closed.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
def test_nginx_bootstrap_site_passes_nginx_t_before_any_certificate(tmp_path):
    site = proxy.nginx_bootstrap_site("chat.example.org", http_port=18081, acme_root=str(tmp_path / "acme"))
    conf = nginx_wrapper(tmp_path, site.replace("/var/log/nginx/hotline-error.log", str(tmp_path / "nginx/error.log")))
    result = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path / "nginx")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    full = proxy.nginx_site("chat.example.org", "127.0.0.1:8008", "127.0.0.1:8080", http_port=18082, https_port=18443)
    conf = nginx_wrapper(tmp_path, full.replace("/var/log/nginx/hotline-error.log", str(tmp_path / "nginx/error.log")))
    refused = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path / "nginx")],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "letsencrypt" in refused.stderr  # why the bootstrap site exists
