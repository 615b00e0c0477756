"""The Inbox reports page: volume, first response and resolution times (raw and in business
hours), SLA hit rate and CSAT per channel, agent or team for a date range, and its CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from plait.core.db import read
from plait.core.errors import InvalidInput
from plait.inbox.reports import (
    GROUPS,
    check_group,
    duration_text,
    percent_text,
    report_json,
    score_text,
)
from plait.web.access import viewer
from plait.web.channels import inert_cell
from plait.web.date_range import DateRange, date_range
from plait.web.inbox import CHANNEL_LABELS
from plait.web.sessions import SignedIn
from plait.web.templating import render

router = APIRouter(include_in_schema=False)

Reader = Annotated[SignedIn, Depends(viewer("inbox:read"))]
"""The permission the report API asks for: agents and admins."""

DEFAULT_GROUP = "channel"
GROUP_LABELS = {"channel": "Channel", "agent": "Agent", "team": "Team"}
ALIASES = {"since": "from", "until": "to"}
"""The API's and the CLI's names for the days, accepted beside the date picker's."""
BAR_COLOUR = "#3654d1"


def _count(value: Any, thousands: bool) -> str:
    return f"{int(value or 0):,}" if thousands else str(int(value or 0))


@dataclass(frozen=True)
class Column:
    """A column of the table: its report figure, header and how the figure is shown."""

    key: str
    header: str
    show: Callable[[Any], str] | None = None
    """None: a count (with thousands separators on the page, without in the CSV)."""

    def text(self, value: Any, thousands: bool = True) -> str:
        if isinstance(value, str):
            return value
        return self.show(value) if self.show else _count(value, thousands)


COLUMNS = (
    Column("conversations", "Conversations"),
    Column("inbound", "Messages in"),
    Column("outbound", "Messages out"),
    Column("first_response_median", "First response median", duration_text),
    Column("first_response_avg", "First response average", duration_text),
    Column(
        "first_response_business_median", "First response median (business hours)", duration_text
    ),
    Column("resolved", "Resolved"),
    Column("resolution_median", "Resolution median", duration_text),
    Column("resolution_avg", "Resolution average", duration_text),
    Column("resolution_business_median", "Resolution median (business hours)", duration_text),
    Column("sla_hit_rate", "SLA hit rate", percent_text),
    Column("csat_average", "CSAT average", score_text),
    Column("csat_satisfied", "CSAT 4 or 5", percent_text),
    Column("csat_responses", "CSAT ratings"),
)
"""What the page's table and the CSV show; the API has every figure (p90s too)."""
SHOWN = {column.key: column for column in COLUMNS}


@dataclass(frozen=True)
class Choice:
    """The page's validated query: the date range and what to group by."""

    range: DateRange
    by: str

    def params(self) -> dict[str, str]:
        return {**self.range.params(), "by": self.by}


def choice(params: Mapping[str, str]) -> Choice:
    """Validate the query; every problem (bad date, order, zone, preset or grouping) is
    named in one 400."""
    query = dict(params)
    for alias, name in ALIASES.items():
        if query.get(alias) and not query.get(name):
            query[name] = query[alias]
    problems: list[InvalidInput] = []
    chosen = by = None
    try:
        chosen = date_range(query)
    except InvalidInput as exc:
        problems.append(exc)
    try:
        by = check_group(query.get("by") or DEFAULT_GROUP)
    except InvalidInput as exc:
        problems.append(exc)
    if chosen is None or by is None:
        message = "; ".join(problem.message for problem in problems)
        raise InvalidInput(message, field=problems[0].field)
    return Choice(chosen, by)


@dataclass(frozen=True)
class Kpi:
    """One headline figure over every conversation of the range, with a note beside it."""

    key: str
    label: str
    value: str
    note: str


