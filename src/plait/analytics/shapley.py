"""The Shapley value model: a channel's credit is its average marginal contribution over
every order in which channels could join. A coalition's worth is the conversions (or value)
of journeys whose channels all lie within it; computed exactly over all 2^n coalitions with a
subset-sum transform, so up to 15 channels."""

from __future__ import annotations

from math import factorial

import numpy as np
import pandas as pd

from plait.core.errors import InvalidInput

MAX_CHANNELS = 15


def shapley_credit(coalitions: pd.DataFrame, channels: list[str]) -> pd.DataFrame:
    """Per channel ``conversions`` and ``value``. ``coalitions`` holds ``mask`` (bit i set
    when ``channels[i]`` is on the journey), ``conversions`` and ``value`` per distinct mask."""
    n = len(channels)
    if n > MAX_CHANNELS:
        raise InvalidInput(
            f"the Shapley model is exact for up to {MAX_CHANNELS} channels; these journeys "
            f"have {n} (narrow the range or group channels)",
            field="model",
        )
    if n == 0:
        return pd.DataFrame(
            {"channel": pd.Series([], dtype=object), "conversions": [], "value": []}
        )
    size = 1 << n
    worth = np.zeros((size, 2))
    np.add.at(
        worth,
        coalitions["mask"].to_numpy(dtype=np.int64),
        coalitions[["conversions", "value"]].to_numpy(dtype=float),
    )
    for bit in range(n):  # subset sums: worth[S] = sum over journeys with channels within S
        blocks = worth.reshape(-1, 2, 1 << bit, 2)
        blocks[:, 1] += blocks[:, 0]
    masks = np.arange(size)
    members = _popcount(masks)
    weight = np.array([factorial(k) * factorial(n - k - 1) / factorial(n) for k in range(n)])
    credit = np.zeros((n, 2))
    for bit in range(n):
        without = masks[(masks >> bit) & 1 == 0]
        gain = worth[without | (1 << bit)] - worth[without]
        credit[bit] = (weight[members[without]][:, None] * gain).sum(axis=0)
    return pd.DataFrame({"channel": channels, "conversions": credit[:, 0], "value": credit[:, 1]})


def _popcount(values: np.ndarray) -> np.ndarray:
    counts = np.zeros_like(values)
    for bit in range(MAX_CHANNELS):
        counts += (values >> bit) & 1
    return counts
