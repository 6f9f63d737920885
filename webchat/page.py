"""The page's HTML with its JSON data block, per language. Pure (no I/O after start-up)."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from webchat.i18n import Question, load_catalogs, load_questions, pick_language
from webchat.settings import GatewaySettings


def _json_for_html(data: Any) -> str:
    # <, > and & escaped so that no text in the config can close the data block.
    return (
        json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


class Texts:
    """The offered catalogs and the questions, loaded (and checked) once at start-up."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        catalogs = load_catalogs(settings.catalog_dir)
        self.offered = settings.language_list  # the settings validator checked each has a catalog
        self.catalogs = {tag: catalogs[tag] for tag in self.offered + [settings.default_language]}
        questions = load_questions(settings.questions_file, catalogs)
        if not settings.service_room:
            # Without the service room answers could not be counted: do not ask for them.
            questions = [q for q in questions if q.language]
        if len(settings.chat_language_list) < 2:
            # One chat language: nothing to choose.
            questions = [q for q in questions if not q.language]
        self.questions: list[Question] = questions
        self.template = resources.files("webchat").joinpath("static/index.html").read_text("utf-8")

    def pick(self, accept_language: str) -> str:
        return pick_language(accept_language, self.offered, self.settings.default_language)

    def strings(self, tag: str) -> dict[str, str]:
        """The page's texts in one language: the keys without "_", which are about the catalog."""
        return {k: v for k, v in self.catalogs[tag].items() if not k.startswith("_")}

    def direction(self, tag: str) -> str:
        return self.catalogs[tag].get("_dir", "ltr")

    def catalog_json(self, tag: str) -> bytes:
        return json.dumps({"lang": tag, "dir": self.direction(tag), "strings": self.strings(tag)},
                          ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def config(self, tag: str, status: dict[str, Any]) -> dict[str, Any]:
        """What the page's script reads from its JSON data block."""
        s = self.settings
        base = s.chat_path
        return {
            "ws_path": base + "ws",
            "status_path": base + "status",
            "answers_path": base + "answers",
            "i18n_path": base + "i18n/",
            "exit_url": str(s.exit_url),
            "hotline_phone": s.hotline_phone,
            "program_name": s.program_name,
            "rights_url": str(s.rights_url) if s.rights_url else "",
            "max_message_chars": s.max_message_chars,
            "max_message_bytes": s.max_message_bytes,
            "timezone": s.timezone,
            "status": status,
            "status_poll_seconds": s.status_poll_seconds,
            "lang": tag,
            "dir": self.direction(tag),
            "languages": [{"tag": t, "name": self.catalogs[t].get("_name", t)} for t in self.offered],
            "chat_languages": s.chat_language_list,
            "questions": [q.to_json() for q in self.questions],
            "strings": self.strings(tag),
        }

    def render(self, tag: str, status: dict[str, Any]) -> bytes:
        page = (
            self.template.replace("{{CONFIG_JSON}}", _json_for_html(self.config(tag, status)))
            .replace("{{TITLE}}", html.escape(self.settings.page_title))
            .replace("{{LANG}}", html.escape(tag))
            .replace("{{DIR}}", self.direction(tag))
        )
        return page.encode("utf-8")
