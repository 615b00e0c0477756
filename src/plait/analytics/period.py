"""The date range a report covers: whole days in a time zone, as UTC instants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plait.core.errors import InvalidInput


@dataclass(frozen=True)
class Period:
    """Days ``first``..``last`` (inclusive) in ``tz``; ``start``/``end`` bound it in UTC."""

    first: date
    last: date
    tz: str
    start: datetime
    end: datetime


def period(first: str | date, last: str | date, tz: str = "UTC") -> Period:
    """A period from two dates (``YYYY-MM-DD``) and a time zone; a clear error otherwise."""
    first_day = _day(first, "from")
    last_day = _day(last, "to")
    if first_day > last_day:
        raise InvalidInput(f"from ({first_day}) is after to ({last_day})", field="from")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {tz!r}", field="tz") from None
    start = datetime.combine(first_day, time(), zone).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(), zone).astimezone(UTC)
    return Period(first_day, last_day, tz, start, end)


def _day(value: str | date, field: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{value!r} is not a date (YYYY-MM-DD)", field=field) from None
