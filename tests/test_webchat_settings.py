"""The gateway's page settings: a bad schedule, catalog or questions file stops start-up with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from webchat.i18n import CatalogError, load_catalogs, load_questions, pick_language

GOOD = {
    "HOTLINE_HOMESERVER_URL": "http://127.0.0.1:1",
    "HOTLINE_BOT_USER_ID": "@hotline:example.org",
    "HOTLINE_AS_TOKEN": "token-value",
    "HOTLINE_BOT_MASTER_KEY": "A" * 43,
    "PATH": "/usr/bin:/bin",
}


def start_with(change: dict[str, str]) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "webchat"], env=GOOD | change, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "token-value" not in result.stderr
    return result.stderr.strip().splitlines()


@pytest.mark.parametrize(("change", "named", "says"), [
    ({"HOTLINE_HOURS": "mon-fri 9-17"}, "HOTLINE_HOURS", "not like 09:00-17:00"),
    ({"HOTLINE_HOURS": "someday 09:00-17:00"}, "HOTLINE_HOURS", "unknown day"),
    ({"HOTLINE_TIMEZONE": "Mars/Olympus"}, "HOTLINE_TIMEZONE", "unknown time zone"),
    ({"HOTLINE_HOLIDAYS": "25.12.2026"}, "HOTLINE_HOLIDAYS", "not a date"),
    ({"HOTLINE_LAST_INTAKE_MINUTES": "-1"}, "HOTLINE_LAST_INTAKE_MINUTES", ""),
    ({"HOTLINE_LANGUAGES": "en,xx"}, "HOTLINE_LANGUAGES", "no catalog for 'xx'"),
    ({"HOTLINE_CHAT_LANGUAGES": "en,not a tag"}, "HOTLINE_CHAT_LANGUAGES", "not a language tag"),
    ({"HOTLINE_SERVICE_ROOM": "#service"}, "HOTLINE_SERVICE_ROOM", "room ID"),
    ({"HOTLINE_CATALOG_DIR": "/nonexistent"}, "HOTLINE_CATALOG_DIR", "not a directory"),
])
def test_bad_setting_is_named_in_one_line(change, named, says):
    lines = start_with(change)
    assert len(lines) == 1 and named in lines[0] and says in lines[0], lines


def test_bad_catalog_and_questions_are_named(tmp_path):
    catalogs = tmp_path / "catalogs"
    catalogs.mkdir()
    (catalogs / "es.json").write_text(json.dumps({"_name": "Español", "start_chat": "{nombre}"}))
    lines = start_with({"HOTLINE_CATALOG_DIR": str(catalogs)})
    assert len(lines) == 1 and "HOTLINE_CATALOG_DIR" in lines[0] and "{nombre}" in lines[0], lines
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps({"questions": [{"id": "pets", "answers": ["cat", "dog"]}]}))
    lines = start_with({"HOTLINE_QUESTIONS_FILE": str(questions)})
    assert len(lines) == 1 and "HOTLINE_QUESTIONS_FILE" in lines[0] and "q.pets" in lines[0], lines


@pytest.mark.parametrize(("content", "says"), [
    ("[]", "JSON object"),
    ("{not json", "not valid JSON"),
    ('{"_name": "X", "no_such_key": "y"}', "unknown key"),
    ('{"_name": "X", "_dir": "up"}', "_dir must be ltr or rtl"),
    ('{"start_chat": "Empezar"}', "_name"),
    ('{"_name": "X", "start_chat": 5}', "must be a string"),
])
def test_catalog_errors(tmp_path, content, says):
    (tmp_path / "es.json").write_text(content)
    with pytest.raises(CatalogError, match=says):
        load_catalogs(tmp_path)


def test_a_catalog_file_adds_a_language_and_falls_back_to_english(tmp_path):
    (tmp_path / "es.json").write_text(json.dumps({"_name": "Español", "start_chat": "Iniciar chat"}))
    (tmp_path / "en.json").write_text(json.dumps({"welcome": "Our own welcome."}))
    catalogs = load_catalogs(tmp_path)
    assert catalogs["es"]["start_chat"] == "Iniciar chat"
    assert catalogs["es"]["send"] == "Send"  # not translated yet: English
    assert catalogs["es"]["welcome"] == "Our own welcome."  # the program's English text, also as fallback
    assert catalogs["en"]["welcome"] == "Our own welcome."
    assert load_questions(None, catalogs)[0].language


@pytest.mark.parametrize(("header", "offered", "picked"), [
    ("es-MX,es;q=0.9,en;q=0.8", ["en", "es"], "es"),
    ("fr-CA, fr;q=0.9", ["en", "es"], "en"),
    ("en-GB", ["en-US", "es"], "en-US"),
    ("es;q=0.1, ar", ["en", "es", "ar"], "ar"),
    ("", ["en", "es"], "en"),
    ("*;q=0, es;q=garbage", ["en", "es"], "en"),
])
def test_language_from_the_browser(header, offered, picked):
    assert pick_language(header, offered, "en") == picked
