"""The SLA clock on business hours: time counted only while open, deadlines that skip nights,
weekends and holidays, in the team's time zone across daylight-saving changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from plait.core.settings import BusinessHours
from plait.inbox.sla import (
    business_seconds,
    check_business_hours,
    deadline,
    open_periods,
    parse_interval,
)

HOUR = 3600.0
WEEKDAYS = BusinessHours()  # mon-fri 09:00-17:00, UTC
NEW_YORK = BusinessHours(timezone="America/New_York")
ALWAYS = BusinessHours(
    timezone="America/New_York",
    days={day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


# 2026-03-02 is a Monday; the US springs forward on Sunday 8 March and falls back on Sunday
# 1 November; Europe springs forward on Sunday 29 March.


def test_time_inside_one_open_interval_counts_in_full() -> None:
    assert business_seconds(WEEKDAYS, utc("2026-03-02T10:00"), utc("2026-03-02T12:00")) == 2 * HOUR


def test_time_outside_opening_hours_does_not_count() -> None:
    assert business_seconds(WEEKDAYS, utc("2026-03-02T06:00"), utc("2026-03-02T09:00")) == 0
    assert business_seconds(WEEKDAYS, utc("2026-03-02T17:00"), utc("2026-03-02T23:59")) == 0
    assert business_seconds(WEEKDAYS, utc("2026-03-07T08:00"), utc("2026-03-08T20:00")) == 0


def test_an_overnight_span_counts_the_evening_and_the_morning() -> None:
    seconds = business_seconds(WEEKDAYS, utc("2026-03-02T16:00"), utc("2026-03-03T10:00"))
    assert seconds == 2 * HOUR


def test_a_weekend_span_skips_saturday_and_sunday() -> None:
    seconds = business_seconds(WEEKDAYS, utc("2026-03-06T16:00"), utc("2026-03-09T10:00"))
    assert seconds == 2 * HOUR
    week = business_seconds(WEEKDAYS, utc("2026-03-02T00:00"), utc("2026-03-09T00:00"))
    assert week == 5 * 8 * HOUR


def test_an_end_before_the_start_is_no_time() -> None:
    assert business_seconds(WEEKDAYS, utc("2026-03-02T12:00"), utc("2026-03-02T10:00")) == 0
    assert business_seconds(WEEKDAYS, utc("2026-03-02T12:00"), utc("2026-03-02T12:00")) == 0


def test_holidays_are_closed() -> None:
    hours = BusinessHours(holidays=["2026-03-09"])
    seconds = business_seconds(hours, utc("2026-03-06T16:00"), utc("2026-03-10T10:00"))
    assert seconds == 2 * HOUR
    assert list(open_periods(hours, utc("2026-03-09T00:00"), utc("2026-03-10T00:00"))) == []


def test_several_intervals_a_day_leave_the_lunch_break_out() -> None:
    hours = BusinessHours(days={"mon": ["13:00-17:00", "09:00-12:00"]})
    seconds = business_seconds(hours, utc("2026-03-02T11:00"), utc("2026-03-02T14:00"))
    assert seconds == 2 * HOUR
    periods = list(open_periods(hours, utc("2026-03-02T00:00"), utc("2026-03-03T00:00")))
    assert periods == [
        (utc("2026-03-02T09:00"), utc("2026-03-02T12:00")),
        (utc("2026-03-02T13:00"), utc("2026-03-02T17:00")),
    ]


def test_a_night_shift_runs_through_midnight() -> None:
    hours = BusinessHours(days={"mon": ["22:00-24:00"], "tue": ["00:00-06:00"]})
    seconds = business_seconds(hours, utc("2026-03-02T23:00"), utc("2026-03-03T01:00"))
    assert seconds == 2 * HOUR
    assert deadline(hours, utc("2026-03-02T23:30"), 120) == utc("2026-03-03T01:30")


def test_opening_hours_are_in_the_teams_time_zone() -> None:
    paris = BusinessHours(timezone="Europe/Paris")
    periods = list(open_periods(paris, utc("2026-03-02T00:00"), utc("2026-03-03T00:00")))
    assert periods == [(utc("2026-03-02T08:00"), utc("2026-03-02T16:00"))]  # CET is UTC+1
    after = list(open_periods(paris, utc("2026-03-30T00:00"), utc("2026-03-31T00:00")))
    assert after == [(utc("2026-03-30T07:00"), utc("2026-03-30T15:00"))]  # CEST is UTC+2
    start = local("2026-03-02T09:30", "Europe/Paris")
    assert business_seconds(paris, start, start + timedelta(hours=1)) == HOUR


def test_opening_hours_follow_the_daylight_saving_change() -> None:
    before = list(open_periods(NEW_YORK, utc("2026-03-06T00:00"), utc("2026-03-07T00:00")))
    after = list(open_periods(NEW_YORK, utc("2026-03-09T00:00"), utc("2026-03-10T00:00")))
    assert before == [(utc("2026-03-06T14:00"), utc("2026-03-06T22:00"))]  # EST, UTC-5
    assert after == [(utc("2026-03-09T13:00"), utc("2026-03-09T21:00"))]  # EDT, UTC-4


def test_the_days_of_a_daylight_saving_change_last_23_and_25_hours() -> None:
    spring = business_seconds(
        ALWAYS, local("2026-03-08T00:00", "America/New_York"), utc("2026-03-09T04:00")
    )
    assert spring == 23 * HOUR
    autumn = business_seconds(
        ALWAYS, local("2026-11-01T00:00", "America/New_York"), utc("2026-11-02T05:00")
    )
    assert autumn == 25 * HOUR


def test_a_deadline_waits_for_opening_time() -> None:
    assert deadline(WEEKDAYS, utc("2026-03-02T07:00"), 30) == utc("2026-03-02T09:30")
    assert deadline(WEEKDAYS, utc("2026-03-02T10:00"), 30) == utc("2026-03-02T10:30")


def test_a_deadline_crosses_the_night_and_the_weekend() -> None:
    assert deadline(WEEKDAYS, utc("2026-03-02T16:30"), 60) == utc("2026-03-03T09:30")
    assert deadline(WEEKDAYS, utc("2026-03-06T16:30"), 60) == utc("2026-03-09T09:30")
    assert deadline(WEEKDAYS, utc("2026-03-07T12:00"), 60) == utc("2026-03-09T10:00")


def test_a_deadline_skips_closed_days_and_holidays() -> None:
    hours = BusinessHours(holidays=["2026-03-09", "2026-03-10"])
    assert deadline(hours, utc("2026-03-06T16:30"), 60) == utc("2026-03-11T09:30")


def test_a_deadline_of_several_business_days_ends_at_closing_time() -> None:
    assert deadline(WEEKDAYS, utc("2026-03-02T09:00"), 2 * 8 * 60) == utc("2026-03-03T17:00")
    assert deadline(WEEKDAYS, utc("2026-03-02T09:00"), 5 * 8 * 60 + 1) == utc("2026-03-09T09:01")


def test_a_deadline_across_the_daylight_saving_change() -> None:
    start = local("2026-03-06T16:30", "America/New_York")  # a Friday, EST
    due = deadline(NEW_YORK, start, 60)
    assert due == local("2026-03-09T09:30", "America/New_York")  # Monday, EDT
    assert due == utc("2026-03-09T13:30")


def test_no_deadline_without_a_target_or_when_never_open() -> None:
    assert deadline(WEEKDAYS, utc("2026-03-02T10:00"), 0) is None
    assert deadline(BusinessHours(days={}), utc("2026-03-02T10:00"), 60) is None


def test_deadlines_and_business_time_agree() -> None:
    rng = random.Random(6)
    hours = BusinessHours(
        timezone="Europe/Paris",
        days={
            "mon": ["09:00-12:00", "13:00-18:00"],
            "wed": ["08:00-20:00"],
            "sat": ["10:00-14:00"],
        },
        holidays=["2026-03-30", "2026-04-06"],
    )
    for _ in range(200):
        start = utc("2026-03-01T00:00") + timedelta(minutes=rng.randrange(60 * 24 * 60))
        minutes = rng.randrange(1, 3000)
        due = deadline(hours, start, minutes)
        assert due is not None
        assert business_seconds(hours, start, due) == pytest.approx(minutes * 60)
        assert business_seconds(hours, start, due - timedelta(seconds=1)) < minutes * 60


def test_intervals_parse_or_explain_themselves() -> None:
    assert parse_interval("09:00-17:30") == (time(9), time(17, 30))
    assert parse_interval(" 22:00 - 24:00 ") == (time(22), None)
    with pytest.raises(ValueError, match="is not HH:MM-HH:MM"):
        parse_interval("9 to 5")
    with pytest.raises(ValueError, match="closes before it opens"):
        parse_interval("17:00-09:00")


def test_business_hours_are_checked_whole() -> None:
    assert check_business_hours(NEW_YORK) is NEW_YORK
    with pytest.raises(ValueError, match="unknown weekday 'funday'"):
        check_business_hours(BusinessHours(days={"funday": ["09:00-17:00"]}))
    with pytest.raises(ValueError, match="is not HH:MM-HH:MM"):
        check_business_hours(BusinessHours(days={"mon": ["nine-five"]}))
    with pytest.raises(ValueError, match="day is out of range"):
        check_business_hours(BusinessHours(holidays=["2026-02-30"]))
    with pytest.raises(ZoneInfoNotFoundError):
        check_business_hours(BusinessHours(timezone="Mars/Olympus_Mons"))
