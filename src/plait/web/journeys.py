"""The Journeys page: how customers move between channels towards a conversion (a Sankey
of the transitions from the start to conversion or drop-off), the most common paths before
a conversion and before a drop-off, and the stage funnel per starting channel."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from itertools import groupby, pairwise
from typing import Annotated, Any
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from plait.analytics.conversions import KINDS
from plait.analytics.journeys import CONVERSION, DROP_OFF, START
from plait.analytics.period import Period
from plait.analytics.report_cache import Snapshot, dashboard_snapshot
from plait.analytics.reports import funnel, paths, transitions
from plait.core.errors import InvalidInput
from plait.web.access import viewer
from plait.web.date_range import date_range
from plait.web.sessions import SignedIn
from plait.web.templating import render

router = APIRouter(include_in_schema=False)

Reader = Annotated[SignedIn, Depends(viewer("analytics:read"))]

DEFAULT_KIND = "sale"
KIND_LABELS = {"contact": "Contact", "qualified": "Qualified lead", "sale": "Sale"}
TOP_PATHS = 10
STATE_LABELS = {START: "Start", CONVERSION: "Conversion", DROP_OFF: "Drop-off"}
CHANNEL_COLOURS = {
    "Direct": "#3654d1",
    "Organic Search": "#d9730d",
    "Paid Search": "#2e8b57",
    "Email": "#b03a8c",
    "Phone": "#0f8ea8",
    "Paid Social": "#8a6d00",
    "Organic Social": "#6a4fc1",
    "Display": "#c0392b",
    "Live Chat": "#4f7d2a",
    "Affiliates": "#9c5b35",
    "Referral": "#2b6f9e",
    "Store": "#a0527a",
    "WhatsApp": "#0b7a75",
    "Paid Shopping": "#b5651d",
    "SMS": "#7a3fb0",
    "App": "#1f5fbf",
}
PALETTE = tuple(CHANNEL_COLOURS.values())
"""For channels without a colour of their own: one picked from the name, so it is stable."""
START_COLOUR, CONVERSION_COLOUR, DROP_OFF_COLOUR = "#141a2b", "#1c7c45", "#b3261e"
OTHER = "Other channels"
OTHER_COLOUR = "#9aa3b5"
SANKEY_CHANNELS = 8
"""Channels drawn on their own in the Sankey; the rest are summed as Other channels."""
STAGES = (
    ("sessions", "Started"),
    ("contacts", "Contacts"),
    ("qualified", "Qualified"),
    ("sales", "Sales"),
)
FUNNEL_CHANNELS = 6
"""Starting channels drawn separately in the funnel chart; the rest are summed as Other."""


@dataclass(frozen=True)
class Reports:
    """The four reports the page shows, for one range and kind of conversion."""

    transitions: pd.DataFrame
    conversion_paths: pd.DataFrame
    drop_off_paths: pd.DataFrame
    funnel: pd.DataFrame


def kind_of(params: dict[str, str]) -> str:
    """The conversion the journeys lead to; a clear 400 for anything else."""
    kind = params.get("kind") or DEFAULT_KIND
    if kind not in KINDS:
        raise InvalidInput(
            f"unknown conversion {kind!r}; choose from {', '.join(KINDS)}", field="kind"
        )
    return kind


def reports(data: Snapshot, span: Period, kind: str) -> Reports:
    """The page's reports through the report cache; when cold, they share the journeys
    towards ``kind`` on the workspace they run on."""
    return Reports(
        data.report(transitions, span, kind),
        data.report(paths, span, kind, outcome="conversion", limit=TOP_PATHS),
        data.report(paths, span, kind, outcome="drop-off", limit=TOP_PATHS),
        data.report(funnel, span),
    )


def _digits(values: pd.Series) -> int:
    """Whole amounts without decimals, amounts with cents with two."""
    return 0 if ((values - values.round()).abs() < 1e-9).all() else 2


def state_label(state: str, kind: str | None = None) -> str:
    """A state as people read it; the conversion named after its kind when known."""
    if state == CONVERSION and kind is not None:
        return KIND_LABELS[kind]
    return STATE_LABELS.get(state, state)


def sankey(moves: pd.DataFrame, kind: str) -> dict[str, Any]:
    """A two-column Sankey of the transition matrix: where journeys are (the start or a
    channel) on the left, where they go next (a channel, conversion or drop-off) on the
    right, in the same order on both sides; the smaller channels are summed as one node so
    the picture stays legible (the table beside it has every move)."""
    moves = _fold_small_channels(moves)
    out = moves.groupby("source", sort=False)["count"].sum()
    into = moves.groupby("target", sort=False)["count"].sum()
    channels = _by_volume(out.add(into, fill_value=0))
    left = [s for s in (START, *channels) if s in out]
    right = [s for s in (*channels, CONVERSION, DROP_OFF) if s in into]
    colours = _colours(channels)
    where = {("from", s): i for i, s in enumerate(left)}
    where |= {("to", s): len(left) + i for i, s in enumerate(right)}
    outcome = KIND_LABELS[kind].lower()
    return {
        "data": [
            {
                "type": "sankey",
                "arrangement": "snap",
                "valueformat": ",.0f",
                "node": {
                    "label": [f"{state_label(s, kind)} ({out[s]:,.0f})" for s in left]
                    + [f"{state_label(s, kind)} ({into[s]:,.0f})" for s in right],
                    "color": [colours[s] for s in (*left, *right)],
                    "x": [0.001] * len(left) + [0.999] * len(right),
                    "y": _centres([out[s] for s in left]) + _centres([into[s] for s in right]),
                    "pad": 10,
                    "thickness": 16,
                    "line": {"width": 0},
                    "hovertemplate": "%{label}<extra></extra>",
                },
                "link": {
                    "source": [where["from", s] for s in moves.source],
                    "target": [where["to", t] for t in moves.target],
                    "value": [float(c) for c in moves["count"]],
                    "color": [
                        _link_colour(colours, s, t)
                        for s, t in zip(moves.source, moves.target, strict=True)
                    ],
                    "customdata": [
                        f"{state_label(s, kind)} → {state_label(t, kind)}"
                        for s, t in zip(moves.source, moves.target, strict=True)
                    ],
                    "hovertemplate": "%{customdata}: %{value} moves<extra></extra>",
                },
            }
        ],
        "layout": {
            "height": 560,
            "margin": {"t": 34, "r": 10, "b": 10, "l": 10},
            "annotations": [
                _heading("From", 0, "left"),
                _heading(f"To (a channel, {outcome} or drop-off)", 1, "right"),
            ],
        },
        "config": {"displayModeBar": False},
    }


def _fold_small_channels(moves: pd.DataFrame) -> pd.DataFrame:
    """Moves with the channels beyond the ``SANKEY_CHANNELS`` busiest summed as one."""
    states = (
        moves.groupby("source")["count"]
        .sum()
        .add(moves.groupby("target")["count"].sum(), fill_value=0)
    )
    channels = _by_volume(states)
    small = set(channels[SANKEY_CHANNELS:])
    if len(small) < 2:
        return moves
    folded = moves.assign(
        source=moves.source.where(~moves.source.isin(small), OTHER),
        target=moves.target.where(~moves.target.isin(small), OTHER),
    )
    return folded.groupby(["source", "target"], as_index=False, sort=False)["count"].sum()


def _by_volume(totals: pd.Series) -> list[str]:
    """The channels among ``totals``' states, busiest first (``Other`` last)."""
    ordered = totals.sort_values(ascending=False, kind="stable").index
    found = [s for s in ordered if s not in (START, CONVERSION, DROP_OFF, OTHER)]
    return found + ([OTHER] if OTHER in totals.index else [])


