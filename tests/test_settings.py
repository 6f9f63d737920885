"""Bad settings stop start-up with one clear line naming the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("bot", {"HOTLINE_HOMESERVER_URL": "not a url"}, "HOTLINE_HOMESERVER_URL"),
    ("bot", {"HOTLINE_BOT_USER_ID": "hotline"}, "HOTLINE_BOT_USER_ID"),
    ("bot", {"HOTLINE_DISPATCH_ROOM": "#dispatch"}, "HOTLINE_DISPATCH_ROOM"),
    ("bot", {"HOTLINE_RECONNECT_GRACE_SECONDS": "-5"}, "HOTLINE_RECONNECT_GRACE_SECONDS"),
    ("webchat", {"HOTLINE_LISTEN_PORT": "99999"}, "HOTLINE_LISTEN_PORT"),
    ("webchat", {"HOTLINE_CHAT_PATH": "chat"}, "HOTLINE_CHAT_PATH"),
    ("webchat", {"HOTLINE_AS_TOKEN": None}, "HOTLINE_AS_TOKEN"),
    ("webchat", {"HOTLINE_BOT_MASTER_KEY": None}, "HOTLINE_BOT_MASTER_KEY"),
    ("webchat", {"HOTLINE_BOT_MASTER_KEY": "not-a-key"}, "HOTLINE_BOT_MASTER_KEY"),
]
GOOD = {
    "HOTLINE_HOMESERVER_URL": "http://127.0.0.1:1",
    "HOTLINE_BOT_USER_ID": "@hotline:example.org",
    "HOTLINE_BOT_PASSWORD": "secret-value",
    "HOTLINE_DATA_DIR": "/tmp/unused",
    "HOTLINE_DISPATCH_ROOM": "!abc",
    "HOTLINE_AS_TOKEN": "token-value",
    "HOTLINE_BOT_MASTER_KEY": "A" * 43,
}


@pytest.mark.parametrize(("program", "change", "named"), CASES)
def test_bad_setting_is_named_in_one_line(program, change, named):
    env = {k: v for k, v in (GOOD | change).items() if v is not None}
    env["PATH"] = "/usr/bin:/bin"
    result = subprocess.run([sys.executable, "-m", program], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "secret-value" not in result.stderr and "token-value" not in result.stderr


def test_configuration_doc_is_generated_from_the_models():
    from pathlib import Path

    from hotline.config_docs import render

    doc = Path(__file__).parent.parent / "docs" / "configuration.md"
    assert doc.read_text() == render(), "run: python -m hotline.config_docs > docs/configuration.md"
