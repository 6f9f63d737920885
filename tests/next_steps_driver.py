"""NEXT-STEPS.md's systemd path, run as a script on a machine of its own (tests/test_next_steps.py).

Run by the test inside fresh mount, network and PID namespaces (``unshare``), as root:

- the machine: a copy of /etc, empty /run and /var, its own loopback (so ports 80, 443, 5432, 8008
  and 8080 are its own), ``hotline.test`` in /etc/hosts (the DNS step);
- what cannot run here is stood in for by small commands on PATH (``shim``): ``apt-get install``
  starts what Debian's packages start (a PostgreSQL cluster with Debian's authentication on port
  5432, nginx with its default site); ``systemctl enable --now`` runs a unit's ExecStart under the
  unit's User= from the file in /etc/systemd/system; ``systemctl reload nginx`` reloads nginx;
  ``certbot certonly --webroot`` proves that the webroot is served over HTTP for the domain (the
  challenge), then writes a self-signed certificate where Let's Encrypt's would be and adds it to
  the system's CA bundle (so the check's TLS verification accepts it);
- then ``hotline init`` as the admin guide gives it, every ```sh block of the NEXT-STEPS.md it
  wrote, as written, in one ``bash -e`` script, and last a survivor's first message through
  nginx, which must alert the advocate the script added in the dispatch room (decrypted);
- then, as the gateway's user (its unit's User=), an attempt to read each secret of the bot and
  Synapse (bot.env, the bot's data directory, homeserver.yaml, the signing key...): each must be
  refused, while the gateway's own webchat.env reads.

When this process (PID 1 of the namespace) ends, every process of the machine ends with it.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DOMAIN = "hotline.test"
ROOT = Path(__file__).resolve().parent.parent
SHIMS = ("apt-get", "systemctl", "certbot")


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)


# --------------------------------------------------------------------------- the machine

def machine(work: Path) -> None:
    """Mounts and loopback of the test machine (we are root in new namespaces)."""
    run("ip", "link", "set", "lo", "up")
    etc = work / "etc"
    run("cp", "-a", "/etc", str(etc))
    run("mount", "--bind", str(etc), "/etc")
    with open("/etc/hosts", "a") as hosts:
        hosts.write(f"\n127.0.0.1 {DOMAIN}\n")
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
    nginx_lib = work / "nginx-lib"
    run("cp", "-a", "/var/lib/nginx", str(nginx_lib))
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/var")
    for directory in ("lib", "log/nginx", "www", "tmp", "cache", "spool"):
        Path("/var", directory).mkdir(parents=True, exist_ok=True)
    os.chmod("/var/tmp", 0o1777)
    os.symlink("/run", "/var/run")
    os.symlink("/run/lock", "/var/lock")
    run("cp", "-a", str(nginx_lib), "/var/lib/nginx")
    # Debian's nginx site and the postgres user come with the packages; the rest is empty.
    Path("/var/www/html").mkdir()


# --------------------------------------------------------------------------- the stand-ins

def shim(name: str, args: list[str]) -> int:
    work = Path(os.environ["HOTLINE_TEST_MACHINE"])
    if name == "apt-get":
        return apt_get(work, args)
    if name == "systemctl":
        return systemctl(work, args)
    if name == "certbot":
        return certbot(args)
    return 127


def apt_get(work: Path, args: list[str]) -> int:
    packages = [a for a in args if not a.startswith("-") and a != "install"]
    if args[:1] != ["install"]:
        print(f"apt-get (test stand-in): only `install` is expected, not {args}", file=sys.stderr)
        return 100
    for package in packages:
        if package == "postgresql":
            start_postgresql(work)
        elif package == "nginx":
            run("nginx")  # Debian starts it with its default site
        elif package != "certbot":  # certbot: the stand-in on PATH
            print(f"apt-get (test stand-in): unexpected package {package}", file=sys.stderr)
            return 100
    return 0


def start_postgresql(work: Path) -> None:
    """A cluster the way Debian's postgresql package leaves it: port 5432, socket in
    /run/postgresql, peer authentication on the socket, passwords (scram) over TCP."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))[-1]
    data = Path("/var/lib/postgresql/main")
    for directory in (data.parent, Path("/run/postgresql")):
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    run(*as_postgres, f"{binaries}/initdb", "-D", str(data), "--auth-local=peer", "--auth-host=scram-sha-256",
        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", cwd="/")
    run(*as_postgres, f"{binaries}/pg_ctl", "-D", str(data), "-l", str(work / "logs/postgresql.log"), "-w",
        "-o", "-c listen_addresses=localhost -p 5432 -k /run/postgresql -c fsync=off", "start", cwd="/")


def unit_file(name: str) -> dict[str, str]:
    path = Path("/etc/systemd/system") / (name if name.endswith(".service") else f"{name}.service")
    if not path.is_file():
        raise SystemExit(f"systemctl (test stand-in): Unit {path.name} not found.")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if value and key in ("User", "Group", "WorkingDirectory", "ExecStart"):
            values[key] = value
    return values


def systemctl(work: Path, args: list[str]) -> int:
    verb, rest = args[0], args[1:]
    if verb == "daemon-reload":
        return 0
    if verb == "reload" and rest == ["nginx"]:
        run("nginx", "-s", "reload")
        time.sleep(1)  # the master starts new workers with the new configuration
        return 0
    if verb == "enable" and rest[:1] == ["--now"]:
        for name in rest[1:]:
            unit = unit_file(name)
            log = open(work / "logs" / f"{name}.log", "ab")
            # The unit's ExecStart, as the unit's user, in its working directory.
            subprocess.Popen(["runuser", "-u", unit["User"], "-g", unit.get("Group", unit["User"]), "--",
                              *shlex.split(unit["ExecStart"])], cwd=unit.get("WorkingDirectory", "/"),
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return 0
    print(f"systemctl (test stand-in): unexpected {args}", file=sys.stderr)
    return 1


def certbot(args: list[str]) -> int:
    def value(flag: str) -> str:
        return args[args.index(flag) + 1]

    if args[:1] != ["certonly"] or "--webroot" not in args:
        print(f"certbot (test stand-in): expected certonly --webroot, not {args}", file=sys.stderr)
        return 1
    webroot, domain = Path(value("-w")), value("-d")
    # The HTTP-01 challenge: the token must come back from http://DOMAIN/.well-known/acme-challenge/.
    token = secrets.token_urlsafe(16)
    challenge = webroot / ".well-known/acme-challenge"
    challenge.mkdir(parents=True, exist_ok=True)
    (challenge / token).write_text(token)
    served, problem, deadline = "", "", time.monotonic() + 15  # Let's Encrypt, too, retries for a while
    try:
        while served != token and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{domain}/.well-known/acme-challenge/{token}",
                                            timeout=10) as answer:
                    served = answer.read().decode()
            except OSError as error:
                problem = str(error)
                time.sleep(0.5)
    finally:
        (challenge / token).unlink()
    if served != token:
        print(f"certbot (test stand-in): the challenge is not served ({problem or 'a wrong answer'})",
              file=sys.stderr)
        return 1
    live = Path("/etc/letsencrypt/live") / domain
    live.mkdir(parents=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={domain}",
        "-addext", f"subjectAltName=DNS:{domain}", "-keyout", str(live / "privkey.pem"),
        "-out", str(live / "fullchain.pem"))
    with open("/etc/ssl/certs/ca-certificates.crt", "a") as bundle:
        bundle.write((live / "fullchain.pem").read_text())
    print(f"Successfully received certificate (test stand-in, self-signed) for {domain}")
    return 0


# --------------------------------------------------------------------------- the script

def commands(next_steps: str) -> list[str]:
    return [line for block in re.findall(r"```sh\n(.*?)```", next_steps, re.S) for line in block.splitlines()
            if line.strip()]


async def survivor_alerts_the_dispatch_room(password: str) -> None:
    from dotenv import dotenv_values

    from testkit.clients import Advocate, Survivor, until

    dispatch = dotenv_values("/etc/hotline/bot.env")["HOTLINE_DISPATCH_ROOM"]
    advocate = Advocate(f"https://{DOMAIN}", f"@sam:{DOMAIN}", password)
    survivor = Survivor(f"https://{DOMAIN}/")
    try:
        await advocate.login()
        await until(lambda: dispatch in advocate.client.rooms, 60, "the advocate in the dispatch room")
        await survivor.start()
        await survivor.say("first message through nginx 3b7e")
        alert = await until(lambda: [b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")], 60,
                            "the dispatch alert")
        print(f"PROBE OK: {alert[0].splitlines()[0]}")
    finally:
        await survivor.close()
        await advocate.close()


def gateway_cannot_read_the_others_secrets() -> list[str]:
    """As the gateway's user (the User= of its unit, as systemctl ran it), try to read every secret
    of the bot and Synapse: each must be refused. Returns what went wrong (empty: all refused)."""
    import yaml
    from dotenv import dotenv_values

    unit = unit_file("hotline-webchat")
    user, group = unit["User"], unit.get("Group", unit["User"])
    if user in (unit_file("hotline-bot")["User"], unit_file("hotline-synapse")["User"]):
        return [f"the gateway runs as {user}, the user of another service"]
    data_dir = Path(dotenv_values("/etc/hotline/bot.env")["HOTLINE_DATA_DIR"])
    homeserver = yaml.safe_load(Path("/etc/hotline/synapse/homeserver.yaml").read_text())
    secrets_of_others = ["/etc/hotline/secrets.yaml", "/etc/hotline/bot.env", "/etc/hotline/postgres-setup.sql",
                         "/etc/hotline/synapse/homeserver.yaml", "/etc/hotline/synapse/webchat-appservice.yaml",
                         homeserver["signing_key_path"], str(data_dir / "cross-signing.json"),
                         str(data_dir / "routing.db")]

    def read(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", user, "-g", group, "--", "cat", path], capture_output=True,
                              text=True)

    problems = []
    # The way of trying works: the gateway reads its own settings.
    if read("/etc/hotline/webchat.env").returncode != 0:
        problems.append(f"{user} cannot read its own webchat.env")
    for path in secrets_of_others:
        if not Path(path).is_file():
            problems.append(f"{path} does not exist: nothing was checked")
            continue
        attempt = read(path)
        if attempt.returncode == 0 or "Permission denied" not in attempt.stderr:
            problems.append(f"{user} can read {path}")
        else:
            print(f"LEAST PRIVILEGE: {user} cannot read {path}")
    return problems


def main(work: Path, venv: Path) -> int:
    work.chmod(0o755)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "logs").chmod(0o1777)  # the services write there as their own users
    shims = work / "bin"
    shims.mkdir()
    for name in SHIMS:
        (shims / name).write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m tests.next_steps_driver "
                                  f"shim {name} \"$@\"\n")
        (shims / name).chmod(0o755)
    machine(work)
    env = {"PATH": f"{shims}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", "HOTLINE_TEST_MACHINE": str(work)}
    # The admin guide's install step made the venv; its `hotline init` writes /etc/hotline.
    init = subprocess.run([str(venv / "bin/hotline"), "init", DOMAIN, "--target", "systemd", "--phone", "555 0100",
                           "--rights-url", f"https://{DOMAIN}/rights"], env=env, cwd="/root",
                          capture_output=True, text=True)
    print(init.stdout, init.stderr)
    if init.returncode != 0:
        return 1
    script = "set -euxo pipefail\n" + "\n".join(commands(Path("/etc/hotline/NEXT-STEPS.md").read_text())) + "\n"
    (work / "next-steps.sh").write_text(script)
    result = subprocess.run(["bash", str(work / "next-steps.sh")], env=env, cwd="/root", capture_output=True,
                            text=True, timeout=600)
    (work / "logs/next-steps.out").write_text(result.stdout + "\n--- stderr\n" + result.stderr)
    print(result.stdout)
    print(result.stderr[-6000:], file=sys.stderr)
    if result.returncode != 0:
        print(f"NEXT-STEPS failed with exit code {result.returncode}", file=sys.stderr)
        return 1
    passwords = dict(re.findall(r"Created (@\S+) \(\w+\).*?\nOne-time password \(shown only now\): (\S+)",
                                result.stdout, re.S))
    asyncio.run(survivor_alerts_the_dispatch_room(passwords[f"@sam:{DOMAIN}"]))
    problems = gateway_cannot_read_the_others_secrets()
    for problem in problems:
        print(f"LEAST PRIVILEGE FAILED: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("LEAST PRIVILEGE OK")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "shim":
        sys.exit(shim(sys.argv[2], sys.argv[3:]))
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
