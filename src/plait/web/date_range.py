"""The date range the analytics pages report on, shared by Overview, Channels and Journeys:
query parameters ``from``/``to`` (YYYY-MM-DD), ``tz`` (IANA) and ``preset``, the preset links
and the time-zone choices of their filter forms."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from plait.analytics.period import Period, period
from plait.core.clock import utcnow
from plait.core.errors import InvalidInput

DEFAULT_TZ = "UTC"
DEFAULT_PRESET = "last_30_days"
LONGEST_DAYS = 3660
"""About ten years: longer ranges are refused rather than left to run for minutes."""

COMMON_ZONES = (
    "UTC",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Istanbul",
    "Africa/Lagos",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)


def _last_days(count: int) -> Callable[[date], tuple[date, date]]:
    return lambda today: (today - timedelta(days=count - 1), today)


def _this_month(today: date) -> tuple[date, date]:
    return today.replace(day=1), today


def _last_month(today: date) -> tuple[date, date]:
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def _this_year(today: date) -> tuple[date, date]:
    return today.replace(month=1, day=1), today


PRESETS: dict[str, tuple[str, Callable[[date], tuple[date, date]]]] = {
    "last_7_days": ("Last 7 days", _last_days(7)),
    "last_30_days": ("Last 30 days", _last_days(30)),
    "last_90_days": ("Last 90 days", _last_days(90)),
    "this_month": ("This month", _this_month),
    "last_month": ("Last month", _last_month),
    "this_year": ("This year", _this_year),
}


@dataclass(frozen=True)
class PresetLink:
    name: str
    label: str
    href: str
    current: bool


@dataclass(frozen=True)
class DateRange:
    """The chosen days in a time zone, and the preset they match (if any)."""

    span: Period
    preset: str | None

    @property
    def days(self) -> int:
        return (self.span.last - self.span.first).days + 1

    @property
    def tz(self) -> str:
        return self.span.tz

    def previous(self) -> Period:
        """The period of equal length that ends the day before this one starts."""
        last = self.span.first - timedelta(days=1)
        return period(last - timedelta(days=self.days - 1), last, self.tz)

    def params(self) -> dict[str, str]:
        """The query parameters that select this range again."""
        return {
            "from": self.span.first.isoformat(),
            "to": self.span.last.isoformat(),
            "tz": self.tz,
        }

    def label(self) -> str:
        """E.g. ``Last 30 days (2026-10-24 to 2026-11-22, UTC)``."""
        days = f"{self.span.first} to {self.span.last}, {self.tz}"
        return f"{PRESETS[self.preset][0]} ({days})" if self.preset else days

    def preset_links(self, path: str, keep: Mapping[str, str] | None = None) -> list[PresetLink]:
        """A link per preset to ``path``, keeping the time zone and the page's ``keep`` params."""
        links = []
        for name, (label, _) in PRESETS.items():
            query = urlencode({"preset": name, "tz": self.tz, **(keep or {})})
            links.append(PresetLink(name, label, f"{path}?{query}", name == self.preset))
        return links

    def zones(self) -> list[str]:
        """Time zones to offer: the common ones, and this range's if it is not among them."""
        return list(COMMON_ZONES) if self.tz in COMMON_ZONES else [self.tz, *COMMON_ZONES]


def today_in(tz: str) -> date:
    """Today's date in the time zone ``tz`` (already checked)."""
    return utcnow().astimezone(ZoneInfo(tz)).date()


def date_range(params: Mapping[str, str], today: date | None = None) -> DateRange:
    """The range the query ``params`` ask for; last 30 days up to today by default. A bad
    date, time zone or preset, or a range longer than ten years, is a clear InvalidInput."""
    tz = params.get("tz") or DEFAULT_TZ
    period("2000-01-01", "2000-01-01", tz)  # checks the zone before it is used for today
    today = today or today_in(tz)
    preset = params.get("preset") or None
    first, last = params.get("from") or None, params.get("to") or None
    if preset is not None:
        if preset not in PRESETS:
            choices = ", ".join(PRESETS)
            raise InvalidInput(f"unknown preset {preset!r}; choose from {choices}", field="preset")
        first, last = PRESETS[preset][1](today)
    elif first is None and last is None:
        first, last = PRESETS[DEFAULT_PRESET][1](today)
    elif last is None:
        last = today
    span = period(first or _thirty_days_before(last, tz), last, tz)
    if (span.last - span.first).days + 1 > LONGEST_DAYS:
        raise InvalidInput(
            f"choose at most {LONGEST_DAYS} days (from {span.first} to {span.last} is longer)",
            field="from",
        )
    return DateRange(span, _matching_preset(span, today))


def _thirty_days_before(last: str | date, tz: str) -> date:
    """The start of a 30-day range ending on ``last`` (a ``to`` given without ``from``)."""
    try:
        day = period(last, last, tz).last
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="to") from None
    return day - timedelta(days=29)


def _matching_preset(span: Period, today: date) -> str | None:
    """The preset covering exactly these days, so its link shows as the current one."""
    for name, (_, days_of) in PRESETS.items():
        if days_of(today) == (span.first, span.last):
            return name
    return None
