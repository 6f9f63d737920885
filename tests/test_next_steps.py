"""NEXT-STEPS.md's systemd path run as a script, as written, from an empty machine to a survivor's
first message alerting the dispatch room, and the gateway's user refused the bot's and Synapse's
secrets: tests/next_steps_driver.py in its own namespaces, with
the package installed as the admin guide installs it (tests/installed.py), a PostgreSQL cluster
and nginx as Debian's packages set them up, and a self-signed certificate where certbot's would be.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMESPACES = ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private"]


def can_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root (useradd, runuser, mounts in its own namespaces)"
    for program in ("unshare", "nginx", "runuser", "useradd", "openssl", "ip"):
        if shutil.which(program) is None:
            return f"needs {program} (.ci/run installs nginx)"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return "needs Debian's postgresql package"
    if subprocess.run([*NAMESPACES, "true"], capture_output=True).returncode != 0:
        return "unshare cannot make namespaces here"
    return None


@pytest.mark.timeout(900)
def test_next_steps_as_written_end_with_checks_passing_and_a_survivor_alerting_dispatch(installed_venv):
    reason = can_run()
    if reason:
        pytest.skip(reason)
    work = Path(tempfile.mkdtemp(prefix="hotline-next-steps-"))
    result = subprocess.run([*NAMESPACES, sys.executable, "-m", "tests.next_steps_driver", str(work),
                             str(installed_venv)], cwd=ROOT, capture_output=True, text=True, timeout=840)
    logs = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                     for log in sorted((work / "logs").glob("*.log")))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:] + logs
    assert "All checks passed." in result.stdout
    assert "PROBE OK: Chat waiting" in result.stdout
    # The gateway's user was refused each secret of the bot and Synapse (next_steps_driver).
    assert "LEAST PRIVILEGE OK" in result.stdout
    for secret in ("bot.env", "cross-signing.json", "homeserver.yaml", "signing.key"):
        assert re.search(rf"LEAST PRIVILEGE: hotline-webchat cannot read \S*{re.escape(secret)}", result.stdout), secret
    # The script ran the units under the service user, and nothing printed a secret.
    assert "sudo" not in (work / "next-steps.sh").read_text()
    assert "first message through nginx 3b7e" not in logs
    synapse = (work / "logs/hotline-synapse.log").read_text()
    assert "STARTING SERVER" in synapse and "stats.enabled" not in synapse  # no deprecated setting
    shutil.rmtree(work, ignore_errors=True)
