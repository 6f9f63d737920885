"""Every benchmark module imports: `make bench` runs them all, and CI does not run them."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "bench").glob("*.py")
               if not p.stem.startswith("_"))


def test_there_are_benchmarks():
    assert {"latency", "first_contact", "capacity", "page", "erase"} <= set(BENCH)


@pytest.mark.parametrize("name", BENCH)
def test_benchmark_module_imports(name):
    importlib.import_module(f"bench.{name}")
