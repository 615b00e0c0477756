"""Attribution models: how a conversion's credit is shared among the touches before it.

The rule-based models are weights computed set-wise in the engine over *journey rows* — one
row per touch of a conversion's path, with ``journey_id``, ``pos`` (1-based), ``n``,
``channel``, ``age_seconds`` (conversion time minus touch time), ``contact_pos`` and
``qualified_pos`` (the touches that made the contact and the qualified lead). The Markov and
Shapley models are solved on aggregates (see ``markov.py`` and ``shapley.py``)."""

from __future__ import annotations

import ibis

from plait.core.settings import AnalyticsSettings


def credit(journeys: ibis.Table, models: list[str], rules: AnalyticsSettings) -> ibis.Table:
    """``journeys`` with a ``<model>_weight`` column per rule model; per journey the weights
    of each model sum to 1. Only last non-direct and time decay need a journey total beyond
    ``n`` and the key positions, and they share one window pass. Divisions are by floats:
    Spark reads ``1.0`` as a decimal and would round the quotient to six places."""
    journey = ibis.window(group_by=journeys.journey_id)
    rows = journeys
    totals = {}
    if "last_non_direct" in models:
        non_direct = ibis.ifelse(rows.channel != rules.direct_channel, rows.pos, ibis.null("int64"))
        totals["_non_direct_pos"] = non_direct.max().over(journey)
    if "time_decay" in models:
        decay = ibis.literal(0.5) ** (
            ibis.coalesce(rows.age_seconds, 0) / (rules.half_life_days * 86400)
        )
        totals |= {"_decay": decay, "_decay_total": decay.sum().over(journey)}
    if totals:
        rows = rows.mutate(**totals)
    first = rows.pos == 1
    last = rows.pos == rows.n
    key_touches = [ibis.literal(1, "int64"), rows.contact_pos, rows.qualified_pos]
    custom = rules.custom_weights
    weights = {
        "first_touch": lambda: _indicator(first),
        "last_touch": lambda: _indicator(last),
        "last_non_direct": lambda: _indicator(
            rows.pos == ibis.coalesce(rows._non_direct_pos, rows.n)
        ),
        "linear": lambda: 1 / rows.n.cast("float64"),
        "time_decay": lambda: rows._decay / rows._decay_total,
        "position_based": lambda: _positional(rows, 0.4, 0.2, 0.4),
        "j_shaped": lambda: _positional(rows, 0.2, 0.2, 0.6),
        "inverse_j": lambda: _positional(rows, 0.6, 0.2, 0.2),
        "w_shaped": lambda: _key_touch_share(rows, key_touches, 0.3, 0.1),
        "full_path": lambda: _key_touch_share(rows, [*key_touches, rows.n], 0.225, 0.1),
        "custom": lambda: _positional(rows, custom.first, custom.middle, custom.last),
    }
    weighted = rows.mutate(**{f"{model}_weight": weights[model]() for model in models})
    return weighted.drop(*(column for column in rows.columns if column.startswith("_")))


def _indicator(condition: ibis.BooleanValue) -> ibis.Value:
    return ibis.ifelse(condition, 1.0, 0.0)


def _key_touch_share(
    rows: ibis.Table, keys: list[ibis.IntegerValue], per_role: float, others: float
) -> ibis.Value:
    """W-shaped and full path: ``per_role`` for each key role a touch holds (``keys`` are the
    positions of the role-holding touches, null when a role is not held; a touch can hold
    several), ``others`` split evenly among the touches that hold none, normalised to 1.
    Computed from positions alone, so no window over the journey is needed."""
    roles = sum(ibis.coalesce(rows.pos == key, False).cast("int64") for key in keys)
    held = sum(key.notnull().cast("int64") for key in keys)
    distinct = sum(
        (key.notnull() & ibis.and_(*(ibis.coalesce(key != seen, True) for seen in keys[:i]))).cast(
            "int64"
        )
        for i, key in enumerate(keys)
    )
    rest = rows.n - distinct
    total = held * per_role + ibis.ifelse(rest > 0, others, 0.0)
    return ibis.ifelse(roles > 0, roles * per_role, others / rest.cast("float64")) / total


def _positional(rows: ibis.Table, first: float, middle: float, last: float) -> ibis.Value:
    """First/middle/last shares; a two-touch path splits in the ratio of first to last, a
    one-touch path gives its touch everything."""
    ends = first + last
    two_first, two_last = (first / ends, last / ends) if ends > 0 else (0.5, 0.5)
    return ibis.cases(
        (rows.n == 1, 1.0),
        (rows.n == 2, ibis.ifelse(rows.pos == 1, two_first, two_last)),
        (rows.pos == 1, first),
        (rows.pos == rows.n, last),
        else_=middle / (rows.n.cast("float64") - 2),
    )
