"""Opening hours as tables: weekly spans, holidays, the last-intake window, midnight, DST."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hotline_runtime.hours import ALWAYS, Schedule, ScheduleError, status

NY = ZoneInfo("America/New_York")
WEEKDAYS = Schedule.parse("mon-fri 09:00-17:00; sat 10:00-14:00", "America/New_York", "2026-12-25", 30)
OVERNIGHT = Schedule.parse("fri 20:00-24:00; sat 00:00-06:00", "America/New_York")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


CASES = [
    # (schedule, now, open, accepting, closes_at, next_open)
    (WEEKDAYS, "2026-11-30 08:59", False, False, None, "2026-11-30 09:00"),  # Monday morning
    (WEEKDAYS, "2026-11-30 09:00", True, True, "2026-11-30 17:00", None),
    (WEEKDAYS, "2026-11-30 16:29", True, True, "2026-11-30 17:00", None),
    (WEEKDAYS, "2026-11-30 16:30", True, False, "2026-11-30 17:00", None),  # last 30 minutes: no new chats
    (WEEKDAYS, "2026-11-30 17:00", False, False, None, "2026-12-01 09:00"),
    (WEEKDAYS, "2026-12-05 11:00", True, True, "2026-12-05 14:00", None),  # Saturday
    (WEEKDAYS, "2026-12-06 11:00", False, False, None, "2026-12-07 09:00"),  # Sunday: closed
    (WEEKDAYS, "2026-12-24 18:00", False, False, None, "2026-12-26 10:00"),  # holiday skipped
    (OVERNIGHT, "2026-12-04 23:00", True, True, "2026-12-05 06:00", None),  # across midnight
    (OVERNIGHT, "2026-12-05 05:45", True, False, "2026-12-05 06:00", None),
    (Schedule.parse(ALWAYS), "2026-12-05 05:45", True, True, None, None),
]


@pytest.mark.parametrize(("schedule", "now", "is_open", "accepting", "closes_at", "next_open"), CASES)
def test_status(schedule, now, is_open, accepting, closes_at, next_open):
    result = status(schedule, at(now))
    assert (result.open, result.accepting) == (is_open, accepting)
    if closes_at:
        assert result.closes_at == at(closes_at)
    if next_open:
        assert result.next_open == at(next_open)
    else:
        assert result.next_open is None


def test_daylight_saving_keeps_wall_clock_hours():
    schedule = Schedule.parse("mon-sun 09:00-17:00", "America/New_York")
    summer = status(schedule, datetime(2026, 7, 1, 13, 30, tzinfo=ZoneInfo("UTC")))  # 09:30 EDT
    winter = status(schedule, datetime(2026, 12, 1, 13, 30, tzinfo=ZoneInfo("UTC")))  # 08:30 EST
    assert summer.open and not winter.open


@pytest.mark.parametrize("bad", ["mon 9-17", "funday 09:00-10:00", "fri-mon 09:00-10:00", "mon 17:00-09:00",
                                 "mon", "mon 09:00-25:00"])
def test_bad_schedules_are_refused(bad):
    with pytest.raises(ScheduleError):
        Schedule.parse(bad)


def test_bad_zone_and_holiday():
    with pytest.raises(ScheduleError):
        Schedule.parse(ALWAYS, "Mars/Olympus")
    with pytest.raises(ScheduleError):
        Schedule.parse(ALWAYS, "UTC", "25/12/2026")
