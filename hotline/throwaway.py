"""Throwaway helpers of Synapse's worker layout for tests and the dev stack, on loopback: Redis
(Debian's ``redis-server``) on a Unix socket, and nginx as the entrance that routes requests to
Synapse's processes, each from the same config pieces ``hotline init --workers`` writes
(``hotline.homeserver.redis_conf``, ``hotline.proxy.nginx_internal_site``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from hotline import proxy
from hotline.homeserver import redis_conf


def _program(name: str, package: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if found is None:
        raise RuntimeError(f"{name} was not found: install Debian's {package} package")
    return found


class _Child:
    """A child process in its own session, stopped with SIGTERM."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def _start(self, argv: list[str], log: Path) -> None:
        out = open(log, "ab")
        try:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    async def _wait_for(self, *, path: Path | None = None, port: int | None = None, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        assert self.process is not None
        while loop.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{type(self).__name__} exited with code {self.process.returncode}")
            try:
                if path is not None:
                    _, writer = await asyncio.open_unix_connection(str(path))
                else:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{type(self).__name__} did not start in {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class ThrowawayRedis(_Child):
    """redis-server with the hotline's configuration, on a Unix socket in a short temp directory
    (a socket path has at most 107 bytes), with a password, nothing on disk."""

    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password
        self.directory = Path(tempfile.mkdtemp(prefix="hotline-redis-"))
        self.socket = self.directory / "redis.sock"

    def synapse_section(self) -> dict[str, str]:
        """Synapse's ``redis:`` section (without ``enabled``)."""
        return {"path": str(self.socket), "password": self.password}

    async def start(self) -> None:
        conf = self.directory / "redis.conf"
        conf.write_text(redis_conf(password=self.password, unix_socket=str(self.socket), directory=str(self.directory)))
        conf.chmod(0o600)
        self._start([_program("redis-server", "redis-server"), str(conf)], self.directory / "redis.log")
        await self._wait_for(path=self.socket)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class LoopbackEntrance(_Child):
    """nginx running ``proxy.nginx_internal_site``: the bot's, the gateway's and the tests' way
    in to Synapse's processes, as in production."""

    def __init__(self, directory: Path, port: int, main: str, workers: tuple[str, ...]) -> None:
        super().__init__()
        self.directory = directory
        self.port = port
        self.main = main
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        error_log = self.directory / "error.log"
        await _run_nginx(self, self.directory, self.port, proxy.nginx_internal_site(
            self.main, self.workers, listen=f"127.0.0.1:{self.port}", error_log=str(error_log)))


class LoopbackFront(_Child):
    """nginx running ``proxy.nginx_gateway_front``: the page's way in to several gateways, each
    chat pinned to its own, with the routes of the generated proxy/nginx.conf."""

    def __init__(self, directory: Path, port: int, gateways: proxy.Gateways) -> None:
        super().__init__()
        self.directory = directory
        self.port = port
        self.gateways = gateways

    async def start(self) -> None:
        error_log = self.directory / "error.log"
        await _run_nginx(self, self.directory, self.port, proxy.nginx_gateway_front(
            self.gateways, listen=f"127.0.0.1:{self.port}", error_log=str(error_log)))


async def _run_nginx(child: _Child, prefix: Path, port: int, site: str) -> None:
    """nginx in the foreground with ``site`` as its only site, everything under ``prefix``."""
    prefix.mkdir(parents=True, exist_ok=True)
    error_log = prefix / "error.log"
    (prefix / "site.conf").write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(f"""{user}pid {prefix}/nginx.pid;
error_log {error_log} crit;
worker_processes 1;
events {{}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
""")
    child._start([_program("nginx", "nginx"), "-c", str(prefix / "nginx.conf"), "-p", str(prefix),
                  "-g", "daemon off;"], prefix / "nginx.stdout")
    await child._wait_for(port=port)
