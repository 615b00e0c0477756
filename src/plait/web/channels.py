"""The Channels page: the channel report for a date range under one attribution model (or
two side by side) as a table, bar charts per metric, and the same table as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from plait.analytics.catalog import DATA_DRIVEN_MODELS, MODELS, RULE_MODELS, check_models
from plait.analytics.period import Period
from plait.analytics.report_cache import Snapshot, dashboard_snapshot
from plait.analytics.reports import channel_report, channel_totals
from plait.core.errors import InvalidInput
from plait.web.access import viewer
from plait.web.date_range import DateRange, date_range
from plait.web.sessions import SignedIn
from plait.web.templating import render

router = APIRouter(include_in_schema=False)

Reader = Annotated[SignedIn, Depends(viewer("analytics:read"))]

DEFAULT_MODEL = "last_touch"
MODEL_LABELS = {
    "first_touch": "First touch",
    "last_touch": "Last touch",
    "last_non_direct": "Last non-direct",
    "linear": "Linear",
    "time_decay": "Time decay",
    "position_based": "Position-based (U-shaped)",
    "j_shaped": "J-shaped",
    "inverse_j": "Inverse J",
    "w_shaped": "W-shaped",
    "full_path": "Full path (Z-shaped)",
    "custom": "Custom weights",
    "markov": "Markov chain",
    "shapley": "Shapley value",
}
MODEL_GROUPS = (("Rule-based", RULE_MODELS), ("Data-driven", DATA_DRIVEN_MODELS))
SESSIONS = (
    ("sessions", "Sessions"),
    ("sessions_by_original_channel", "Sessions by original channel"),
)
CREDITED = (("contacts", "Contacts"), ("qualified", "Qualified"), ("sales", "Sales"))
REVENUE = ("revenue", "Revenue")
RATES = (
    ("contact_rate", "Contact rate %", "contacts"),
    ("qualified_rate", "Qualified rate %", "qualified"),
    ("sale_rate", "Sale rate %", "sales"),
)
COLOURS = ("#3654d1", "#d9730d")
"""Blue and orange: the two models stay apart for colour-blind readers too."""
ORIGINAL_COLOUR = "#9aa8e8"


@dataclass(frozen=True)
class Column:
    """A column of the channel table: its report column, header and how numbers are shown."""

    key: str
    header: str
    digits: int = 0
    percent: bool = False

    def text(self, value: Any, thousands: bool = True) -> str:
        """The number as shown on the page (``thousands``) and in the CSV (without)."""
        if isinstance(value, str):
            return value
        number = value * 100 if self.percent else value
        return f"{number:,.{self.digits}f}" if thousands else f"{number:.{self.digits}f}"


@dataclass(frozen=True)
class ChannelTable:
    """What the page's table and the CSV show: columns, a row per channel, the totals."""

    columns: list[Column]
    rows: list[list[Any]]
    totals: list[Any]
    models: list[str]

    def cells(self, row: list[Any], thousands: bool = True) -> list[str]:
        return [
            column.text(value, thousands) for column, value in zip(self.columns, row, strict=True)
        ]

    def csv(self) -> str:
        """The table as CSV: the same headers and numbers, without thousands separators."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([column.header for column in self.columns])
        for row in [*self.rows, self.totals]:
            channel, *numbers = self.cells(row, thousands=False)
            writer.writerow([inert_cell(channel), *numbers])
        return out.getvalue()


def inert_cell(cell: str) -> str:
    """A CSV cell a spreadsheet would take for a formula, quoted so it stays text."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


@dataclass(frozen=True)
class Choice:
    """The page's validated query: date range, model and the model compared with."""

    range: DateRange
    model: str
    compare: str | None

    @property
    def models(self) -> list[str]:
        return [self.model, self.compare] if self.compare else [self.model]

    def params(self) -> dict[str, str]:
        return {**self.range.params(), **self.model_params()}

    def model_params(self) -> dict[str, str]:
        return {"model": self.model} | ({"compare": self.compare} if self.compare else {})


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, model.replace("_", " ").capitalize())


def choice(params: dict[str, str]) -> Choice:
    """Validate the query: a bad date, zone, preset, model or comparison is a 400."""
    chosen = date_range(params)
    model = params.get("model") or DEFAULT_MODEL
    check_models([model])
    compare = params.get("compare") or None
    if compare is not None:
        if compare not in MODELS:
            raise InvalidInput(
                f"unknown model to compare with {compare!r}; choose from {', '.join(MODELS)}",
                field="compare",
            )
        if compare == model:
            compare = None
    return Choice(chosen, model, compare)


def channel_table(data: Snapshot, span: Period, models: list[str]) -> ChannelTable:
    """The channel report under ``models`` (one, or two side by side) as the rows and
    columns the page shows and the CSV holds, with a totals row like the API's."""
    reports = [data.report(channel_report, span, model) for model in models]
    table = _side_by_side(reports, models)
    columns = _columns(table, models)
    totals = channel_totals(table, tuple(f":{model}" for model in models))
    totals["channel"] = "Total"
    rows = table[[column.key for column in columns]].values.tolist()
    return ChannelTable(columns, rows, [totals[column.key] for column in columns], models)


