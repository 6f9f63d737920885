"""A throwaway PostgreSQL cluster for tests and the dev stack: loopback only, in a temp directory.

Uses the server binaries of Debian's ``postgresql`` package (``initdb``, ``pg_ctl``). PostgreSQL
refuses to run as root, so when we are root the cluster belongs to the ``postgres`` user and its
commands run through ``runuser``. Authentication is ``trust`` on 127.0.0.1 only: the cluster lives
as long as the test session and holds nothing but a test homeserver.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

DB_USER = "hotline"
DB_NAME = "synapse"


def server_binary(name: str) -> str:
    """Path of a PostgreSQL server program (``initdb``, ``pg_ctl``), newest version first."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0, reverse=True)
    found = shutil.which(name) or (candidates[0] if candidates else None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} was not found: install Debian's postgresql package")
    return found


def synapse_database(port: int, *, host: str = "127.0.0.1", user: str = DB_USER, name: str = DB_NAME,
                     password: str | None = None) -> dict[str, Any]:
    """Synapse's ``database:`` section for psycopg2."""
    args: dict[str, Any] = {"user": user, "dbname": name, "host": host, "port": port, "cp_min": 2, "cp_max": 10}
    if password is not None:
        args["password"] = password
    return {"name": "psycopg2", "args": args}


class ThrowawayPostgres:
    def __init__(self, port: int, user: str = DB_USER) -> None:
        self.port = port
        self.user = user
        self.directory: Path | None = None
        self._as_postgres = os.geteuid() == 0

    @property
    def data(self) -> Path:
        assert self.directory is not None
        return self.directory / "data"

    def _command(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else list(argv)

    async def _run(self, *argv: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._command(*argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {output.decode(errors='replace')[-800:]}")

    async def start(self) -> dict[str, Any]:
        """initdb, start on 127.0.0.1:port, create the database; returns Synapse's database config."""
        self.directory = Path(tempfile.mkdtemp(prefix="hotline-pg-"))
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        # Synapse needs UTF8 and the C collation.
        await self._run(server_binary("initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                        "-E", "UTF8", "--locale=C", "--no-sync")
        await self._run(*self._pg_ctl("start"))
        await self._run(server_binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, DB_NAME)
        return synapse_database(self.port, user=self.user)

    def _pg_ctl(self, action: str, *extra: str) -> list[str]:
        assert self.directory is not None
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        return [server_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "server.log"),
                "-o", options, *extra, "-w", "-t", "60", action]

    async def restart(self) -> None:
        """``pg_ctl restart -m fast``, as an upgrade or a configuration change would: every open
        connection is closed at once and the server is back a moment later on the same port."""
        await self._run(*self._pg_ctl("restart", "-m", "fast"))

    def stop(self) -> None:
        if self.directory is None:
            return
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._command(server_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
                           capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
