"""Run the benchmarks: ``python -m bench [--quick] [--only NAME ...]`` (``make bench`` runs them all).

Each benchmark starts its own stack on loopback, prints a table, writes a PNG into
docs/performance/ and merges its figures into docs/performance/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.common import QUICK, log, machine, summary_of_targets

BENCHMARKS = ["page", "latency", "first_contact", "erase", "capacity"]
# What --source unpacks: every package the benchmarks import from the product and the test clients.
PACKAGES = ["hotline_runtime", "bot", "webchat", "hotline", "testkit"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small parameters: a smoke test of every benchmark")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS)
    parser.add_argument("--source", metavar="REV",
                        help="measure the product code (hotline_runtime, bot, webchat, hotline, testkit) of this git revision "
                             "instead of the working tree, e.g. HEAD while others edit the tree")
    args = parser.parse_args(argv)
    if args.source and not os.environ.get("HOTLINE_BENCH_SOURCE"):
        return _reexec_on(args.source, argv if argv is not None else sys.argv[1:])
    QUICK["on"] = args.quick
    info = machine()
    log(f"machine: {info['nproc']} cores ({info['cpu']}), {info['memory_gib']} GiB, load {info['load_average']}")
    failed = []
    for name in args.only:
        started = time.monotonic()
        log(f"=== {name}{' (quick)' if args.quick else ''}")
        module = importlib.import_module(f"bench.{name}")
        try:
            asyncio.run(module.run(quick=args.quick))
        except Exception:
            traceback.print_exc()
            failed.append(name)
        log(f"=== {name} took {time.monotonic() - started:.0f} s")
    print("\n" + summary_of_targets(), flush=True)
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


def _reexec_on(rev: str, argv: list[str]) -> int:
    """Unpack the product code of ``rev`` into a temporary directory and run again with it first
    on the path (the benchmarks themselves still come from this tree)."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=root, check=True,
                            capture_output=True, text=True).stdout.strip()
    target = Path(tempfile.mkdtemp(prefix=f"hotline-bench-src-{commit}-"))
    archive = subprocess.run(["git", "archive", commit, *PACKAGES], cwd=root,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    log(f"measuring the product code of {commit} (unpacked in {target})")
    env = dict(os.environ, HOTLINE_BENCH_SOURCE=commit,
               PYTHONPATH=os.pathsep.join([str(target), str(root)]))
    # cwd first on the path (python -m): the unpacked code, then this tree for bench/ itself.
    try:
        return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=target, env=env).returncode
    finally:
        shutil.rmtree(target, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
