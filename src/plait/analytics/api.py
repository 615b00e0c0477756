"""HTTP: the channel report, attribution, paths, transitions and funnel
(``/api/analytics/...``; marketers and admins)."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from plait.analytics.catalog import MODELS
from plait.analytics.options import with_options
from plait.analytics.period import Period, period
from plait.analytics.report_cache import cached_report
from plait.analytics.reports import (
    attribution,
    channel_report,
    channel_totals,
    funnel,
    paths,
    transitions,
)
from plait.core.auth import Principal, require

analytics_api = APIRouter(prefix="/api/analytics", tags=["analytics"])

Reader = Annotated[Principal, Depends(require("analytics:read"))]
First = Annotated[str, Query(alias="from", description="first day, YYYY-MM-DD")]
Last = Annotated[str, Query(alias="to", description="last day (inclusive), YYYY-MM-DD")]
Tz = Annotated[str, Query(description="time zone the days are in")]


class Options:
    """Per-report overrides of the ``[analytics]`` settings, as query parameters."""

    def __init__(
        self,
        lookback_days: float | None = None,
        collapse_repeats: bool | None = None,
        markov_order: int | None = None,
        half_life_days: float | None = None,
    ) -> None:
        self.values = {
            "lookback_days": lookback_days,
            "collapse_repeats": collapse_repeats,
            "markov_order": markov_order,
            "half_life_days": half_life_days,
        }


Overrides = Annotated[Options, Depends()]


@analytics_api.get("/channels")
async def get_channels(
    request: Request,
    _reader: Reader,
    options: Overrides,
    first: First,
    last: Last,
    model: str = "last_touch",
    tz: Tz = "UTC",
) -> dict[str, Any]:
    """Sessions, contacts, qualified, sales and revenue per channel under ``model``."""
    span = period(first, last, tz)
    table = await _run(request, channel_report, span, model, options=options)
    return _body(span, table, model=model, totals=channel_totals(table))


@analytics_api.get("/attribution")
async def get_attribution(
    request: Request,
    _reader: Reader,
    options: Overrides,
    first: First,
    last: Last,
    models: Annotated[list[str] | None, Query(alias="model")] = None,
    kind: str = "sale",
    tz: Tz = "UTC",
) -> dict[str, Any]:
    """One kind of conversion credited per channel under several models (all by default)."""
    span = period(first, last, tz)
    chosen = models or list(MODELS)
    table = await _run(request, attribution, span, chosen, kind, options=options)
    return _body(span, table, models=chosen, kind=kind)


@analytics_api.get("/paths")
async def get_paths(
    request: Request,
    _reader: Reader,
    options: Overrides,
    first: First,
    last: Last,
    kind: str = "sale",
    outcome: str = "conversion",
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    tz: Tz = "UTC",
) -> dict[str, Any]:
    """The most common paths before a conversion or a drop-off."""
    span = period(first, last, tz)
    table = await _run(request, paths, span, kind, outcome=outcome, limit=limit, options=options)
    return _body(span, table, kind=kind, outcome=outcome)


@analytics_api.get("/transitions")
async def get_transitions(
    request: Request,
    _reader: Reader,
    options: Overrides,
    first: First,
    last: Last,
    kind: str = "sale",
    tz: Tz = "UTC",
) -> dict[str, Any]:
    """Moves between channels, from the start to conversion or drop-off, with probabilities."""
    span = period(first, last, tz)
    table = await _run(request, transitions, span, kind, options=options)
    return _body(span, table, kind=kind)


@analytics_api.get("/funnel")
async def get_funnel(
    request: Request, _reader: Reader, first: First, last: Last, tz: Tz = "UTC"
) -> dict[str, Any]:
    """Session → contact → qualified → sale per starting channel."""
    span = period(first, last, tz)
    table = await _run(request, funnel, span)
    return _body(span, table)


async def _run(
    request: Request,
    report: Any,
    span: Period,
    *args: Any,
    options: Options | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """``report`` for ``span`` through the process's report cache, off the event loop."""
    settings = with_options(request.app.state.settings, **(options.values if options else {}))
    engine = request.app.state.engine
    return await run_in_threadpool(cached_report, engine, settings, report, span, *args, **kwargs)


def _body(span: Period, table: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    return {
        "from": span.first.isoformat(),
        "to": span.last.isoformat(),
        "tz": span.tz,
        **extra,
        "rows": table.to_dict(orient="records"),
    }
