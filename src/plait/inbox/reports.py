"""Inbox reports for a date range: volume, first response and resolution times (raw and in
business hours), SLA hit rate and CSAT, per channel, agent or team.

Every figure is computed set-wise in the database (percentiles with window functions, so
SQLite and PostgreSQL answer alike) and returned as a pandas DataFrame for notebooks::

    from plait.inbox.reports import inbox_report, report_period
    inbox_report(engine, report_period("2026-01-01", "2026-01-31", "Europe/Paris"), "agent")

Which conversations count where: *conversations* were created in the range; *inbound* and
*outbound* messages were sent in it (by the message's own channel; per agent and team by its
conversation's assignee and team); first response times belong to conversations first
answered in the range, resolution times, ``resolved`` and the SLA hit rate to those resolved
in it (all their clocks have stopped: a hit is one with no breach), CSAT to surveys answered
in it. Times are in seconds.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import sqlalchemy as sa
import typer
from sqlalchemy.engine import Connection, Engine

from plait.analytics.period import Period, period
from plait.core.clock import utcnow
from plait.core.db import read
from plait.core.errors import InvalidInput
from plait.core.users import users
from plait.inbox.schema import conversations, inboxes, messages, teams

GROUPS = ("channel", "agent", "team")
TOTAL = "total"
NO_GROUP = {"channel": "(none)", "agent": "(unassigned)", "team": "(no team)"}
DEFAULT_DAYS = 30
MISSING = "\u2013"
CLOCKS = ("first_response", "next_response", "resolution")

PERCENTILES = {"median": (1, 2), "p90": (9, 10)}
"""Continuous percentiles (as ``percentile_cont``) as exact fractions: numerator, denominator."""

DURATIONS = {
    "first_response": (conversations.c.first_response_at, conversations.c.first_response_seconds),
    "first_response_business": (
        conversations.c.first_response_at,
        conversations.c.first_response_business_seconds,
    ),
    "resolution": (conversations.c.resolved_at, conversations.c.resolution_seconds),
    "resolution_business": (
        conversations.c.resolved_at,
        conversations.c.resolution_business_seconds,
    ),
}
"""Each time measured: the moment that puts a conversation in the range, and its value."""

COUNTS = ("conversations", "inbound", "outbound", "first_responses", "resolved", "csat_responses")


def report_period(since: str | date | None, until: str | date | None, tz: str = "UTC") -> Period:
    """Days ``since``..``until`` (inclusive, ``YYYY-MM-DD``) in ``tz``; by default the last
    30 days up to today there. A clear error for a bad date, order or time zone."""
    tz = (tz or "").strip() or "UTC"
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {tz!r}", field="tz") from None
    last = _day(until, "until") if until else utcnow().astimezone(zone).date()
    first = _day(since, "since") if since else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput(f"since ({first}) is after until ({last})", field="since")
    return period(first, last, tz)


def _day(value: str | date, field: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise InvalidInput(f"{field} is not a date (YYYY-MM-DD): {value!r}", field=field) from None


def check_group(by: str) -> str:
    if by not in GROUPS:
        raise InvalidInput(f"by is one of {', '.join(GROUPS)}", field="by")
    return by


def inbox_report(source: Engine | Connection, span: Period, by: str = "channel") -> pd.DataFrame:
    """One row per channel, agent or team (column named ``by``) with every figure."""
    check_group(by)
    return _run(source, span, by)


def inbox_totals(source: Engine | Connection, span: Period) -> pd.DataFrame:
    """The same figures over every conversation: one row."""
    return _run(source, span, None)


def _run(source: Engine | Connection, span: Period, by: str | None) -> pd.DataFrame:
    if isinstance(source, Engine):
        with read(source) as conn:
            return report_frame(conn, span, by)
    return report_frame(source, span, by)


def report_frame(conn: Connection, span: Period, by: str | None) -> pd.DataFrame:
    """Every figure for ``span`` grouped by ``by`` (None: one row of totals)."""
    parts = [
        _volume(conn, span, by),
        _messages(conn, span, by),
        *(_duration(conn, span, by, name) for name in DURATIONS),
        _sla(conn, span, by),
        _csat(conn, span, by),
    ]
    frame = parts[0]
    for part in parts[1:]:
        frame = frame.merge(part, on="key", how="outer")
    for column in _COLUMNS:
        if column in COUNTS:
            frame[column] = frame[column].astype(float).fillna(0).astype(int)
        else:
            frame[column] = frame[column].astype(float)
    frame = frame[["key", *_COLUMNS]]
    if by is None:
        return frame.drop(columns="key").reset_index(drop=True)
    frame = frame.sort_values(["conversations", "key"], ascending=[False, True])
    return frame.rename(columns={"key": by}).reset_index(drop=True)


_COLUMNS = [
    "conversations",
    "inbound",
    "outbound",
    "first_responses",
    *(f"{name}_{stat}" for name in ("first_response", "first_response_business") for stat in (
        "avg", "median", "p90")),
    "resolved",
    *(f"{name}_{stat}" for name in ("resolution", "resolution_business") for stat in (
        "avg", "median", "p90")),
    "sla_hit_rate",
    "first_response_sla_hit_rate",
    "csat_responses",
    "csat_average",
    "csat_satisfied",
]  # fmt: skip


def _conversation_key(by: str | None) -> tuple[sa.ColumnElement[Any] | None, sa.FromClause]:
    """The grouping column of a conversation, and what to select it from."""
    if by == "channel":
        joined = conversations.join(inboxes, inboxes.c.id == conversations.c.inbox_id)
        return inboxes.c.channel, joined
    if by == "agent":
        return users.c.email, conversations.outerjoin(
            users, users.c.id == conversations.c.assignee_id
        )
    if by == "team":
        return teams.c.name, conversations.outerjoin(teams, teams.c.id == conversations.c.team_id)
    return None, conversations


def _grouped(
    conn: Connection,
    by: str | None,
    key: sa.ColumnElement[Any] | None,
    source: sa.FromClause,
    columns: dict[str, sa.ColumnElement[Any]],
    *where: sa.ColumnElement[bool],
) -> pd.DataFrame:
    """``columns`` aggregated per ``key`` over ``source`` (one row of totals when None)."""
    label = key.label("key") if key is not None else sa.null().label("key")
    query = sa.select(label, *(value.label(name) for name, value in columns.items()))
    query = query.select_from(source).where(*where)
    if key is not None:
        query = query.group_by(key)
    frame = pd.DataFrame(conn.execute(query).all(), columns=["key", *columns])
    frame["key"] = frame["key"].fillna(NO_GROUP[by]) if by else TOTAL
    return frame


def _in(column: sa.ColumnElement[Any], span: Period) -> sa.ColumnElement[bool]:
    return sa.and_(column >= span.start, column < span.end)


def _float(value: sa.ColumnElement[Any]) -> sa.ColumnElement[float]:
    return sa.cast(value, sa.Float)


def _share(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[float]:
    return _float(sa.func.avg(sa.case((condition, 1.0), else_=0.0)))


def _volume(conn: Connection, span: Period, by: str | None) -> pd.DataFrame:
    key, source = _conversation_key(by)
    counts = {"conversations": sa.func.count()}
    return _grouped(conn, by, key, source, counts, _in(conversations.c.created_at, span))


def _messages(conn: Connection, span: Period, by: str | None) -> pd.DataFrame:
    """Inbound and outbound messages sent in the range (notes are not messages)."""
    if by == "channel":
        key, source = messages.c.channel, messages
    else:
        key, joined = _conversation_key(by)
        source = messages.outerjoin(joined, conversations.c.id == messages.c.conversation_id)
    counts = {
        "inbound": sa.func.count(sa.case((messages.c.direction == "in", 1))),
        "outbound": sa.func.count(sa.case((messages.c.direction == "out", 1))),
    }
    return _grouped(
        conn,
        by,
        key,
        source,
        counts,
        _in(messages.c.created_at, span),
        messages.c.direction.in_(("in", "out")),
    )


def _duration(conn: Connection, span: Period, by: str | None, name: str) -> pd.DataFrame:
    """Count, average, median and 90th percentile of one time, per group.

    Each value is ranked within its group by a window; a continuous percentile ``p = a/b``
    of ``n`` values lies between the ranks ``k+1`` and ``k+2`` for ``k = (n-1)a div b``, at
    ``r/b`` of the way for ``r = (n-1)a mod b`` — integer arithmetic both databases share."""
    at, value = DURATIONS[name]
    key, source = _conversation_key(by)
    partition = [key] if key is not None else None
    ranked = (
        sa.select(
            (key if key is not None else sa.null()).label("key"),
            value.label("value"),
            sa.func.row_number().over(partition_by=partition, order_by=value).label("rank"),
            sa.func.count().over(partition_by=partition).label("n"),
        )
        .select_from(source)
        .where(_in(at, span), value.is_not(None))
        .subquery()
    )
    columns: dict[str, sa.ColumnElement[Any]] = {
        "count": sa.func.count(),
        "avg": _float(sa.func.avg(ranked.c.value)),
    }
    for stat, (numerator, denominator) in PERCENTILES.items():
        lower = (ranked.c.n - 1) * numerator // denominator
        rest = (ranked.c.n - 1) * numerator % denominator
        weight = sa.case(
            (ranked.c.rank == lower + 1, denominator - rest),
            (ranked.c.rank == lower + 2, rest),
            else_=0,
        )
        columns[stat] = _float(sa.func.sum(ranked.c.value * weight)) / denominator
    group = ranked.c.key if key is not None else None
    frame = _grouped(conn, by, group, ranked, columns)
    renamed = {stat: f"{name}_{stat}" for stat in ("avg", "median", "p90")}
    count = {"first_response": "first_responses", "resolution": "resolved"}.get(name)
    if count:
        renamed["count"] = count
    else:
        frame = frame.drop(columns="count")
    return frame.rename(columns=renamed)


def breached(clock: str) -> sa.ColumnElement[bool]:
    """Whether the conversation missed ``clock`` (its name is in ``sla_breaches``)."""
    return sa.cast(conversations.c.sla_breaches, sa.Text).like(f'%"{clock}_due"%')


def _sla(conn: Connection, span: Period, by: str | None) -> pd.DataFrame:
    """Share of resolved conversations that missed no clock, and of first responses on time."""
    key, source = _conversation_key(by)
    missed_any = sa.or_(*(breached(clock) for clock in CLOCKS))
    resolved = _grouped(
        conn,
        by,
        key,
        source,
        {"sla_hit_rate": _share(sa.not_(missed_any))},
        _in(conversations.c.resolved_at, span),
    )
    answered = _grouped(
        conn,
        by,
        key,
        source,
        {"first_response_sla_hit_rate": _share(sa.not_(breached("first_response")))},
        _in(conversations.c.first_response_at, span),
    )
    return resolved.merge(answered, on="key", how="outer")


def _csat(conn: Connection, span: Period, by: str | None) -> pd.DataFrame:
    """Survey answers in the range: how many, their average and the share rating 4 or 5."""
    key, source = _conversation_key(by)
    score = conversations.c.csat_score
    columns = {
        "csat_responses": sa.func.count(),
        "csat_average": _float(sa.func.avg(_float(score))),
        "csat_satisfied": _share(score >= 4),
    }
    return _grouped(
        conn,
        by,
        key,
        source,
        columns,
        _in(conversations.c.csat_answered_at, span),
        score.is_not(None),
    )


def report_json(conn: Connection, span: Period, by: str) -> dict[str, Any]:
    """The report as the API and ``plait report inbox --json`` give it."""
    rows = report_frame(conn, span, check_group(by))
    totals = report_frame(conn, span, None)
    return {
        "since": span.first.isoformat(),
        "until": span.last.isoformat(),
        "tz": span.tz,
        "by": by,
        "rows": _records(rows),
        "total": _records(totals)[0],
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [
        {
            name: round(value, 3) if isinstance(value, float) else value
            for name, value in row.items()
        }
        for row in records
    ]


# --- plait report inbox ------------------------------------------------------------------


def duration_text(seconds: float | None) -> str:
    """A time for people: ``45s``, ``12m 05s``, ``3h 20m``, ``2d 4h``."""
    if seconds is None or pd.isna(seconds):
        return MISSING
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def percent_text(value: float | None) -> str:
    """A share as a whole percentage: ``67 %``."""
    return MISSING if value is None or pd.isna(value) else f"{value * 100:.0f} %"


def score_text(value: float | None) -> str:
    """A CSAT score with two decimals: ``4.25``."""
    return MISSING if value is None or pd.isna(value) else f"{value:.2f}"


TABLE_COLUMNS = {
    "conversations": ("Conver-\nsations", str),
    "inbound": ("In", str),
    "outbound": ("Out", str),
    "first_response_median": ("First reply\nmedian", duration_text),
    "first_response_p90": ("First reply\np90", duration_text),
    "first_response_business_median": ("First reply\nmedian (bh)", duration_text),
    "resolution_median": ("Resolution\nmedian", duration_text),
    "resolution_business_median": ("Resolution\nmedian (bh)", duration_text),
    "sla_hit_rate": ("SLA\nhit", percent_text),
    "csat_average": ("CSAT\naverage", score_text),
    "csat_satisfied": ("CSAT\n4 or 5", percent_text),
    "csat_responses": ("CSAT\nratings", str),
}
"""What the table shows (``--json`` has every figure); (bh): in business hours."""


def report_inbox(
    since: Annotated[
        str | None, typer.Option(help="first day, YYYY-MM-DD (default: 30 days ago)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="last day (inclusive; default: today)")] = None,
    by: Annotated[str, typer.Option(help="channel, agent or team")] = "channel",
    tz: Annotated[str, typer.Option(help="time zone the days are in")] = "UTC",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Inbox volume, response and resolution times, SLA hit rate and CSAT per channel/agent/team."""
    from plait.core.console import console, open_database, print_json, print_table

    check_group(by)
    span = report_period(since, until, tz)
    with read(open_database()) as conn:
        report = report_json(conn, span, by)
    if as_json:
        print_json(report)
        return
    rows = [*report["rows"], {by: "total", **report["total"]}]
    shown = [
        {by: row[by], **{label: show(row[name]) for name, (label, show) in TABLE_COLUMNS.items()}}
        for row in rows
    ]
    title = f"Inbox by {by}, {span.first}..{span.last} ({span.tz})"
    print_table(shown, [by, *(label for label, _ in TABLE_COLUMNS.values())], title=title)
    console.print("(bh): in business hours; --json gives every figure", style="dim")
