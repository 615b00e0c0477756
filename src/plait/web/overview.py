"""The Overview page: the headline numbers of a date range against the period of equal
length before it (sessions, contacts, qualified, sales, revenue, conversion rate), each with
its change and a sparkline of the days."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from plait.analytics.period import period
from plait.analytics.report_cache import Snapshot, dashboard_snapshot
from plait.analytics.reports import daily_totals
from plait.web.access import viewer
from plait.web.date_range import DateRange, date_range
from plait.web.sessions import SignedIn
from plait.web.templating import MISSING, render

router = APIRouter(include_in_schema=False)

Reader = Annotated[SignedIn, Depends(viewer("analytics:read"))]

KPIS = (
    ("sessions", "Sessions"),
    ("contacts", "Contacts"),
    ("qualified", "Qualified leads"),
    ("sales", "Sales"),
    ("revenue", "Revenue"),
    ("conversion_rate", "Conversion rate"),
)
"""The headline numbers; the conversion rate is sales per session."""
SPARK_COLOUR = "#3654d1"
PREVIOUS_COLOUR = "#b7bfcf"


@dataclass(frozen=True)
class Kpi:
    """One headline number for the range and the period before it."""

    key: str
    label: str
    value: float | None
    previous: float | None
    series: list[float | None]
    previous_series: list[float | None]
    digits: int = 0
    percent: bool = False

    @property
    def change(self) -> float | None:
        """The relative change from the previous period (None when that was zero)."""
        if self.value is None or not self.previous:
            return None
        return (self.value - self.previous) / self.previous

    @property
    def direction(self) -> str:
        """``up``, ``down`` or ``flat`` (for every one of these numbers, up is good)."""
        now, before = self.value or 0, self.previous or 0
        return "up" if now > before else "down" if now < before else "flat"

    def text(self, value: float | None) -> str:
        if value is None:
            return MISSING
        number = value * 100 if self.percent else value
        return f"{number:,.{self.digits}f}" + (" %" if self.percent else "")

    @property
    def change_text(self) -> str:
        """``up 12.5 %``, ``down 3.0 %``, ``up from 0`` or ``no change``: words and a sign,
        so the change reads without its colour."""
        if self.direction == "flat":
            return "no change"
        if self.change is None:
            return f"{self.direction} from 0"
        return f"{self.direction} {abs(self.change) * 100:,.1f} %"


@dataclass(frozen=True)
class Overview:
    """The KPIs and the days behind them."""

    kpis: list[Kpi]
    days: pd.DataFrame
    """The range's days: ``day``, the counts, ``revenue`` and ``conversion_rate``."""
    previous_days: pd.DataFrame
    """The previous period's days, alike."""


def overview(data: Snapshot, chosen: DateRange) -> Overview:
    """KPIs for ``chosen`` and the period before it, from one ``daily_totals`` report that
    covers both (read through the report cache) split by day."""
    before = chosen.previous()
    both = period(before.first, chosen.span.last, chosen.tz)
    table = data.report(daily_totals, both)
    table["conversion_rate"] = table.sales / table.sessions.where(table.sessions > 0)
    current = table[table.day >= chosen.span.first].reset_index(drop=True)
    previous = table[table.day < chosen.span.first].reset_index(drop=True)
    totals = {key: (current[key].sum(), previous[key].sum()) for key, _ in KPIS[:-1]}
    totals["conversion_rate"] = (_rate(current), _rate(previous))
    shown = {
        "revenue": {"digits": _revenue_digits(table.revenue)},
        "conversion_rate": {"digits": 2, "percent": True},
    }
    kpis = [
        _kpi(key, label, *totals[key], current, previous, **shown.get(key, {}))
        for key, label in KPIS
    ]
    return Overview(kpis, current, previous)


def _kpi(
    key: str,
    label: str,
    value: Any,
    before: Any,
    current: pd.DataFrame,
    previous: pd.DataFrame,
    **shown: Any,
) -> Kpi:
    return Kpi(
        key,
        label,
        _plain(value),
        _plain(before),
        [_plain(v) for v in current[key]],
        [_plain(v) for v in previous[key]],
        **shown,
    )


def _rate(days: pd.DataFrame) -> float | None:
    """Sales per session over the whole period (not an average of daily rates)."""
    sessions = days.sessions.sum()
    return float(days.sales.sum() / sessions) if sessions else None


def _plain(value: Any) -> float | None:
    """A number for templates and JSON (NaN from an empty day's rate becomes None)."""
    return None if value is None or pd.isna(value) else float(value)


def _revenue_digits(revenue: pd.Series) -> int:
    return 0 if ((revenue - revenue.round()).abs() < 1e-9).all() else 2


def sparkline(kpi: Kpi, days: list[str], previous_days: list[str]) -> dict[str, Any]:
    """A tiny line chart of the range's days over the previous period's, without axes."""
    number = ",.2%" if kpi.percent else f",.{kpi.digits}f"
    current = {
        "type": "scatter",
        "mode": "lines",
        "x": list(range(len(kpi.series))),
        "y": kpi.series,
        "customdata": days,
        "line": {"color": SPARK_COLOUR, "width": 2},
        "fill": "tozeroy",
        "fillcolor": "rgba(54,84,209,0.08)",
        "hovertemplate": "%{customdata}: %{y:" + number + "}<extra></extra>",
        "connectgaps": False,
    }
    before = {
        "type": "scatter",
        "mode": "lines",
        "x": list(range(len(kpi.previous_series))),
        "y": kpi.previous_series,
        "customdata": previous_days,
        "line": {"color": PREVIOUS_COLOUR, "width": 1, "dash": "dot"},
        "hovertemplate": "%{customdata}: %{y:" + number + "}<extra>before</extra>",
    }
    return {
        "data": [before, current],
        "layout": {
            "height": 48,
            "margin": {"t": 2, "r": 2, "b": 2, "l": 2},
            "xaxis": {"visible": False, "fixedrange": True},
            "yaxis": {"visible": False, "fixedrange": True, "rangemode": "tozero"},
            "showlegend": False,
            "hovermode": "x",
        },
        "config": {"displayModeBar": False},
    }


@router.get("/overview")
def overview_page(request: Request, _reader: Reader) -> Response:
    """Headline numbers for the chosen range, against the period before it."""
    chosen = date_range(dict(request.query_params.items()))
    app = request.app.state
    with dashboard_snapshot(app.engine, app.settings) as data:
        found = overview(data, chosen)
    days = [day.isoformat() for day in found.days.day]
    previous_days = [day.isoformat() for day in found.previous_days.day]
    before = chosen.previous()
    context = {
        "title": "Overview",
        "charts": True,
        "range": chosen,
        "presets": chosen.preset_links("/overview"),
        "kpis": [{"kpi": kpi, "spark": sparkline(kpi, days, previous_days)} for kpi in found.kpis],
        "days": found.days.to_dict(orient="records"),
        "previous": before,
        "query": urlencode(chosen.params()),
    }
    return render(request, "overview.html", context)