def _side_by_side(reports: list[pd.DataFrame], models: list[str]) -> pd.DataFrame:
    """One frame: the session columns once, the credited ones as ``<column>:<model>``.
    One model keeps its report's rows and order (the API's); two are joined by channel."""
    credited = [key for key, _ in (*CREDITED, REVENUE)] + [key for key, _, _ in RATES]
    frames = [
        report.rename(columns={key: f"{key}:{model}" for key in credited})
        for report, model in zip(reports, models, strict=True)
    ]
    if len(frames) == 1:
        return frames[0]
    sessions = [key for key, _ in SESSIONS]
    merged = frames[0].merge(frames[1].drop(columns=sessions), on="channel", how="outer")
    merged[sessions] = merged[sessions].fillna(0).astype("int64")  # credited, no sessions
    merged = merged.fillna(0.0)
    return merged.sort_values(["sessions", "channel"], ascending=[False, True], ignore_index=True)


def _columns(table: pd.DataFrame, models: list[str]) -> list[Column]:
    compared = len(models) > 1
    columns = [Column("channel", "Channel")]
    columns += [Column(key, header) for key, header in SESSIONS]
    for key, header in (*CREDITED, REVENUE):
        for model in models:
            name = f"{key}:{model}"
            shown = f"{header} ({model_label(model).lower()})" if compared else header
            columns.append(Column(name, shown, _digits(table[name])))
    for key, header, _ in RATES:
        for model in models:
            shown = f"{header} ({model_label(model).lower()})" if compared else header
            columns.append(Column(f"{key}:{model}", shown, 1, percent=True))
    return columns


def _digits(values: pd.Series) -> int:
    """Whole numbers without decimals; shared credit (linear, Markov, …) with two."""
    return 0 if ((values - values.round()).abs() < 1e-9).all() else 2


def charts(table: ChannelTable) -> list[dict[str, Any]]:
    """A horizontal bar chart per metric, channels in the table's order, the models as
    grouped bars; sessions beside sessions by original channel."""
    channels = [row[0] for row in table.rows]
    index = {column.key: i for i, column in enumerate(table.columns)}

    def bars(key: str, name: str, colour: str, scale: float = 1) -> dict[str, Any]:
        return {
            "type": "bar",
            "orientation": "h",
            "name": name,
            "x": [row[index[key]] * scale for row in table.rows],
            "y": channels,
            "marker": {"color": colour},
            "hovertemplate": "%{y}: %{x:,.4~f}<extra>" + name + "</extra>",
        }

    found = [
        _chart(
            "sessions",
            "Sessions",
            [
                bars("sessions", "by session channel", COLOURS[0]),
                bars("sessions_by_original_channel", "by original channel", ORIGINAL_COLOUR),
            ],
        )
    ]
    for key, header in (*CREDITED, REVENUE, ("sale_rate", "Sale rate %")):
        scale = 100 if key == "sale_rate" else 1
        traces = [
            bars(f"{key}:{model}", model_label(model), COLOURS[i], scale)
            for i, model in enumerate(table.models)
        ]
        found.append(_chart(key, header, traces))
    return found


def _chart(key: str, title: str, traces: list[dict[str, Any]]) -> dict[str, Any]:
    count = len(traces[0]["y"])
    legend = len(traces) > 1
    height = max(220, (60 if legend else 40) + count * (10 * len(traces) + 12))
    return {
        "id": f"chart-{key}",
        "title": title,
        "spec": {
            "data": traces,
            "layout": {
                "barmode": "group",
                "height": height,
                "margin": {"t": 30 if legend else 6, "r": 12, "b": 30, "l": 10},
                "yaxis": {"autorange": "reversed", "automargin": True, "ticksuffix": " "},
                "xaxis": {"automargin": True, "rangemode": "tozero", "gridcolor": "#e6e9ef"},
                "showlegend": legend,
                "legend": {"orientation": "h", "x": 0, "y": 1, "yanchor": "bottom"},
                "bargap": 0.2,
            },
            "config": {"displayModeBar": False},
        },
    }


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params.items())


@router.get("/channels")
def channels_page(request: Request, _reader: Reader) -> Response:
    """The channel report as a table and charts, with its filters and a CSV link."""
    chosen = choice(_query(request))
    app = request.app.state
    with dashboard_snapshot(app.engine, app.settings) as data:
        table = channel_table(data, chosen.range.span, chosen.models)
    context = {
        "title": "Channels",
        "charts": True,
        "choice": chosen,
        "range": chosen.range,
        "presets": chosen.range.preset_links("/channels", chosen.model_params()),
        "model_groups": [
            (name, [(m, model_label(m)) for m in models]) for name, models in MODEL_GROUPS
        ],
        "model_label": model_label,
        "table": table,
        "chart_list": charts(table),
        "csv_query": urlencode(chosen.params()),
        "compare_requested": bool(request.query_params.get("compare")) and chosen.compare is None,
    }
    return render(request, "channels.html", context)


@router.get("/channels.csv")
def channels_csv(request: Request, _reader: Reader) -> Response:
    """Exactly the table the page shows for the same query, as CSV."""
    chosen = choice(_query(request))
    app = request.app.state
    with dashboard_snapshot(app.engine, app.settings) as data:
        table = channel_table(data, chosen.range.span, chosen.models)
    span = chosen.range.span
    name = f"channels-{'-vs-'.join(chosen.models)}-{span.first}-to-{span.last}.csv"
    return Response(
        table.csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
