"""What every benchmark shares: a real stack, process meters, statistics, targets, output.

The timed survivors and advocates are in ``bench/clients.py``; every target a benchmark checks goes
through ``check`` here, which prints it with met / missed and keeps it for results.json and the
summary at the end of ``python -m bench``.
"""

from __future__ import annotations

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

import psutil

from hotline.devstack import DevStack

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "performance"
RESULTS = OUT / "results.json"

now = time.perf_counter

# Every survivor of a benchmark connects from 127.0.0.1: the gateway's per-address limits (chat
# starts per period, open connections) are raised where a benchmark opens more chats than they allow,
# as for many people behind one address.
ONE_ADDRESS = {"max_starts_per_address": "10000", "max_sockets_per_address": "10000"}


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


# ---------------------------------------------------------------- targets

CHECKED: list[dict[str, Any]] = []  # every target checked in this process, for the summary at the end
QUICK = {"on": False}  # set by ``python -m bench --quick``: targets are then marked as a smoke test


def check(benchmark: str, what: str, value: float, op: str, bound: float, unit: str = "",
          note: str = "") -> dict[str, Any]:
    """One target: ``value op bound`` (op ``<``, ``≤`` or ``≥``), printed with met / missed and kept for
    results.json and the summary. A missing value (NaN, None) is missed."""
    measured = float("nan") if value is None else float(value)
    met = {"<": measured < bound, "≤": measured <= bound, "≥": measured >= bound}[op]  # NaN: missed
    notes = [n for n in (note, "quick run, not a result" if QUICK["on"] else "") if n]
    line = (f"target {what} {op} {_figure(bound)}{unit}: {_figure(measured)}{unit} "
            f"{'met' if met else 'MISSED'}" + (f" ({'; '.join(notes)})" if notes else ""))
    record = {"benchmark": benchmark, "what": what, "value": measured, "op": op, "bound": bound,
              "unit": unit, "met": met, "note": "; ".join(notes), "line": line}
    CHECKED.append(record)
    log(f"{benchmark}: {line}")
    return record


def _figure(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")


def target_lines(targets: list[dict[str, Any]]) -> str:
    return "\n".join(t["line"] for t in targets)


def summary_of_targets() -> str:
    """Every target checked in this run, met or missed, one per line (printed at the end)."""
    met = sum(t["met"] for t in CHECKED)
    lines = [f"Targets: {met} met, {len(CHECKED) - met} missed"
             + (" (quick run: a smoke test, the figures mean nothing)" if QUICK["on"] else "")]
    lines += [f"  {t['benchmark']:<13} {t['line'].removeprefix('target ')}" for t in CHECKED]
    return "\n".join(lines)


def save_result(name: str, data: dict[str, Any], targets: list[dict[str, Any]] | None = None) -> None:
    """Merge one benchmark's figures (and its targets, met or missed) into docs/performance/results.json;
    the targets of every run are also appended to ``target_history``, so earlier runs stay readable."""
    OUT.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    finished = time.strftime("%Y-%m-%d %H:%M:%S")
    info = machine()
    results[name] = data | {"finished": finished, "targets": targets or []}
    results["machine"] = info
    if targets:
        results.setdefault("target_history", []).append(
            {"benchmark": name, "finished": finished, "product_code": info["product_code"],
             "quick": QUICK["on"], "targets": targets})
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
        self.pids = dict(pids)
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

    def cpu_seconds(self, names: Iterable[str]) -> float:
        """CPU seconds used by these processes (with their children) since mark()."""
        return sum(self._cpu(name) - self._mark[name] for name in names)

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
    for name in stack.gateway_ports:  # several gateways: g1 as "webchat", the others "webchat:gN"
        pids["webchat" if name == "g1" else f"webchat:{name}"] = pids.pop(f"webchat-{name}")
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
                        relaxed_rate_limits: bool = False, workers: int = 0,
                        gateways: int = 1) -> AsyncIterator[DevStack]:
    """A fresh DevStack in a temporary directory (Synapse on SQLite, or on ``postgres``; with
    ``workers``, Synapse's worker layout, every process on ``postgres``; with ``gateways`` > 1,
    that many gateways behind nginx, as `hotline init --gateways N`).

    Synapse's rate limits are the shipped ones unless the benchmark relaxes them, saying why
    (docs/performance.md lists which do)."""
    root = Path(tempfile.mkdtemp(prefix=f"hotline-bench-{name}-"))
    stack = DevStack(root / "stack", advocates=advocates, relaxed_rate_limits=relaxed_rate_limits,
                     settings={"log_level": "WARNING"} | (settings or {}), workers=workers, gateways=gateways)
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