def _centres(sizes: list[float]) -> list[float]:
    """Vertical node centres (0 top, 1 bottom) stacking nodes of ``sizes`` with gaps."""
    gap = 0.02
    total = sum(sizes) or 1
    scale = (1 - gap * (len(sizes) - 1)) / total
    centres, top = [], 0.0
    for size in sizes:
        height = size * scale
        centres.append(min(max(top + height / 2, 0.001), 0.999))
        top += height + gap
    return centres


def _heading(text: str, x: float, anchor: str) -> dict[str, Any]:
    return {
        "text": text,
        "x": x,
        "y": 1.0,
        "xref": "paper",
        "yref": "paper",
        "yanchor": "bottom",
        "xanchor": anchor,
        "showarrow": False,
        "font": {"size": 12, "color": "#5d6677"},
    }


def _colours(channels: list[str]) -> dict[str, str]:
    """A colour per channel (the same channel has the same colour in every chart), and
    fixed ones for the start, the outcomes and the other channels."""
    fixed = {
        START: START_COLOUR,
        CONVERSION: CONVERSION_COLOUR,
        DROP_OFF: DROP_OFF_COLOUR,
        OTHER: OTHER_COLOUR,
    }
    named = {
        c: CHANNEL_COLOURS.get(c) or PALETTE[zlib.crc32(c.encode()) % len(PALETTE)]
        for c in channels
    }
    return named | fixed


