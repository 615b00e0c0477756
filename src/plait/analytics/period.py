"""The date range a report covers: whole days in a time zone, as UTC instants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plait.core.errors import InvalidInput

_DAY = timedelta(days=1)


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
    return Period(
        first_day, last_day, tz, _midnight(first_day, zone), _midnight(last_day + _DAY, zone)
    )


def days(span: Period) -> list[tuple[date, datetime, datetime]]:
    """Each day of ``span`` with the UTC instants it starts and ends at (23 or 25 hours
    long across a daylight-saving change), so events can be bucketed by local day."""
    zone = ZoneInfo(span.tz)
    count = (span.last - span.first).days + 1
    firsts = [span.first + timedelta(days=offset) for offset in range(count)]
    return [(day, _midnight(day, zone), _midnight(day + _DAY, zone)) for day in firsts]


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


def _day(value: str | date, field: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{value!r} is not a date (YYYY-MM-DD)", field=field) from None
