"""Opening hours: a weekly schedule in the program's time zone, holidays, the last-intake window.

Pure: pass the current time in. The gateway uses it (what the page says, whether "Start chat"
may start a chat); it lives in the runtime because it depends on neither process.

Schedule text, as in the settings: ``"mon-fri 09:00-17:00, 18:00-22:00; sat 10:00-14:00"``. Days
are ``mon tue wed thu fri sat sun``, singly or as a range; ``24:00`` ends a day; a day not
named is closed. ``"mon-sun 00:00-24:00"`` is always open (the default). Holidays are dates on
which chat is closed all day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = "mon-sun 00:00-24:00"
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class ScheduleError(ValueError):
    pass


Minutes = tuple[int, int]  # [start, end) in minutes since midnight


@dataclass(frozen=True)
class Schedule:
    zone: ZoneInfo
    weekly: dict[int, tuple[Minutes, ...]]
    holidays: frozenset[date] = field(default_factory=frozenset)
    last_intake_minutes: int = 30

    @classmethod
    def parse(cls, hours: str, zone: str = "UTC", holidays: str = "", last_intake_minutes: int = 30) -> Schedule:
        try:
            tz = ZoneInfo(zone)
        except Exception as error:
            raise ScheduleError(f"unknown time zone {zone!r}") from error
        return cls(tz, parse_weekly(hours), parse_holidays(holidays), last_intake_minutes)


@dataclass(frozen=True)
class Status:
    open: bool  # chats already open continue; the page may say "open"
    accepting: bool  # a new chat may start now (open, and not in the last-intake window)
    closes_at: datetime | None  # when the current opening ends (aware, program's zone)
    next_open: datetime | None  # when chat opens next, if it is not open now


def parse_weekly(text: str) -> dict[int, tuple[Minutes, ...]]:
    weekly: dict[int, list[Minutes]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        days_text, _, spans_text = part.partition(" ")
        days = _parse_days(days_text.strip().lower())
        spans = [_parse_span(s.strip()) for s in spans_text.split(",") if s.strip()]
        if not spans:
            raise ScheduleError(f"no hours for {days_text!r}")
        for day in days:
            weekly.setdefault(day, []).extend(spans)
    return {day: tuple(sorted(spans)) for day, spans in weekly.items()}


def _parse_days(text: str) -> list[int]:
    if "-" in text:
        first, _, last = text.partition("-")
        if first not in DAYS or last not in DAYS:
            raise ScheduleError(f"unknown day in {text!r}")
        start, end = DAYS.index(first), DAYS.index(last)
        if end < start:
            raise ScheduleError(f"day range {text!r} runs backwards")
        return list(range(start, end + 1))
    if text not in DAYS:
        raise ScheduleError(f"unknown day {text!r}")
    return [DAYS.index(text)]


def _parse_span(text: str) -> Minutes:
    match = _SPAN.match(text)
    if not match:
        raise ScheduleError(f"hours {text!r} are not like 09:00-17:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or start >= 24 * 60 or end > 24 * 60 or end <= start:
        raise ScheduleError(f"hours {text!r} are not a span within one day")
    return start, end


def parse_holidays(text: str) -> frozenset[date]:
    days = set()
    for item in filter(None, (i.strip() for i in text.replace(";", ",").split(","))):
        try:
            days.add(date.fromisoformat(item))
        except ValueError as error:
            raise ScheduleError(f"holiday {item!r} is not a date like 2026-12-25") from error
    return frozenset(days)


def _openings(schedule: Schedule, day: date) -> list[tuple[datetime, datetime]]:
    if day in schedule.holidays:
        return []
    midnight = datetime.combine(day, time(0), tzinfo=schedule.zone)
    return [
        (_at(midnight, start), _at(midnight, end))
        for start, end in schedule.weekly.get(day.weekday(), ())
    ]


def _at(midnight: datetime, minutes: int) -> datetime:
    # Wall-clock time on that day in the program's zone (DST-aware); 24:00 is the next midnight.
    day = midnight.date() + timedelta(days=minutes // (24 * 60))
    minutes %= 24 * 60
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=midnight.tzinfo)


def status(schedule: Schedule, now: datetime) -> Status:
    """Whether chat is open at ``now`` (an aware datetime), and when that changes."""
    local = now.astimezone(schedule.zone)
    today = local.date()
    # Openings that touch now, merged across midnight (e.g. sun 20:00-24:00 + mon 00:00-08:00).
    spans = sorted(span for offset in (-1, 0) for span in _openings(schedule, today + timedelta(days=offset)))
    for start, end in spans:
        if start <= local < end:
            closes_at = _merged_end(schedule, end)
            window = timedelta(minutes=schedule.last_intake_minutes)
            return Status(True, local < closes_at - window, closes_at, None)
    for offset in range(0, 15):
        for start, _ in sorted(_openings(schedule, today + timedelta(days=offset))):
            if start > local:
                return Status(False, False, None, start)
    return Status(False, False, None, None)


def _merged_end(schedule: Schedule, end: datetime) -> datetime:
    """An opening that ends at midnight and continues the next day ends later."""
    for _ in range(14):
        following = [s for s in _openings(schedule, end.date()) if s[0] == end]
        if not following:
            return end
        end = following[0][1]
    return end
