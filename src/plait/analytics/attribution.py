"""Credit per channel under each model, from journey rows (see ``journeys.py``): the rule
models as one set-wise aggregate in the engine, Markov and Shapley from small aggregates
(transition counts, channel-set totals) solved in NumPy."""

from __future__ import annotations

import ibis
import pandas as pd
from ibis.backends import BaseBackend

from plait.analytics.journeys import transition_counts
from plait.analytics.markov import markov_credit
from plait.analytics.models import DATA_DRIVEN_MODELS, NO_TOUCH, credit
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
    chain: ibis.Table,
    rules: AnalyticsSettings,
) -> pd.DataFrame:
    """Per channel ``conversions`` and ``value`` under ``markov`` or ``shapley``.
    ``converting`` holds the conversions' journeys, ``chain`` those plus the drop-offs';
    conversions with no touch go to ``(none)``."""
    assert model in DATA_DRIVEN_MODELS
    totals = con.execute(
        converting.filter(converting.pos == 1)
        .group_by(untouched=converting.channel == NO_TOUCH)
        .agg(conversions=converting.conversions.sum(), value=converting.value.sum())
    )
    touched = totals[~totals.untouched.astype(bool)]
    untouched = totals[totals.untouched.astype(bool)]
    conversions = float(touched.conversions.sum())
    value = float(touched.value.sum())
    if model == "markov":
        paths = chain.filter(chain.channel != NO_TOUCH)
        shared = markov_credit(
            con.execute(transition_counts(paths, rules.markov_order)), conversions, value
        )
    else:
        shared = _shapley(con, converting.filter(converting.channel != NO_TOUCH))
    if not untouched.empty:
        none = pd.DataFrame(
            {
                "channel": [NO_TOUCH],
                "conversions": [float(untouched.conversions.sum())],
                "value": [float(untouched.value.sum())],
            }
        )
        shared = pd.concat([shared, none], ignore_index=True)
    return shared


def _shapley(con: BaseBackend, converting: ibis.Table) -> pd.DataFrame:
    members = converting.group_by(["journey_id", "channel"]).agg(
        conversions=converting.conversions.max(), value=converting.value.max()
    )
    channels = sorted(con.execute(members.select("channel").distinct()).channel.tolist())
    if len(channels) > MAX_CHANNELS:
        return shapley_credit(pd.DataFrame(), channels)  # a clear error: too many channels
    bits = ibis.memtable(
        pd.DataFrame({"bit_channel": channels, "bit": [1 << i for i in range(len(channels))]})
    )
    keyed = members.join(bits, members.channel == bits.bit_channel)
    journeys = keyed.group_by("journey_id").agg(
        mask=keyed.bit.sum(), conversions=keyed.conversions.max(), value=keyed.value.max()
    )
    coalitions = journeys.group_by("mask").agg(
        conversions=journeys.conversions.sum(), value=journeys.value.sum()
    )
    return shapley_credit(con.execute(coalitions), channels)
