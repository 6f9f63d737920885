"""The two commands a newcomer types: `make demo` installs only what the demo runs, `make test`
installs the test tools too (read from make's dry run on a fresh environment)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(target: str, tmp_path: Path) -> str:
    return subprocess.run(["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_no_test_tools_and_make_test_does(tmp_path):
    demo = dry_run("demo", tmp_path)
    assert "-e '.[homeserver]'" in demo and "[test]" not in demo and "hotline demo" in demo
    test = dry_run("test", tmp_path)
    assert "-e '.[test]'" in test and "pytest" in test
