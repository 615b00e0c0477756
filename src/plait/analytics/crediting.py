"""Credit per channel under each model, from journey rows (see ``journeys.py``): the rule
models as one set-wise aggregate in the engine, Markov and Shapley from small aggregates
(transition counts, channel-set totals) solved in NumPy."""

from __future__ import annotations

import ibis
import pandas as pd
from ibis.backends import BaseBackend

from plait.analytics.catalog import DATA_DRIVEN_MODELS, NO_TOUCH
from plait.analytics.journeys import transition_counts
from plait.analytics.markov import markov_credit
from plait.analytics.models import credit
from plait.analytics.shapley import MAX_CHANNELS, shapley_credit
from plait.core.settings import AnalyticsSettings


def rule_credit(
    con: BaseBackend,
    journeys: ibis.Table,
    models: list[str],
    rules: AnalyticsSettings,
    by: list[str],
) -> pd.DataFrame:
    """``<model>_conversions`` and ``<model>_value`` per ``by`` (which includes ``channel``)
    for each rule model, in one pass."""
    weighted = credit(journeys, models, rules)
    sums = {}
    for model in models:
        weight = weighted[f"{model}_weight"]
        sums[f"{model}_conversions"] = (weight * weighted.conversions).sum()
        sums[f"{model}_value"] = (weight * weighted.value).sum()
    return con.execute(weighted.group_by(by).agg(**sums))


def data_driven_credit(
    con: BaseBackend,
    model: str,
    converting: ibis.Table,
    chain: ibis.Table | None,
    rules: AnalyticsSettings,
    kinds: list[str],
) -> pd.DataFrame:
    """Per ``kind`` and ``channel``, ``conversions`` and ``value`` under ``markov`` or
    ``shapley``. ``converting`` holds the journey rows of the conversions of ``kinds``;
    Markov also reads ``chain``, those plus the drop-offs' towards each kind (see
    ``Inputs.chain``). Conversions with no touch go to ``(none)``."""
    assert model in DATA_DRIVEN_MODELS
    assert chain is not None or model != "markov"
    firsts = converting.filter(converting.pos == 1)
    totals = con.execute(
        firsts.group_by("kind", untouched=firsts.channel == NO_TOUCH).agg(
            conversions=firsts.conversions.sum(), value=firsts.value.sum()
        )
    )
    totals["untouched"] = totals.untouched.astype(bool)
    if model == "markov":
        touched = chain.filter(chain.channel != NO_TOUCH)
        moves = con.execute(transition_counts(touched, rules.markov_order, by=["kind"]))
    parts = []
    for kind in kinds:
        mine = totals[totals.kind == kind]
        if model == "markov":
            done = mine[~mine.untouched]
            shared = markov_credit(
                moves[moves.kind == kind].drop(columns="kind").reset_index(drop=True),
                float(done.conversions.sum()),
                float(done.value.sum()),
            )
        else:
            shared = _shapley(con, _members(converting.filter(converting.kind == kind)))
        parts.append(_with_untouched(shared, mine[mine.untouched]).assign(kind=kind))
    return pd.concat(parts, ignore_index=True)


def _members(converting: ibis.Table) -> ibis.Table:
    """Each converting journey's touched channels, one row each, for ``_shapley``."""
    touches = converting.filter(converting.channel != NO_TOUCH)
    return touches.group_by(["journey_id", "channel"]).agg(
        conversions=touches.conversions.max(), value=touches.value.max()
    )


def _with_untouched(shared: pd.DataFrame, untouched: pd.DataFrame) -> pd.DataFrame:
    """``shared`` credit and, if any conversion had no touch, a ``(none)`` row for those."""
    if untouched.empty:
        return shared
    none = pd.DataFrame(
        {
            "channel": [NO_TOUCH],
            "conversions": [float(untouched.conversions.sum())],
            "value": [float(untouched.value.sum())],
        }
    )
    return pd.concat([shared, none], ignore_index=True)


def _shapley(con: BaseBackend, members: ibis.Table) -> pd.DataFrame:
    """Shapley credit from converting journeys given as their ``channel`` rows (with
    ``journey_id``, ``conversions`` and ``value``; see ``_members``)."""
    channels = sorted(con.execute(members.select("channel").distinct()).channel.tolist())
    if not channels or len(channels) > MAX_CHANNELS:
        return shapley_credit(pd.DataFrame(), channels)  # nothing to share, or a clear error
    bit = ibis.cases(*((members.channel == name, 1 << i) for i, name in enumerate(channels)))
    keyed = members.mutate(bit=bit)
    masks = keyed.group_by("journey_id").agg(
        mask=keyed.bit.sum(), conversions=keyed.conversions.max(), value=keyed.value.max()
    )
    coalitions = masks.group_by("mask").agg(
        conversions=masks.conversions.sum(), value=masks.value.sum()
    )
    return shapley_credit(con.execute(coalitions), channels)
