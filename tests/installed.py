"""The package as an admin installs it: a `git archive` of this checkout, installed non-editable
(``pip install 'DIR[production]'``) into a fresh venv. Used by tests/test_install.py and
tests/test_next_steps.py.

The archive is of the committed tree plus the uncommitted changes of tracked files (``git stash
create``); a new module that is not yet tracked is missing from it, as it would be from a release.
pip's cache makes a repeated install take about half a minute.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hotline_runtime", "bot", "webchat", "hotline")


def git_tree() -> str | None:
    """The commit to export: HEAD with the working tree's changes to tracked files, if any."""
    if shutil.which("git") is None:
        return None
    head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        return None
    stash = subprocess.run(["git", "stash", "create"], cwd=ROOT, capture_output=True, text=True, check=True)
    return stash.stdout.strip() or head.stdout.strip()


def install(root: Path, extra: str = "production") -> Path:
    """Export the checkout into ROOT/src, install it into the fresh venv ROOT/venv; returns the venv."""
    tree = git_tree()
    if tree is None:
        raise RuntimeError("not a git checkout: the install test exports the checkout with git archive")
    source = root / "src"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", tree], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(source, filter="data")
    venv = root / "venv"
    subprocess.run([system_python(), "-m", "venv", str(venv)], check=True)
    result = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", f"{source}[{extra}]"],
                            capture_output=True, text=True, timeout=900, cwd=root)
    if result.returncode != 0:
        raise RuntimeError(f"pip install failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return venv


def system_python() -> str:
    """Debian's python3 (what the admin guide's `python3 -m venv` uses) if it is new enough; else
    the interpreter that runs the tests. The venv's programs must be usable by the service user."""
    debian = Path("/usr/bin/python3")
    if debian.exists():
        check = subprocess.run([str(debian), "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
                               capture_output=True)
        if check.returncode == 0:
            return str(debian)
    return sys.executable


def source_modules() -> list[str]:
    """Every module of the three packages, as the checkout has them."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names