def _link_colour(colours: dict[str, str], source: str, target: str) -> str:
    if target == CONVERSION:
        return _alpha(CONVERSION_COLOUR, 0.45)
    if target == DROP_OFF:
        return _alpha(DROP_OFF_COLOUR, 0.22)
    return _alpha(colours[target if source == START else source], 0.3)


def _alpha(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def path_steps(path: str) -> list[tuple[str, int]]:
    """A path's channels with repeats in a row counted: ``[("Direct", 3), ("Email", 1)]``."""
    return [(channel, len(list(run))) for channel, run in groupby(path.split(" > "))]


def funnel_rows(table: pd.DataFrame) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The funnel per starting channel with each step's drop-off as a share of the step
    before, and the totals row."""
    rows = [_funnel_row(row) for row in table.to_dict(orient="records")]
    sums = {key: float(table[key].sum()) for key, _ in STAGES}
    return rows, _funnel_row({"channel": "Total", **sums})


def _funnel_row(row: dict[str, Any]) -> dict[str, Any]:
    stages = [float(row[key]) for key, _ in STAGES]
    drops = []
    for before, after in pairwise(stages):
        lost = before - after
        drops.append((lost, lost / before if before else None))
    sale_rate = stages[-1] / stages[0] if stages[0] else None
    return {"channel": row["channel"], "stages": stages, "drops": drops, "sale_rate": sale_rate}


def funnel_chart(table: pd.DataFrame) -> dict[str, Any]:
    """Started → contacts → qualified → sales, stacked by the biggest starting channels."""
    stage_keys = [key for key, _ in STAGES]
    labels = [label for _, label in STAGES]
    top = table.head(FUNNEL_CHANNELS)
    rest = table.iloc[FUNNEL_CHANNELS:]
    colours = _colours(list(top.channel))
    traces = [
        _funnel_trace(row["channel"], [row[k] for k in stage_keys], labels, colours[row["channel"]])
        for row in top.to_dict(orient="records")
    ]
    if len(rest):
        other = [rest[k].sum() for k in stage_keys]
        traces.append(_funnel_trace(OTHER, other, labels, OTHER_COLOUR))
    return {
        "data": traces,
        "layout": {
            "funnelmode": "stack",
            "height": 340,
            "margin": {"t": 10, "r": 10, "b": 10, "l": 10},
            "yaxis": {"automargin": True, "ticksuffix": " "},
            "legend": {"orientation": "h", "y": -0.05},
        },
        "config": {"displayModeBar": False},
    }


def _funnel_trace(name: str, values: list[Any], labels: list[str], colour: str) -> dict[str, Any]:
    return {
        "type": "funnel",
        "name": name,
        "y": labels,
        "x": [float(v) for v in values],
        "marker": {"color": colour},
        "textinfo": "value",
        "connector": {"line": {"color": "#dde1e8", "width": 1}},
        "hovertemplate": name + " · %{y}: %{x:,.0f}<extra></extra>",
    }


@router.get("/journeys")
def journeys_page(request: Request, _reader: Reader) -> Response:
    """Channel transitions, top paths and the stage funnel for a range and conversion."""
    params = dict(request.query_params.items())
    chosen = date_range(params)
    kind = kind_of(params)
    app = request.app.state
    with dashboard_snapshot(app.engine, app.settings) as data:
        found = reports(data, chosen.span, kind)
    funnel_table, funnel_totals = funnel_rows(found.funnel)
    context = {
        "title": "Journeys",
        "charts": True,
        "range": chosen,
        "kind": kind,
        "kinds": KIND_LABELS,
        "presets": chosen.preset_links("/journeys", {"kind": kind}),
        "moves": found.transitions.to_dict(orient="records"),
        "sankey": sankey(found.transitions, kind) if len(found.transitions) else None,
        "conversion_paths": found.conversion_paths.to_dict(orient="records"),
        "value_digits": _digits(found.conversion_paths.value),
        "drop_off_paths": found.drop_off_paths.to_dict(orient="records"),
        "funnel_rows": funnel_table,
        "funnel_totals": funnel_totals,
        "funnel_chart": funnel_chart(found.funnel) if len(found.funnel) else None,
        "stages": [label for _, label in STAGES],
        "state_label": lambda state: state_label(state, kind),
        "path_steps": path_steps,
        "query": urlencode(chosen.params()),
    }
    return render(request, "journeys.html", context)
