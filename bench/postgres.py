"""A throwaway PostgreSQL cluster for the capacity benchmark: a temporary directory, 127.0.0.1 only,
run as the ``postgres`` user with initdb/pg_ctl, removed afterwards.

Debian's ``postgresql`` package is installed if it is missing (``apt-get install -y postgresql``).
Synapse needs psycopg2 (``pip install 'matrix-synapse[postgres]'``, in the ``bench`` extra).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from bench.common import log
from hotline.devstack import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    return shutil.which(name) or name


def ensure_installed() -> None:
    if glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return
    log("postgres: installing Debian's postgresql package")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hotline-bench-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.pid: int | None = None

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, cwd="/")

    def start(self) -> None:
        ensure_installed()
        shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o700)
        self._as_postgres(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                          "-E", "UTF8", "--locale=C")
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "postgres.log"), "-w",
                          "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200", "start")
        self._as_postgres(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          "-E", "UTF8", "--lc-collate=C", "--lc-ctype=C", "-T", "template0", "synapse")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        log(f"postgres: cluster on 127.0.0.1:{self.port} (pid {self.pid})")

    def point(self, homeserver_yaml: Path) -> None:
        """Rewrite the ``database`` key of a written homeserver.yaml to this cluster."""
        config = yaml.safe_load(homeserver_yaml.read_text())
        config["database"] = {
            "name": "psycopg2",
            "args": {"user": "postgres", "database": "synapse", "host": "127.0.0.1", "port": self.port,
                     "cp_min": 5, "cp_max": 10},
        }
        homeserver_yaml.write_text(yaml.safe_dump(config, sort_keys=False))

    def stop(self) -> None:
        try:
            self._as_postgres(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
