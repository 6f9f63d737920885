"""The page's texts: catalogs (one JSON file per language) and the optional questions. Pure.

A catalog is a flat JSON object of strings, named ``<language tag>.json``. ``_name`` is the
language's own name (shown in the language menu), ``_dir`` is ``ltr`` or ``rtl``. The shipped
English catalog (``webchat/i18n/en.json``) has every key; another catalog may leave keys out
(the English text is shown for them). A program's own directory (``HOTLINE_CATALOG_DIR``) adds
languages or overrides single texts of a shipped one. See docs/page.md.

Questions (``webchat/questions.json`` or ``HOTLINE_QUESTIONS_FILE``) name only ids and answer
ids; their texts are the catalog keys ``q.<id>``, ``q.<id>.why`` and ``q.<id>.<answer>``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$")
ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ANSWER_ID = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
BASE = "en"
PREFER_NOT = "prefer_not"
WHEN = ("before", "after")
MAX_QUESTIONS = 12
MAX_ANSWERS = 16


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    id: str
    when: str  # "before" the chat or "after" it (the satisfaction survey)
    answers: tuple[str, ...]  # answer ids; PREFER_NOT is always offered too
    language: bool = False  # the preferred-language question: answers are chat languages

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "when": self.when, "answers": list(self.answers), "language": self.language}


def _read_json(path: Path | Any, what: str) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogError(f"{what}: cannot be read ({type(error).__name__})") from None
    except ValueError as error:
        raise CatalogError(f"{what}: not valid JSON ({error})") from None


def _catalog_files(directory: Path | Any) -> dict[str, Any]:
    files = {}
    for entry in directory.iterdir():
        if entry.name.endswith(".json"):
            tag = entry.name[: -len(".json")]
            if not TAG.match(tag):
                raise CatalogError(f"{entry.name}: the file name must be a language tag like es.json or pt-BR.json")
            files[tag] = entry
    return files


def shipped_directory() -> Any:
    return resources.files("webchat").joinpath("i18n")


def _check(tag: str, data: Any, base: dict[str, str] | None) -> dict[str, str]:
    what = f"catalog {tag}.json"
    if not isinstance(data, dict):
        raise CatalogError(f"{what}: must be a JSON object of texts")
    for key, value in data.items():
        if not isinstance(value, str):
            raise CatalogError(f"{what}: {key!r} must be a string")
        if base is None:
            continue
        if key not in base and not key.startswith("q."):
            raise CatalogError(f"{what}: unknown key {key!r}")
        if key in base:
            extra = set(PLACEHOLDER.findall(value)) - set(PLACEHOLDER.findall(base[key]))
            if extra:
                raise CatalogError(f"{what}: {key!r} uses {{{sorted(extra)[0]}}}, which the page does not fill in")
    if data.get("_dir", "ltr") not in ("ltr", "rtl"):
        raise CatalogError(f"{what}: _dir must be ltr or rtl")
    return data


def load_catalogs(extra: Path | None = None) -> dict[str, dict[str, str]]:
    """Every language's complete catalog: shipped, then the program's, then English for gaps."""
    shipped = _catalog_files(shipped_directory())
    english = _check(BASE, _read_json(shipped[BASE], f"catalog {BASE}.json"), None)
    layers: dict[str, dict[str, str]] = {}
    for tag, path in shipped.items():
        layers[tag] = _check(tag, _read_json(path, f"catalog {tag}.json"), english)
    if extra is not None:
        for tag, path in _catalog_files(extra).items():
            own = _check(tag, _read_json(path, f"catalog {path}"), english)
            layers[tag] = {**layers.get(tag, {}), **own}
    catalogs = {}
    for tag, texts in layers.items():
        if tag != BASE and "_name" not in texts:
            raise CatalogError(f"catalog {tag}.json: _name (the language's own name) is missing")
        catalogs[tag] = {**english, **({} if tag == BASE else {"_dir": "ltr"}), **texts}
    # The program's English overrides reach the other languages' gaps too.
    for tag, texts in catalogs.items():
        for key, value in catalogs[BASE].items():
            if key not in layers[tag] and not key.startswith("_"):
                texts[key] = value
    return catalogs


def default_questions_file() -> Any:
    return resources.files("webchat").joinpath("questions.json")


def load_questions(path: Path | None, catalogs: dict[str, dict[str, str]]) -> list[Question]:
    source = path if path is not None else default_questions_file()
    what = f"questions file {path}" if path is not None else "webchat/questions.json"
    data = _read_json(source, what)
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise CatalogError(f'{what}: must be {{"questions": [...]}}')
    if len(items) > MAX_QUESTIONS:
        raise CatalogError(f"{what}: at most {MAX_QUESTIONS} questions")
    questions: list[Question] = []
    for number, item in enumerate(items, 1):
        where = f"{what}: question {number}"
        if not isinstance(item, dict) or set(item) - {"id", "when", "answers", "language"}:
            raise CatalogError(f"{where}: must be an object with id, when, answers (or language: true)")
        qid, when = item.get("id"), item.get("when", "before")
        if not isinstance(qid, str) or not ID.match(qid):
            raise CatalogError(f"{where}: id must be like age_range (a-z, 0-9, _)")
        if when not in WHEN:
            raise CatalogError(f"{where}: when must be before or after")
        if any(q.id == qid for q in questions):
            raise CatalogError(f"{where}: id {qid!r} is used twice")
        language = item.get("language", False) is True
        if language:
            if when != "before" or "answers" in item or any(q.language for q in questions):
                raise CatalogError(f"{where}: the one language question is asked before the chat; "
                                   "its answers are HOTLINE_CHAT_LANGUAGES")
            answers: tuple[str, ...] = ()
        else:
            raw = item.get("answers")
            if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ANSWERS \
                    or not all(isinstance(a, str) and ANSWER_ID.match(a) and a != PREFER_NOT for a in raw) \
                    or len(set(raw)) != len(raw):
                raise CatalogError(f"{where}: answers must be 1 to {MAX_ANSWERS} different ids like under_18")
            answers = tuple(raw)
        keys = [f"q.{qid}", f"q.{qid}.why"] + [f"q.{qid}.{a}" for a in answers]
        for key in keys:
            if key not in catalogs[BASE]:
                raise CatalogError(f"{where}: no text {key!r} in the English catalog")
        questions.append(Question(qid, when, answers, language))
    return questions


def pick_language(accept_language: str, offered: list[str], default: str) -> str:
    """The best offered language for an Accept-Language header (quality order), else default."""
    wanted = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            wanted.append((-quality, position, tag.strip().lower()))
    lowered = {t.lower(): t for t in offered}
    for _, _, tag in sorted(wanted):
        if tag in lowered:
            return lowered[tag]
        primary = tag.split("-")[0]
        if primary in lowered:
            return lowered[primary]
        for candidate in offered:  # en-GB asked, only en-US offered
            if candidate.lower().split("-")[0] == primary:
                return candidate
    return default
