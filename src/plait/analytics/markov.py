"""The Markov chain model: channels (or the last k channels, for order k) are states of an
absorbing chain from ``(start)`` to ``(conversion)`` or ``(drop-off)``. A channel's removal
effect is the share of conversions lost when every state containing it leads to drop-off,
solved exactly with sparse linear algebra (no simulation). Credit is shared in proportion to
the removal effects; value uses the same chain with each conversion's value as its reward."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.linalg import spsolve

from plait.analytics.journeys import CONVERSION, DROP_OFF, START, STATE_SEPARATOR


def removal_effects(transitions: pd.DataFrame) -> pd.DataFrame:
    """Per channel, ``removal_effect`` (share of conversions lost without it) and
    ``value_removal_effect``; ``transitions`` as from ``journeys.transition_counts``."""
    transient = sorted(set(transitions.source) | set(transitions.target) - {CONVERSION, DROP_OFF})
    if START not in transient or transitions.empty:
        return pd.DataFrame(columns=["channel", "removal_effect", "value_removal_effect"])
    index = {state: i for i, state in enumerate(transient)}
    source = transitions.source.map(index).to_numpy()
    outgoing = np.bincount(source, weights=transitions["count"].to_numpy(), minlength=len(index))
    probability = transitions["count"].to_numpy() / outgoing[source]
    inner = transitions.target.isin(index).to_numpy()
    converts = (transitions.target == CONVERSION).to_numpy()
    q = sparse.csr_matrix(
        (probability[inner], (source[inner], transitions.target[inner].map(index).to_numpy())),
        shape=(len(index), len(index)),
    )
    reward = np.bincount(source[converts], probability[converts], minlength=len(index))
    value = np.bincount(
        source[converts],
        transitions.value.to_numpy()[converts] / outgoing[source[converts]],
        minlength=len(index),
    )
    start = index[START]
    full = _absorb(q, np.column_stack([reward, value]), None)[start]
    channels = sorted({c for state in transient if state != START for c in _channels(state)})
    effects = []
    for channel in channels:
        removed = np.array([state != START and channel in _channels(state) for state in transient])
        kept = _absorb(q, np.column_stack([reward, value]), removed)[start]
        effects.append(
            [channel, *(1 - kept[i] / full[i] if full[i] > 0 else 0.0 for i in range(2))]
        )
    return pd.DataFrame(effects, columns=["channel", "removal_effect", "value_removal_effect"])


def markov_credit(transitions: pd.DataFrame, conversions: float, value: float) -> pd.DataFrame:
    """``conversions`` and ``value`` shared among channels by removal effect."""
    effects = removal_effects(transitions)
    shares = effects[["removal_effect", "value_removal_effect"]].clip(lower=0)
    totals = shares.sum()
    return pd.DataFrame(
        {
            "channel": effects.channel,
            "conversions": shares.removal_effect / totals.removal_effect * conversions
            if totals.removal_effect > 0
            else 0.0,
            "value": shares.value_removal_effect / totals.value_removal_effect * value
            if totals.value_removal_effect > 0
            else 0.0,
        }
    )


def _channels(state: str) -> list[str]:
    return state.split(STATE_SEPARATOR)


def _absorb(q: sparse.csr_matrix, rewards: np.ndarray, removed: np.ndarray | None) -> np.ndarray:
    """Expected reward collected from each state: solve (I - Q) x = r, with removed states
    leading straight to drop-off."""
    if removed is not None:
        keep = sparse.diags((~removed).astype(float))
        q = keep @ q
        rewards = rewards * (~removed)[:, None]
    system = sparse.identity(q.shape[0], format="csc") - q.tocsc()
    solved = spsolve(system, rewards)
    return solved.reshape(q.shape[0], -1)
