"""The page for when chat cannot be reached: static HTML from the page's catalog. Pure.

The reverse proxy serves it when the gateway does not answer (``hotline init`` writes it as
``proxy/unavailable.html``; hotline/proxy.py). It says what the gateway's own page says when the
homeserver cannot be reached: chat is not available, the hotline number, the opening hours and the
other ways to get help, in the program's default language, with a "Leave quickly" link. It has no
script and no style of its own (the chat page's Content-Security-Policy allows neither inline), so
it shows even when nothing else of the hotline answers.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from hotline_runtime.hours import ALWAYS, DAYS, parse_weekly
from webchat.i18n import load_catalogs

DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class PageFacts:
    """The settings the page is made from (HOTLINE_… of webchat.env; defaults as the gateway's)."""

    program_name: str = "Support chat"
    hotline_phone: str = ""
    page_title: str = "Chat"
    exit_url: str = "https://www.wikipedia.org/"
    hours: str = ALWAYS
    timezone: str = "UTC"
    default_language: str = "en"
    catalog_dir: Path | None = None


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def hours_lines(hours: str, texts: dict[str, str]) -> list[str]:
    """The weekly hours in words, one line per open day; [] when chat is always open."""
    weekly = parse_weekly(hours)
    if all(weekly.get(day) == ((0, DAY_MINUTES),) for day in range(7)):
        return []
    lines = []
    for day, spans in sorted(weekly.items()):
        times = ", ".join(f"{_clock(start)}–{_clock(end)}" for start, end in spans)
        lines.append(texts["hours_day"].replace("{day}", texts[f"day_{DAYS[day]}"]).replace("{times}", times))
    return lines


def tel_href(phone: str) -> str:
    return "tel:" + re.sub(r"[^0-9+]", "", phone)


def unavailable_page(facts: PageFacts) -> str:
    catalogs = load_catalogs(facts.catalog_dir)
    tag = facts.default_language if facts.default_language in catalogs else "en"
    texts = catalogs[tag]
    e = html.escape

    def p(text: str) -> str:
        return f"<p>{e(text)}</p>"

    body = [
        f'<p><a href="{e(facts.exit_url)}" rel="noreferrer">{e(texts["leave"])}</a></p>',
        f"<h1>{e(facts.program_name)}</h1>",
        f"<h2>{e(texts['unavailable_title'])}</h2>",
        p(texts["down"]),
    ]
    if facts.hotline_phone:
        before, _, after = texts["call"].partition("{phone}")
        link = f'<a href="{e(tel_href(facts.hotline_phone))}" dir="ltr">{e(facts.hotline_phone)}</a>'
        body.append(f"<p>{e(before)}{link}{e(after)}</p>")
    body.append(f"<h2>{e(texts['hours_title'])}</h2>")
    lines = hours_lines(facts.hours, texts)
    if lines:
        body.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>")
        if len(lines) < 7:
            body.append(p(texts["hours_other_days"]))
        body.append(p(texts["hours_zone"].replace("{zone}", facts.timezone)))
    else:
        body.append(p(texts["hours_always"]))
    body += [f"<h2>{e(texts['other_help_title'])}</h2>", p(texts["other_help"])]
    direction = texts.get("_dir", "ltr")
    return (f'<!doctype html>\n<html lang="{e(tag)}" dir="{e(direction)}">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<meta name="referrer" content="no-referrer">\n'
            f"<title>{e(facts.page_title)}</title>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
