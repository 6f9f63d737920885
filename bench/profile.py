"""py-spy profiles of running processes, summarised: where each process spends its CPU.

``record`` samples several processes at once (``py-spy record --format raw --nonblocking``) and
returns, per process, the share of samples by package of the innermost frame (e.g. ``nio``,
``vodozemac``, ``aiohttp``, ``synapse``, ``twisted``, ``psycopg2``) and the top functions by own
time. Only the thread holding the GIL is sampled (``--gil``): Python CPU time, not waiting; C code
that releases the GIL (e.g. psycopg2 waiting on PostgreSQL) is not counted.
"""

from __future__ import annotations

import asyncio
import collections
import re
import shutil
import sys
import tempfile
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def package_of(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return rest.split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 1)[1]
        return "stdlib:" + rest.split("/", 1)[0].removesuffix(".py")
    for ours in ("bot", "webchat", "hotline"):
        if f"/{ours}/" in path:
            return ours
    return path.rsplit("/", 1)[-1]


def summarise(raw: str, top: int = 10) -> dict:
    by_package: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    ours_inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        # py-spy puts "process ..." / "thread ..." frames first when asked; skip anything unparsable
        parsed = [m for m in (FRAME.match(f) for f in frames) if m]
        if not parsed:
            continue
        total += n
        leaf = parsed[-1]
        by_package[package_of(leaf["file"])] += n
        by_function[f"{leaf['func']} ({package_of(leaf['file'])}/{Path(leaf['file']).name})"] += n
        seen = set()
        for m in parsed:
            if package_of(m["file"]) in ("bot", "webchat", "hotline"):
                key = f"{m['func']} ({Path(m['file']).parent.name}/{Path(m['file']).name})"
                if key not in seen:
                    seen.add(key)
                    ours_inclusive[key] += n
    share = lambda c: [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []
    return {"samples": total, "by_package": share(by_package), "top_self": share(by_function),
            "ours_inclusive": share(ours_inclusive)}


async def record(pids: dict[str, int], seconds: float, rate: int = 50) -> dict:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(tempfile.mkdtemp(prefix="hotline-bench-pyspy-"))
    procs = {}
    for name, pid in pids.items():
        procs[name] = await asyncio.create_subprocess_exec(
            exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
            "--format", "raw", "--nonblocking", "--gil", "--full-filenames", "--output", str(out / f"{name}.txt"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    results = {}
    for name, proc in procs.items():
        _, err = await proc.communicate()
        path = out / f"{name}.txt"
        if path.exists():
            results[name] = summarise(path.read_text()) | {"seconds": seconds}
        else:
            results[name] = {"error": err.decode(errors="replace")[-300:]}
    shutil.rmtree(out, ignore_errors=True)
    return results


def print_profiles(profiles: dict) -> str:
    lines = []
    for name, p in profiles.items():
        if "error" in p:
            lines.append(f"{name}: py-spy failed: {p['error']}")
            continue
        lines.append(f"{name}: {p['samples']} on-CPU samples in {p['seconds']:.0f} s")
        lines.append("  by package (innermost frame): " + ", ".join(f"{k} {v}%" for k, v in p["by_package"][:8]))
        lines.append("  top own time: " + "; ".join(f"{k} {v}%" for k, v in p["top_self"][:6]))
        if p["ours_inclusive"]:
            lines.append("  our code, inclusive: " + "; ".join(f"{k} {v}%" for k, v in p["ours_inclusive"][:6]))
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    return text
