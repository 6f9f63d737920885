"""One real hotline (Synapse, bot, gateway) for the whole test session, on loopback."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.devstack import DevStack
from testkit.clients import Survivor, login

GRACE_SECONDS = 4


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    keep = os.environ.get("HOTLINE_TEST_KEEP")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="hotline-test-"))
    settings = {"reconnect_grace_seconds": str(GRACE_SECONDS)}  # code words on, as in the demo and init
    hotline = DevStack(root / "stack", advocates=2, settings=settings)
    yield from running(hotline)


def running(hotline: DevStack) -> Iterator[DevStack]:
    """Start a stack, hand it out, stop it; its logs are checked by ``canaries``."""
    STACKS.append(hotline)
    try:
        asyncio.run(hotline.start())
        yield hotline
    finally:
        hotline.stop()


STACKS: list[DevStack] = []


@pytest.fixture
def canaries() -> Iterator[list[str]]:
    """Texts a test sends; afterwards none may appear in any log of the hotline's processes."""
    texts: list[str] = []
    yield texts
    logs = [path for hotline in STACKS
            for path in [*hotline.logs.glob("*.log"), *hotline.homeserver.directory.glob("*.log")]]  # every Synapse process
    for path in logs:
        if not path.exists():
            continue
        content = path.read_text(errors="replace")
        for text in texts:
            for line in text.splitlines():
                if len(line.strip()) >= 4:
                    assert line not in content, f"message text found in {path.name}"


@pytest.fixture
async def advocate(stack: DevStack):
    client = await login(stack, stack.accounts.advocates[0])
    yield client
    await client.close()


@pytest.fixture
async def survivor(stack: DevStack):
    page = Survivor(stack.page_url)
    yield page
    await page.close()


@pytest.fixture(scope="session")
def installed_venv() -> Iterator[Path]:
    """A fresh venv with a `git archive` of this checkout installed non-editable (tests/installed.py).

    Not under pytest's own temporary directory (0700): the systemd units of tests/test_next_steps.py
    run the venv's programs as the service user, as they would from /opt/hotline/venv."""
    import shutil

    from tests.installed import install

    root = Path(tempfile.mkdtemp(prefix="hotline-install-"))
    root.chmod(0o755)
    try:
        yield install(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
