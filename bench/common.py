"""What every benchmark shares: a real stack, timed survivors and advocates, statistics, output.

The survivor and advocate helpers of ``testkit/clients.py`` are reused; the subclasses here only add
an arrival time to every frame or decrypted message, taken in the receiving callback (never by
polling), and futures to wait on a given text.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from nio import RoomMessageNotice, RoomMessageText, SyncResponse

from hotline.devstack import DevStack
from testkit.clients import Advocate, Survivor

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "performance"
RESULTS = OUT / "results.json"

now = time.perf_counter


# ---------------------------------------------------------------- statistics

def pct(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0–100), linear interpolation; NaN for no values."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99),
            "mean": statistics.fmean(ms) if ms else float("nan"), "max": max(ms) if ms else float("nan")}


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    if len(xs) < 2:
        return float("nan")
    return statistics.linear_regression(xs, ys).slope


def table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) if isinstance(v, str) else c.rjust(w) for c, w, v in zip(row, widths, raw))
              for row, raw in zip(cells, rows)]
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    return text


def save_result(name: str, data: dict[str, Any]) -> None:
    """Merge one benchmark's figures into docs/performance/results.json."""
    OUT.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = data | {"finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    results["machine"] = machine()
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    lscpu = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in run("lscpu").splitlines())}
    versions = {}
    for package in ("matrix-synapse", "matrix-nio", "vodozemac", "aiohttp", "playwright", "psycopg2"):
        try:
            from importlib.metadata import version
            versions[package] = version(package)
        except Exception:
            versions[package] = "?"
    return {
        "nproc": run("nproc"),
        "cpu": lscpu.get("Model name", platform.processor()),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": run("/usr/lib/postgresql/15/bin/postgres", "--version") if Path(
            "/usr/lib/postgresql/15/bin/postgres").exists() else run("postgres", "--version"),
        "chromium": run("/usr/bin/chromium", "--version") if Path("/usr/bin/chromium").exists() else "",
        "versions": versions,
        "load_average": os.getloadavg(),
        "product_code": os.environ.get("HOTLINE_BENCH_SOURCE")
        or "working tree at " + run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
    }


# ---------------------------------------------------------------- processes

