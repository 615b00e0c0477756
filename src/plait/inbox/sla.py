"""SLA clocks on business hours: when a deadline falls, and how much business time passed.

Plain functions over :class:`~plait.core.settings.BusinessHours`: opening intervals per
weekday in the team's time zone, minus holidays. Times in and out are UTC-aware.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from plait.core.settings import BusinessHours

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3 * 366
"""How far a clock looks ahead or behind before deciding the calendar is always closed."""

Interval = tuple[time, time | None]
"""Opening and closing time; a closing time of None is midnight at the end of the day."""


@lru_cache(maxsize=32)
def _weekly(days: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[Interval, ...], ...]:
    week: list[list[Interval]] = [[] for _ in WEEKDAYS]
    for day, spans in days:
        if day not in WEEKDAYS:
            raise ValueError(f"business hours: unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
        for span in spans:
            week[WEEKDAYS.index(day)].append(parse_interval(span))
    return tuple(tuple(sorted(spans)) for spans in week)


def parse_interval(span: str) -> Interval:
    """``"09:00-17:30"`` as opening and closing times (``24:00`` closes at midnight)."""
    try:
        start_text, end_text = (part.strip() for part in span.split("-"))
        start = time.fromisoformat(start_text)
        end = None if end_text == "24:00" else time.fromisoformat(end_text)
    except ValueError:
        raise ValueError(f"business hours: {span!r} is not HH:MM-HH:MM") from None
    if end is not None and end <= start:
        raise ValueError(f"business hours: {span!r} closes before it opens")
    return start, end


def check_business_hours(hours: BusinessHours) -> BusinessHours:
    """Return ``hours`` if its time zone, weekdays, intervals and holidays parse, else raise."""
    ZoneInfo(hours.timezone)
    _calendar(hours)
    for holiday in hours.holidays:
        date.fromisoformat(holiday)
    return hours


def _calendar(hours: BusinessHours) -> tuple[tuple[Interval, ...], ...]:
    return _weekly(tuple(sorted((day, tuple(spans)) for day, spans in hours.days.items())))


def open_periods(
    hours: BusinessHours, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """The open periods overlapping ``[start, end)``, clipped to it, in order (UTC)."""
    zone = ZoneInfo(hours.timezone)
    week = _calendar(hours)
    holidays = {date.fromisoformat(day) for day in hours.holidays}
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    while day <= last:
        if day not in holidays:
            for opens, closes in week[day.weekday()]:
                begin = datetime.combine(day, opens, zone).astimezone(UTC)
                if closes is None:
                    finish = datetime.combine(day + timedelta(days=1), time(), zone)
                else:
                    finish = datetime.combine(day, closes, zone)
                finish = finish.astimezone(UTC)
                low, high = max(begin, start), min(finish, end)
                if low < high:
                    yield low, high
        day += timedelta(days=1)


def business_seconds(hours: BusinessHours, start: datetime, end: datetime) -> float:
    """Business time between two moments, in seconds (0 if ``end`` is not after ``start``)."""
    if end <= start:
        return 0.0
    return sum((high - low).total_seconds() for low, high in open_periods(hours, start, end))


def deadline(hours: BusinessHours, start: datetime, minutes: float) -> datetime | None:
    """The moment ``minutes`` of business time after ``start`` have passed (None if 0 or the
    calendar is never open)."""
    if minutes <= 0:
        return None
    remaining = timedelta(minutes=minutes)
    window_start = start
    for _ in range(MAX_DAYS // 31 + 1):
        window_end = window_start + timedelta(days=31)
        for low, high in open_periods(hours, window_start, window_end):
            if high - low >= remaining:
                return low + remaining
            remaining -= high - low
        window_start = window_end
    return None
