"""Journeys: the touches before each conversion (within the lookback window), the touches
of customers who dropped off, and the same shape built from aggregated path data. Every
model, path listing and transition count reads these rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import ibis

from plait.analytics.catalog import NO_TOUCH

START, CONVERSION, DROP_OFF = "(start)", "(conversion)", "(drop-off)"
STATE_SEPARATOR = " > "
_ORDER_WIDTH = 6


def conversion_journeys(
    conversions: ibis.Table,
    sessions: ibis.Table,
    milestones: ibis.Table,
    *,
    lookback_days: float,
    collapse_repeats: bool,
) -> ibis.Table:
    """One row per touch before each conversion (touches in the lookback window, up to and
    including the conversion's moment); a conversion with no touch gets one ``(none)`` row."""
    targets = conversions.left_join(milestones, "customer_id").drop("customer_id_right")
    touches = sessions.select(
        touch_customer=sessions.customer_id,
        touch_at=sessions.started_at,
        touch_seq=sessions.seq,
        channel=sessions.channel,
    )
    lookback = ibis.interval(seconds=round(lookback_days * 86400))
    joined = targets.left_join(
        touches,
        [
            targets.customer_id == touches.touch_customer,
            touches.touch_at <= targets.converted_at,
            touches.touch_at >= targets.converted_at - lookback,
        ],
    )
    rows = joined.select(
        journey_id=joined.conversion_id,
        customer_id=joined.customer_id,
        kind=joined.kind,
        converted_at=joined.converted_at,
        conversions=ibis.literal(1.0),
        nulls=ibis.literal(0.0),
        value=joined.value,
        channel=ibis.coalesce(joined.channel, NO_TOUCH),
        touch_at=joined.touch_at,
        touch_seq=joined.touch_seq,
        age_seconds=(joined.converted_at.epoch_seconds() - joined.touch_at.epoch_seconds()).cast(
            "float64"
        ),
        contact_at=joined.contact_at,
        qualified_at=joined.qualified_at,
    )
    return number(
        rows,
        ["touch_at", "touch_seq"],
        collapse_repeats,
        contact_pos=lambda touches: touches.touch_at <= touches.contact_at,
        qualified_pos=lambda touches: touches.touch_at <= touches.qualified_at,
    )


def as_of(journeys: ibis.Table, end: datetime) -> ibis.Table:
    """Conversion journeys as known at ``end``: a customer's contact or qualification at
    or after it is not known yet, so it marks no touch (journeys built from the whole
    history know it)."""
    contact = journeys.contact_at < end
    qualified = journeys.qualified_at < end
    return journeys.mutate(
        contact_at=ibis.ifelse(contact, journeys.contact_at, ibis.null(journeys.contact_at.type())),
        qualified_at=ibis.ifelse(
            qualified, journeys.qualified_at, ibis.null(journeys.qualified_at.type())
        ),
        contact_pos=ibis.ifelse(contact, journeys.contact_pos, ibis.null("int64")),
        qualified_pos=ibis.ifelse(qualified, journeys.qualified_pos, ibis.null("int64")),
    )


def period_journeys(
    sessions: ibis.Table, *, start: datetime, end: datetime, collapse_repeats: bool
) -> ibis.Table:
    """Each customer's touches in the period as one journey (``drop:<customer>``) that did
    not convert: what ``drop_off_journeys`` keeps some of."""
    touches = sessions.filter(sessions.started_at >= start, sessions.started_at < end)
    rows = touches.select(
        journey_id=ibis.literal("drop:").concat(touches.customer_id),
        customer_id=touches.customer_id,
        conversions=ibis.literal(0.0),
        nulls=ibis.literal(1.0),
        value=ibis.literal(0.0),
        channel=touches.channel,
        touch_at=touches.started_at,
        touch_seq=touches.seq,
    )
    return number(rows, ["touch_at", "touch_seq"], collapse_repeats)


def drop_off_journeys(
    journeys: ibis.Table,
    conversions: ibis.Table,
    *,
    kinds: Sequence[str],
    start: datetime,
    end: datetime,
) -> ibis.Table:
    """The ``period_journeys`` towards each of ``kinds`` (a ``kind`` column) of customers
    who did not convert to it in the period — leaving out, for contact and qualified,
    customers who reached that stage before (``conversions`` has a customer's first)."""
    towards = ibis.union(*(journeys.mutate(kind=ibis.literal(kind)) for kind in kinds))
    at = conversions.converted_at
    converted = conversions.filter(at >= start, at < end)
    reached = conversions.filter(conversions.kind != "sale", at < start)
    excluded = ibis.union(
        *(
            found.select(excluded_customer=found.customer_id, excluded_kind=found.kind)
            for found in (converted, reached)
        )
    )
    return towards.anti_join(
        excluded,
        [
            towards.customer_id == excluded.excluded_customer,
            towards.kind == excluded.excluded_kind,
        ],
    )


def exploded(arrays: ibis.Table, collapse_repeats: bool) -> ibis.Table:
    """Journey rows from path arrays; positions come from the array, so no window is
    needed unless repeats are collapsed."""
    rows = arrays.mutate(n=arrays.channels.length().cast("int64")).unnest("channels", offset="step")
    rows = rows.select(
        journey_id=rows.journey_id,
        conversions=rows.conversions,
        nulls=rows.nulls,
        value=rows.value,
        channel=rows.channels,
        step=rows.step,
        pos=(rows.step + 1).cast("int64"),
        n=rows.n,
        age_seconds=ibis.null("float64"),
        contact_pos=ibis.null("int64"),
        qualified_pos=ibis.null("int64"),
    )
    if collapse_repeats:
        rows = rows.drop("pos", "n")
        return number(rows, ["step"], True)
    return rows


def number(
    rows: ibis.Table,
    order_by: Sequence[str],
    collapse_repeats: bool,
    **prefixes: Callable[[ibis.Table], ibis.BooleanValue],
) -> ibis.Table:
    """Add ``pos`` (1-based, in ``order_by`` order) and ``n`` per journey, first dropping a
    touch that repeats the channel before it if ``collapse_repeats``. Each of ``prefixes``
    is a condition that holds for a leading run of a journey's rows (``touch_at <= t``); its
    column is the position of the run's last row, null if none. All are computed in one
    window pass (one sort), which is most of what crediting a journey costs."""

    def journey(table: ibis.Table) -> ibis.Window:
        return ibis.window(group_by=table.journey_id, order_by=[table[c] for c in order_by])

    if collapse_repeats:
        previous = rows.channel.lag().over(journey(rows))
        rows = rows.mutate(_repeat=ibis.coalesce(previous == rows.channel, False))
        rows = rows.filter(~rows._repeat).drop("_repeat")
    ordered = journey(rows)
    return rows.mutate(
        pos=(ibis.row_number().over(ordered) + 1).cast("int64"),
        n=rows.count().over(ordered).cast("int64"),
        **{
            name: condition(rows).cast("int64").sum().over(ordered).nullif(0)
            for name, condition in prefixes.items()
        },
    )


def path_strings(journeys: ibis.Table) -> ibis.Table:
    """One row per journey with its ``path`` as text (``Email > Direct > Store``), plus
    ``conversions``, ``nulls`` and ``value``. Built by sorting position-prefixed channels,
    since Spark cannot order an aggregate."""
    keyed = journeys.mutate(
        _key=journeys.pos.cast("string").lpad(_ORDER_WIDTH, "0").concat("|", journeys.channel)
    )
    grouped = keyed.group_by("journey_id").agg(
        _keys=keyed._key.collect(),
        conversions=keyed.conversions.max(),
        nulls=keyed.nulls.max(),
        value=keyed.value.max(),
    )
    return grouped.mutate(
        path=grouped._keys.sort()
        .map(lambda key: key.substr(_ORDER_WIDTH + 1))
        .join(STATE_SEPARATOR)
    ).drop("_keys")


def transition_counts(journeys: ibis.Table, order: int = 1, by: Sequence[str] = ()) -> ibis.Table:
    """How many journeys moved from each state to the next: ``(start)`` → states →
    ``(conversion)`` / ``(drop-off)``, with the value carried into conversion. A state is the
    last ``order`` channels (Markov order). Counted per ``by`` columns, if any, which tell
    journeys apart as much as ``journey_id`` does."""
    keys = [journeys[name] for name in by]
    ordered = ibis.window(group_by=[*keys, journeys.journey_id], order_by=journeys.pos)
    state = journeys.channel
    for back in range(1, order):
        earlier = journeys.channel.lag(back).over(ordered)
        state = ibis.ifelse(earlier.isnull(), state, earlier.concat(STATE_SEPARATOR, state))
    rows = journeys.mutate(state=state, weight=journeys.conversions + journeys.nulls)
    rows = rows.mutate(previous=ibis.coalesce(rows.state.lag().over(ordered), START))
    steps = rows.select(*by, source=rows.previous, target=rows.state, count=rows.weight, value=0.0)
    ends = rows.filter(rows.pos == rows.n)
    converted = ends.select(
        *by,
        source=ends.state,
        target=ibis.literal(CONVERSION),
        count=ends.conversions,
        value=ends.value,
    )
    dropped = ends.select(
        *by, source=ends.state, target=ibis.literal(DROP_OFF), count=ends.nulls, value=0.0
    )
    moves = ibis.union(steps, converted, dropped)
    moves = moves.filter(moves["count"] > 0)
    return moves.group_by([*by, "source", "target"]).agg(
        count=moves["count"].sum(), value=moves.value.sum()
    )