class ProcessMeter:
    """CPU seconds and RSS of the stack's processes (and their children) between two marks."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._mark: dict[str, float] = {}
        self._t = 0.0
        self._system_mark: Any = None

    def _cpu(self, name: str) -> float:
        proc = self.procs[name]
        total = 0.0
        try:
            family = [proc] + proc.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0.0
        for p in family:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss_mib(self, name: str) -> float:
        try:
            return self.procs[name].memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            return float("nan")

    def mark(self) -> None:
        self._t = now()
        self._mark = {name: self._cpu(name) for name in self.procs}
        self._system_mark = psutil.cpu_times()

    def cpu_percent(self) -> dict[str, float]:
        """CPU % of one core per process since mark(), plus 'machine' (all processes, % of all cores)."""
        elapsed = max(now() - self._t, 1e-6)
        out = {name: 100 * (self._cpu(name) - self._mark[name]) / elapsed for name in self.procs}
        after = psutil.cpu_times()
        busy = lambda t: t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
        total = lambda t: busy(t) + t.idle + getattr(t, "iowait", 0)
        span = total(after) - total(self._system_mark)
        out["machine"] = 100 * (busy(after) - busy(self._system_mark)) / span if span > 0 else float("nan")
        return out


def stack_pids(stack: DevStack) -> dict[str, int]:
    pids = {name: p.pid for name, p in stack.processes.items()}
    assert stack.synapse.process is not None
    pids["synapse"] = stack.synapse.process.pid
    for worker, process in stack.synapse.workers.items():  # Synapse's worker layout, if any
        pids[f"synapse:{worker}"] = process.pid
    pids["driver"] = os.getpid()
    return pids


# ---------------------------------------------------------------- the stack

@asynccontextmanager
async def running_stack(name: str, *, advocates: int = 1, postgres: Any = None,
                        settings: dict[str, str] | None = None,
                        relaxed_rate_limits: bool = False, workers: int = 0) -> AsyncIterator[DevStack]:
    """A fresh DevStack in a temporary directory (Synapse on SQLite, or on ``postgres``; with
    ``workers``, Synapse's worker layout, every process on ``postgres``).

    Synapse's rate limits are the shipped ones unless the benchmark relaxes them, saying why
    (docs/performance.md lists which do)."""
    root = Path(tempfile.mkdtemp(prefix=f"hotline-bench-{name}-"))
    stack = DevStack(root / "stack", advocates=advocates, relaxed_rate_limits=relaxed_rate_limits,
                     settings={"log_level": "WARNING"} | (settings or {}), workers=workers)
    if postgres is not None:
        original = stack.synapse.start

        async def start_on_postgres(*args: Any, **kwargs: Any) -> None:
            postgres.point(stack.homeserver.config_path)
            await original(*args, **kwargs)

        stack.synapse.start = start_on_postgres  # type: ignore[method-assign]
    keep = bool(os.environ.get("HOTLINE_BENCH_KEEP"))
    try:
        log(f"{name}: starting Synapse ({'PostgreSQL' if postgres else 'SQLite'}), bot and gateway in {root}")
        await stack.start()
        yield stack
    except BaseException:
        keep = True  # the logs tell what went wrong
        log(f"{name}: failed; logs kept in {stack.logs}")
        raise
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- timed clients

class TimedSurvivor(Survivor):
    """A survivor whose frames carry their arrival time; wait for a text without polling."""

    def __init__(self, page_url: str) -> None:
        super().__init__(page_url)
        self.arrived: dict[str, float] = {}  # message text → arrival time
        self.acked: dict[str, float] = {}  # frame id → ack time
        self.first_at: dict[str, float] = {}  # frame type (or "message:<role>") → first arrival
        self._waiting: dict[str, asyncio.Future[float]] = {}

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            t = now()
            frame = json.loads(message.data)
            self.frames.append(frame)
            kind = frame.get("type", "")
            self.first_at.setdefault(kind, t)
            if kind == "message":
                self.first_at.setdefault(f"message:{frame.get('role')}", t)
                self._resolve(f"type:message:{frame.get('role')}", t)
                self.arrived[frame["text"]] = t
                self._resolve(frame["text"], t)
            elif kind == "ack":
                self.acked[frame["id"]] = t
            self._resolve(f"type:{kind}", t)

    def _resolve(self, key: str, t: float) -> None:
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(t)

    async def wait_text(self, text: str, timeout: float = 30.0) -> float:
        if text in self.arrived:
            return self.arrived[text]
        future = self._waiting.setdefault(text, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def wait_type(self, kind: str, timeout: float = 30.0) -> float:
        if kind in self.first_at:
            return self.first_at[kind]
        future = self._waiting.setdefault(f"type:{kind}", asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def send_text(self, text: str, frame_id: str) -> float:
        """Send a say frame; returns the time just before it left."""
        assert self.ws is not None
        t = now()
        await self.ws.send_json({"type": "say", "id": frame_id, "text": text})
        return t


class TimedAdvocate(Advocate):
    """An advocate (or any plain nio user) whose decrypted messages carry their arrival time."""

    def __init__(self, homeserver: str, user_id: str, password: str) -> None:
        super().__init__(homeserver, user_id, password)
        self.arrived: dict[str, tuple[str, float]] = {}  # body → (room, time decrypted)
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self.on_text: Any = None  # optional callback(room, body, t)

    async def login(self) -> None:
        """As testkit.clients.Advocate.login, but long-polling /sync for 30 s instead of 1 s: an idle
        client then costs Synapse and the driver nothing, and new events still wake it at once."""
        from nio import AsyncClient, LoginResponse

        from hotline_runtime.nio_sync import client_config, sync_loop

        # A crypto store of its own (testkit's Advocate makes one only in its own login).
        self.store = tempfile.mkdtemp(prefix="bench-advocate-store-")
        self.client = AsyncClient(self.homeserver, self.user_id, store_path=self.store, config=client_config())
        response = await self.client.login(self.password, device_name="bench client")
        assert isinstance(response, LoginResponse), response
        self._task = asyncio.create_task(sync_loop(self.client, self._on_sync, since=None, timeout_ms=30_000))

    async def _on_sync(self, response: SyncResponse) -> None:
        t = now()
        await super()._on_sync(response)
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                if isinstance(event, (RoomMessageText, RoomMessageNotice)):
                    self.arrived[event.body] = (room_id, t)
                    future = self._waiting.pop(event.body, None)
                    if future is not None and not future.done():
                        future.set_result(t)
                    if self.on_text is not None:
                        self.on_text(room_id, event.body, t)

    async def wait_text(self, body: str, timeout: float = 30.0) -> float:
        if body in self.arrived:
            return self.arrived[body][1]
        future = self._waiting.setdefault(body, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def send_text(self, room_id: str, text: str) -> float:
        """room_send (encrypt + PUT); returns the time just before it started."""
        t = now()
        # A simulated staff client, as in testkit/clients.py: it trusts the bot; the product's trust
        # policy is the bot's (bot/trust.py TrustPolicy), never this.
        response = await self.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text},
                                               ignore_unverified_devices=True)
        if not hasattr(response, "event_id"):
            raise RuntimeError(f"send failed: {response}")
        return t

    async def know_devices(self, user_id: str, timeout: float = 30.0) -> None:
        """Wait until this client has the devices of ``user_id``: a nio client that sends before
        that shares its Megolm key with none of them and never shares it later."""
        deadline = now() + timeout
        while not list(self.client.device_store.active_user_devices(user_id)):
            if now() > deadline:
                raise TimeoutError(f"{self.client.user_id} never learnt the devices of {user_id}")
            if self.client.should_query_keys:
                await self.client.keys_query()
            await asyncio.sleep(0.2)

    def forget(self, room_id: str) -> None:
        """Drop what was kept for a closed chat (long runs keep memory flat)."""
        self.messages.pop(room_id, None)
        for body in [b for b, (room, _) in self.arrived.items() if room == room_id]:
            del self.arrived[body]


class Team:
    """Advocates that claim chats; a chat's case room is found by the survivor's first message.

    Concurrency-safe: each opening survivor says ``hello <tag>`` and one advocate types ``!claim``
    (the oldest waiting chat); whoever's case room shows ``Survivor: hello <tag>`` holds that chat.
    """

    def __init__(self, advocates: list[TimedAdvocate], per_advocate: int = 1) -> None:
        """Claims go to the first advocate until it has made ``per_advocate`` of them, then to the
        next: as few simulated clients as the chats need (1 = round robin over all of them)."""
        self.advocates = advocates
        self.per_advocate = per_advocate
        self.case_of: dict[str, tuple[TimedAdvocate, str]] = {}
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._next = 0
        for advocate in advocates:
            advocate.on_text = self._watcher(advocate)

    def _watcher(self, advocate: TimedAdvocate) -> Any:
        def on_text(room: str, body: str, t: float) -> None:
            if body.startswith("Survivor: hello "):
                tag = body.removeprefix("Survivor: hello ")
                self.case_of[tag] = (advocate, room)
                future = self._waiting.pop(tag, None)
                if future is not None and not future.done():
                    future.set_result(None)
        return on_text

    @staticmethod
    async def _refused(advocate: TimedAdvocate, dispatch: str, before: int) -> str:
        """The bot's answer when it turns a claim down (limit reached), as soon as it comes."""
        while True:
            for _, _, body in advocate.messages[dispatch][before:]:
                if body.startswith("You already have"):
                    return body
            await asyncio.sleep(0.2)

    async def open_chat(self, stack: DevStack, tag: str, timeout: float = 90) -> tuple[TimedSurvivor, TimedAdvocate, str]:
        survivor = TimedSurvivor(stack.page_url)
        try:
            await survivor.start()
            await survivor.say(f"hello {tag}")
            claimer = self.advocates[(self._next // self.per_advocate) % len(self.advocates)]
            self._next += 1
            future = self._waiting.setdefault(tag, asyncio.get_running_loop().create_future())
            before = len(claimer.messages[stack.accounts.dispatch_room])
            await claimer.say(stack.accounts.dispatch_room, "!claim")
            refused = asyncio.create_task(self._refused(claimer, stack.accounts.dispatch_room, before))
            try:
                if tag not in self.case_of:
                    done, _ = await asyncio.wait({future, refused}, timeout=timeout,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if refused in done:
                        raise RuntimeError(f"the bot refused the claim: {refused.result()}")
                    if future not in done:
                        raise TimeoutError(f"no case room showed hello {tag}")
            finally:
                refused.cancel()
            advocate, case_room = self.case_of[tag]
            await survivor.wait_text("An advocate has joined the chat.", timeout)
        except BaseException:
            # A chat that did not open is ended from the page, so that it is erased too.
            try:
                await survivor.send({"type": "end"})
                await survivor.wait_type("ended", 30)
            except Exception:
                pass
            await survivor.close()
            raise
        return survivor, advocate, case_room


async def close_chat(advocate: TimedAdvocate, survivor: TimedSurvivor, case_room: str, timeout: float = 60) -> None:
    await advocate.say(case_room, "!close")
    try:
        await survivor.wait_type("ended", timeout)
    finally:
        await survivor.close()
        advocate.forget(case_room)


def plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def savefig(fig: Any, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path.relative_to(ROOT)}")
    return path
