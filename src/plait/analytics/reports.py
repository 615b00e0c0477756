"""The reports analysts ask for, for a period: the channel report (sessions, contacts,
qualified leads, sales and revenue per channel under a model), the same totals per day,
attribution under several models side by side, top paths, channel transitions and the stage
funnel."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa
from ibis.backends import BaseBackend

from plait.analytics.catalog import (
    DATA_DRIVEN_MODELS,
    MODELS,
    NO_TOUCH,
    RULE_MODELS,
    check_models,
    credit_columns,
)
from plait.analytics.conversions import KINDS
from plait.analytics.crediting import data_driven_credit, rule_credit
from plait.analytics.inputs import CHAIN_COLUMNS, Inputs, Workspace, in_period, inputs
from plait.analytics.journeys import CONVERSION, DROP_OFF, START, path_strings, transition_counts
from plait.analytics.period import Period, days
from plait.core.errors import InvalidInput
from plait.core.settings import Settings

PLURAL = {"contact": "contacts", "qualified": "qualified", "sale": "sales"}
RATES = {"contact_rate": "contacts", "qualified_rate": "qualified", "sale_rate": "sales"}
"""Each conversion rate of the channel report and the conversions it counts per session."""
DAILY_COUNTS = ("sessions", "contacts", "qualified", "sales")
_DAY_BOUNDS = pa.schema(
    [
        ("day_index", pa.int64()),
        ("day_start", pa.timestamp("us", tz="UTC")),
        ("day_end", pa.timestamp("us", tz="UTC")),
    ]
)


def channel_report(
    settings: Settings,
    period: Period,
    model: str = "last_touch",
    *,
    con: BaseBackend | Workspace | None = None,
) -> pd.DataFrame:
    """Per channel: sessions (by session channel and by the customer's original channel),
    contacts, qualified leads, sales and revenue credited under ``model``, and conversion
    rates. Credit sums to the unattributed totals; untouched conversions go to ``(none)``."""
    check_models([model])
    source = inputs(settings, period, con)
    report = source.con.execute(_sessions_per_channel(source))
    credited = _credit_by_kind(source, [model])
    for kind in KINDS:
        part = credited[credited.kind == kind]
        part = pd.DataFrame(
            {"channel": part.channel, PLURAL[kind]: part[f"{model}_conversions"]}
            | ({"revenue": part[f"{model}_value"]} if kind == "sale" else {})
        )
        report = report.merge(part, on="channel", how="outer")
    report = report.fillna(0)
    report[["sessions", "sessions_by_original_channel"]] = report[
        ["sessions", "sessions_by_original_channel"]
    ].astype("int64")
    for rate, numerator in RATES.items():
        report[rate] = _rate(report[numerator], report.sessions)
    columns = [
        "channel",
        "sessions",
        "sessions_by_original_channel",
        "contacts",
        "qualified",
        "sales",
        "revenue",
        "contact_rate",
        "qualified_rate",
        "sale_rate",
    ]
    return _by_sessions(report[columns])


def daily_totals(
    settings: Settings, period: Period, *, con: BaseBackend | Workspace | None = None
) -> pd.DataFrame:
    """The unattributed totals per day of the period, in its time zone: ``day`` (a
    ``datetime.date``), ``sessions`` started and ``contacts``, ``qualified``, ``sales`` and
    ``revenue`` converted that day. Every day has a row (zeros when quiet); the days add up
    to the channel report's totals under any model."""
    source = inputs(settings, period, con)
    calendar = days(period)
    bounds = ibis.memtable(_day_bounds(calendar))
    happenings = ibis.union(_session_counts(source), _conversion_counts(source))
    dated = happenings.join(
        bounds, [happenings.at >= bounds.day_start, happenings.at < bounds.day_end]
    )
    measures = [*DAILY_COUNTS, "revenue"]
    per_day = source.con.execute(
        dated.group_by("day_index").agg(**{name: dated[name].sum() for name in measures})
    )
    return _every_day(per_day, [day for day, _, _ in calendar])


def channel_totals(table: pd.DataFrame, suffixes: tuple[str, ...] = ("",)) -> dict[str, Any]:
    """The totals row of a channel report: column sums, and each rate as summed conversions
    over summed sessions (not a sum of rates). ``suffixes`` name the models of a report whose
    conversion columns carry one per model (``sales:linear``)."""
    totals: dict[str, Any] = table.drop(columns=["channel"]).sum(numeric_only=True).to_dict()
    sessions = totals["sessions"]
    for rate, numerator in RATES.items():
        for suffix in suffixes:
            totals[rate + suffix] = totals[numerator + suffix] / sessions if sessions else 0.0
    return totals


def attribution(
    settings: Settings,
    period: Period,
    models: list[str] | tuple[str, ...] = MODELS,
    kind: str = "sale",
    *,
    con: BaseBackend | Workspace | None = None,
) -> pd.DataFrame:
    """Conversions of ``kind`` in the period credited per channel under each model:
    ``channel`` and ``<model>_conversions`` / ``<model>_value`` columns."""
    check_models(list(models))
    _check_kind(kind)
    source = inputs(settings, period, con)
    credited = _credit_by_kind(source, list(models), kinds=[kind])
    return (
        credited.drop(columns="kind")
        .sort_values("channel", ignore_index=True)
        .reindex(columns=["channel", *credit_columns(models)])
    )


def paths(
    settings: Settings,
    period: Period,
    kind: str = "sale",
    *,
    outcome: str = "conversion",
    limit: int = 20,
    con: BaseBackend | Workspace | None = None,
) -> pd.DataFrame:
    """The most common channel paths before a conversion of ``kind`` (``outcome=
    "conversion"``) or of customers who dropped off (``"drop-off"``): ``path``,
    ``journeys``, ``share``, ``conversions``, ``value``."""
    _check_kind(kind)
    if outcome not in ("conversion", "drop-off"):
        raise InvalidInput("outcome must be 'conversion' or 'drop-off'", field="outcome")
    if limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit")
    source = inputs(settings, period, con)
    journeys = source.converting([kind]) if outcome == "conversion" else source.drop_offs([kind])
    strings = path_strings(journeys.select(*CHAIN_COLUMNS))
    grouped = strings.group_by("path").agg(
        journeys=ibis._.count(), conversions=ibis._.conversions.sum(), value=ibis._.value.sum()
    )
    grouped = grouped.mutate(share=grouped.journeys / grouped.journeys.sum().over())
    top = grouped.order_by([ibis.desc("journeys"), "path"]).limit(limit)
    return source.con.execute(top)[["path", "journeys", "share", "conversions", "value"]]


def transitions(
    settings: Settings,
    period: Period,
    kind: str = "sale",
    *,
    con: BaseBackend | Workspace | None = None,
) -> pd.DataFrame:
    """The channel transition matrix for journeys towards ``kind``: ``source`` → ``target``
    (``(start)``, channels, ``(conversion)``, ``(drop-off)``) with ``count`` and the
    ``probability`` of the move among all moves out of ``source``."""
    _check_kind(kind)
    source = inputs(settings, period, con)
    chain = source.chain([kind])
    moves = transition_counts(chain.filter(chain.channel != NO_TOUCH), 1)
    moves = moves.mutate(
        probability=moves["count"] / moves["count"].sum().over(group_by=moves.source)
    )
    table = source.con.execute(moves)
    order = {START: 0, CONVERSION: 2, DROP_OFF: 3}
    table["_order"] = table.source.map(lambda state: order.get(state, 1))
    table = table.sort_values(
        ["_order", "source", "count", "target"], ascending=[True, True, False, True]
    )
    return table.drop(columns=["_order", "value"]).reset_index(drop=True)


def funnel(
    settings: Settings, period: Period, *, con: BaseBackend | Workspace | None = None
) -> pd.DataFrame:
    """The stage funnel of customers whose first touch ever fell in the period, per starting
    channel: how many reached session → contact → qualified → sale by the period's end
    (reaching a later stage counts as passing the earlier ones), with drop-off per step."""
    source = inputs(settings, period, con)
    firsts = source.sessions.mutate(
        _rank=ibis.row_number().over(
            group_by=source.sessions.customer_id,
            order_by=[source.sessions.started_at, source.sessions.seq],
        )
    )
    firsts = firsts.filter(firsts._rank == 0)
    newcomers = in_period(firsts, "started_at", period).select("customer_id", "channel")
    done = source.conversions.group_by("customer_id").agg(
        **{f"_{kind}": (source.conversions.kind == kind).max() for kind in KINDS}
    )
    joined = newcomers.left_join(done, "customer_id")
    sale = ibis.coalesce(joined._sale, False)
    qualified = sale | ibis.coalesce(joined._qualified, False)
    contact = qualified | ibis.coalesce(joined._contact, False)
    table = source.con.execute(
        joined.group_by("channel").agg(
            sessions=ibis._.count(),
            contacts=contact.cast("int64").sum(),
            qualified=qualified.cast("int64").sum(),
            sales=sale.cast("int64").sum(),
        )
    )
    for before, after in itertools.pairwise(("sessions", "contacts", "qualified", "sales")):
        table[f"{before}_to_{after}_drop_off"] = table[before] - table[after]
    table["sale_rate"] = _rate(table.sales, table.sessions)
    return _by_sessions(table)


def _sessions_per_channel(source: Inputs) -> ibis.Table:
    """Sessions started in the period per channel: ``sessions`` by the session's channel,
    ``sessions_by_original_channel`` by the customer's original channel."""
    started = in_period(source.sessions, "started_at", source.period)
    one, none = ibis.literal(1, "int64"), ibis.literal(0, "int64")
    both = ibis.union(
        started.select("channel", sessions=one, sessions_by_original_channel=none),
        started.select(
            channel=started.original_channel, sessions=none, sessions_by_original_channel=one
        ),
    )
    return both.group_by("channel").agg(
        sessions=both.sessions.sum(),
        sessions_by_original_channel=both.sessions_by_original_channel.sum(),
    )


def _session_counts(source: Inputs) -> ibis.Table:
    """One row per session started in the period, shaped like ``_conversion_counts``."""
    started = in_period(source.sessions, "started_at", source.period)
    none = ibis.literal(0, "int64")
    return started.select(
        at=started.started_at,
        sessions=ibis.literal(1, "int64"),
        contacts=none,
        qualified=none,
        sales=none,
        revenue=ibis.literal(0.0, "float64"),
    )


def _conversion_counts(source: Inputs) -> ibis.Table:
    """One row per conversion in the period: the conversions channel credit is shared out."""
    found = in_period(source.conversions, "converted_at", source.period)
    sale = found.kind == "sale"
    return found.select(
        at=found.converted_at,
        sessions=ibis.literal(0, "int64"),
        contacts=(found.kind == "contact").cast("int64"),
        qualified=(found.kind == "qualified").cast("int64"),
        sales=sale.cast("int64"),
        revenue=ibis.ifelse(sale, found.value, 0.0).cast("float64"),
    )


def _day_bounds(calendar: list[tuple[date, datetime, datetime]]) -> pa.Table:
    """The UTC instants each day starts and ends at, numbered, for a range join."""
    return pa.table(
        {
            "day_index": range(len(calendar)),
            "day_start": [start for _, start, _ in calendar],
            "day_end": [end for _, _, end in calendar],
        },
        schema=_DAY_BOUNDS,
    )


def _every_day(per_day: pd.DataFrame, dates: list[date]) -> pd.DataFrame:
    """Totals by day index as one row per date, quiet days zero-filled."""
    table = per_day.set_index("day_index").reindex(range(len(dates)), fill_value=0)
    table = table.astype(dict.fromkeys(DAILY_COUNTS, "int64") | {"revenue": "float64"})
    table.insert(0, "day", dates)
    return table.reset_index(drop=True)


def _credit_by_kind(
    source: Inputs, models: list[str], kinds: list[str] | tuple[str, ...] = KINDS
) -> pd.DataFrame:
    """Credit per (kind, channel) for each model, as ``<model>_conversions``/``_value``."""
    rules = source.settings.analytics
    rule_models = [m for m in models if m in RULE_MODELS]
    journeys = source.converting(kinds, reused=len(rule_models) < len(models))
    frames = []
    if rule_models:
        frames.append(rule_credit(source.con, journeys, rule_models, rules, ["kind", "channel"]))
    for model in (m for m in models if m in DATA_DRIVEN_MODELS):
        chain = source.chain(kinds, journeys) if model == "markov" else None
        shared = data_driven_credit(source.con, model, journeys, chain, rules, list(kinds))
        names = {"conversions": f"{model}_conversions", "value": f"{model}_value"}
        frames.append(shared.rename(columns=names))
    credited = frames[0]
    for frame in frames[1:]:
        credited = credited.merge(frame, on=["kind", "channel"], how="outer")
    columns = credit_columns(models)
    credited[columns] = credited[columns].fillna(0.0).astype("float64")
    return credited


def _rate(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator > 0)).fillna(0.0)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidInput(
            f"unknown conversion {kind!r}; choose from {', '.join(KINDS)}", field="kind"
        )


def _by_sessions(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["sessions", "channel"], ascending=[False, True], ignore_index=True)