@dataclass(frozen=True)
class ReportTable:
    """What the page's table and the CSV show: a row per group and the totals."""

    by: str
    rows: list[dict[str, Any]]
    total: dict[str, Any]

    @property
    def columns(self) -> list[Column]:
        return [Column("group", GROUP_LABELS[self.by]), *COLUMNS]

    def cells(self, row: dict[str, Any], thousands: bool = True) -> list[str]:
        return [column.text(row[column.key], thousands) for column in self.columns]

    def csv(self) -> str:
        """The table as CSV: the same headers and texts, counts without thousands separators."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([column.header for column in self.columns])
        for row in [*self.rows, self.total]:
            group, *figures = self.cells(row, thousands=False)
            writer.writerow([inert_cell(group), *figures])
        return out.getvalue()

    def kpis(self) -> list[Kpi]:
        def shown(key: str) -> str:
            return SHOWN[key].text(self.total[key])

        return [
            Kpi("conversations", "Conversations", shown("conversations"),
                f"{shown('resolved')} resolved"),
            Kpi("inbound", "Messages in", shown("inbound"), "from customers"),
            Kpi("outbound", "Messages out", shown("outbound"), "replies sent"),
            Kpi("first_response", "First response, median", shown("first_response_median"),
                f"average {shown('first_response_avg')}"),
            Kpi("first_response_business", "First response, business hours",
                shown("first_response_business_median"),
                f"median; average {duration_text(self.total['first_response_business_avg'])}"),
            Kpi("resolution", "Resolution, median", shown("resolution_median"),
                f"average {shown('resolution_avg')}"),
            Kpi("resolution_business", "Resolution, business hours",
                shown("resolution_business_median"),
                f"median; average {duration_text(self.total['resolution_business_avg'])}"),
            Kpi("sla_hit_rate", "SLA hit rate", shown("sla_hit_rate"),
                f"of {shown('resolved')} resolved; first response on time "
                f"{percent_text(self.total['first_response_sla_hit_rate'])}"),
            Kpi("csat", "CSAT average", shown("csat_average"),
                f"{shown('csat_responses')} ratings, {shown('csat_satisfied')} rated 4 or 5"),
        ]  # fmt: skip


def report_table(engine: Engine, chosen: Choice) -> ReportTable:
    """The report the API gives for this query, as the page's rows and totals."""
    with read(engine) as conn:
        report = report_json(conn, chosen.range.span, chosen.by)
    rows = [{**row, "group": _group_name(chosen.by, row[chosen.by])} for row in report["rows"]]
    return ReportTable(chosen.by, rows, {**report["total"], "group": "Total"})


def _group_name(by: str, key: str) -> str:
    return CHANNEL_LABELS.get(key, key) if by == "channel" else key


def volume_chart(table: ReportTable) -> dict[str, Any]:
    """Conversations per group as horizontal bars, in the table's order."""
    groups = [row["group"] for row in table.rows]
    counts = [row["conversations"] for row in table.rows]
    axis = {"automargin": True, "rangemode": "tozero", "gridcolor": "#e6e9ef"}
    if max(counts, default=0) <= 10:
        axis["dtick"] = 1  # whole conversations, no ticks at 0.5
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": counts,
                "y": groups,
                "marker": {"color": BAR_COLOUR},
                "hovertemplate": "%{y}: %{x:,}<extra></extra>",
            }
        ],
        "layout": {
            "height": max(160, 50 + 28 * len(groups)),
            "margin": {"t": 6, "r": 12, "b": 30, "l": 10},
            "yaxis": {"autorange": "reversed", "automargin": True, "ticksuffix": " "},
            "xaxis": axis,
            "showlegend": False,
            "bargap": 0.25,
        },
        "config": {"displayModeBar": False},
    }


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params.items())


@router.get("/inbox/reports")
def inbox_reports_page(request: Request, _reader: Reader) -> Response:
    """The report for the chosen range and grouping: totals, a table and a volume chart."""
    chosen = choice(_query(request))
    table = report_table(request.app.state.engine, chosen)
    context = {
        "title": "Inbox reports",
        "charts": bool(table.rows),
        "choice": chosen,
        "range": chosen.range,
        "presets": chosen.range.preset_links("/inbox/reports", {"by": chosen.by}),
        "groups": [(group, GROUP_LABELS[group]) for group in GROUPS],
        "group_label": GROUP_LABELS[chosen.by],
        "table": table,
        "kpis": table.kpis(),
        "chart_spec": volume_chart(table),
        "csv_query": urlencode(chosen.params()),
    }
    return render(request, "inbox_reports.html", context)


@router.get("/inbox/reports.csv")
def inbox_reports_csv(request: Request, _reader: Reader) -> Response:
    """Exactly the table the page shows for the same query, as CSV."""
    chosen = choice(_query(request))
    table = report_table(request.app.state.engine, chosen)
    span = chosen.range.span
    name = f"inbox-by-{chosen.by}-{span.first}-to-{span.last}.csv"
    return Response(
        table.csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
