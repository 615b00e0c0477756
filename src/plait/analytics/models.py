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
    of each model sum to 1. Divisions are by floats: Spark reads ``1.0`` as a decimal and
    would round the quotient to six places."""
    journey = ibis.window(group_by=journeys.journey_id)
    first = journeys.pos == 1
    last = journeys.pos == journeys.n
    rows = journeys
    # Helper columns (windows over the journey) only for the models that need them.
    if "last_non_direct" in models:
        non_direct = ibis.ifelse(rows.channel != rules.direct_channel, rows.pos, ibis.null("int64"))
        rows = rows.mutate(_non_direct_pos=non_direct.max().over(journey))
    if "time_decay" in models:
        half_life = rules.half_life_days * 86400
        rows = rows.mutate(
            _decay=ibis.literal(0.5) ** (ibis.coalesce(rows.age_seconds, 0) / half_life)
        )
        rows = rows.mutate(_decay_total=rows._decay.sum().over(journey))
    for model, roles, per_role in (
        ("w_shaped", _roles(rows, first), 0.3),
        ("full_path", _roles(rows, first) + last.cast("int64"), 0.225),
    ):
        if model in models:
            rows = rows.mutate(**{f"_{model}_roles": roles})
            held = rows[f"_{model}_roles"]
            rest = (held == 0).cast("float64").sum().over(journey)
            rows = rows.mutate(**{f"_{model}_raw": _role_share(held, rest, per_role, 0.1)})
            raw = rows[f"_{model}_raw"]
            rows = rows.mutate(**{f"_{model}_share": raw / raw.sum().over(journey)})
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
        "w_shaped": lambda: rows._w_shaped_share,
        "full_path": lambda: rows._full_path_share,
        "custom": lambda: _positional(rows, custom.first, custom.middle, custom.last),
    }
    weighted = rows.mutate(**{f"{model}_weight": weights[model]() for model in models})
    return weighted.drop(*(column for column in rows.columns if column.startswith("_")))


def _indicator(condition: ibis.BooleanValue) -> ibis.Value:
    return ibis.ifelse(condition, 1.0, 0.0)


def _roles(journeys: ibis.Table, first: ibis.BooleanValue) -> ibis.Value:
    """How many of the key roles a touch holds: first touch, made the contact, made the
    qualified lead (a touch can hold several)."""
    return (
        first.cast("int64")
        + ibis.coalesce(journeys.pos == journeys.contact_pos, False).cast("int64")
        + ibis.coalesce(journeys.pos == journeys.qualified_pos, False).cast("int64")
    )


def _role_share(roles: ibis.Value, rest: ibis.Value, per_role: float, others: float) -> ibis.Value:
    """Unnormalised share: ``per_role`` for each role held, ``others`` split among the rest."""
    return ibis.ifelse(roles > 0, roles * per_role, others / rest)


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
