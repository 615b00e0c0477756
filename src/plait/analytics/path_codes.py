"""Aggregated path data (``a > b > c`` per row) coded once: Arrow splits the strings, one
dictionary turns channel names into integer codes, and NumPy counts what a first-order
Markov chain and the Shapley value need in a few vectorised passes over the steps. Path
data arrives as an in-memory frame, so this is cheaper than shipping a million strings to
an engine and grouping text there; rule-based models and higher Markov orders still run in
the engine, on ``steps_table``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from plait.analytics.journeys import CONVERSION, DROP_OFF, START
from plait.analytics.shapley import MAX_CHANNELS

WHITESPACE = " \t\n\r\v\f"
"""What is trimmed around a step (ASCII whitespace: a no-break space is part of a name)."""

CHUNK_ROWS = 65_536
"""Rows split and coded at a time: arrays this small are reused by the allocator instead of
being mapped afresh for each step, which costs more than the work on a virtual machine."""

CHUNK_STEPS = 8 * CHUNK_ROWS
"""Steps whose transitions are counted at a time, for the same reason."""


@dataclass(frozen=True)
class CodedPaths:
    """The rows with at least one channel, each a run of ``codes`` (``names[code]`` is the
    channel; names in order of first appearance) from ``starts[i]`` to ``ends[i]``, with
    its counts."""

    names: list[str]
    codes: np.ndarray
    owner: np.ndarray
    """The kept row each step belongs to."""
    starts: np.ndarray
    ends: np.ndarray
    rows: np.ndarray
    """Each kept row's position in the input."""
    conversions: np.ndarray
    nulls: np.ndarray
    value: np.ndarray


def code_paths(
    paths: pd.Series,
    conversions: pd.Series,
    nulls: pd.Series | None,
    value: pd.Series | None,
    separator: str,
) -> CodedPaths:
    """Split each path on ``separator``, trim every step and drop empty ones; rows left
    with no channel are dropped. Missing counts are zero."""
    texts = paths.to_numpy(dtype=object)
    index: dict[str, int] = {}
    code_parts, owner_parts = [], []
    for first in range(0, len(texts), CHUNK_ROWS):
        chunk = pa.array(texts[first : first + CHUNK_ROWS], type=pa.string(), from_pandas=True)
        lists = pc.split_pattern(chunk, separator)
        raw = lists.flatten().dictionary_encode()
        code_of_raw = np.array(
            [_code(index, step.strip(WHITESPACE)) for step in raw.dictionary.to_pylist()],
            dtype=np.int32,
        )
        codes = code_of_raw[raw.indices.to_numpy(zero_copy_only=False)]
        owner = pc.list_parent_indices(lists).to_numpy().astype(np.int32) + np.int32(first)
        kept = codes >= 0
        code_parts.append(codes[kept])
        owner_parts.append(owner[kept])
    codes = np.concatenate(code_parts) if code_parts else np.empty(0, np.int32)
    owner = np.concatenate(owner_parts) if owner_parts else np.empty(0, np.int32)
    lengths = np.bincount(owner, minlength=len(texts))
    rows = np.flatnonzero(lengths)
    if len(rows) < len(texts):
        owner = (np.cumsum(lengths > 0, dtype=np.int32) - 1)[owner]
    ends = np.cumsum(lengths[rows])

    def counts(column: pd.Series | None) -> np.ndarray:
        if column is None:
            return np.zeros(len(rows))
        return column.fillna(0).to_numpy(dtype=np.float64)[rows]

    return CodedPaths(
        names=list(index),
        codes=codes,
        owner=owner,
        starts=ends - lengths[rows],
        ends=ends,
        rows=rows,
        conversions=counts(conversions),
        nulls=counts(nulls),
        value=counts(value),
    )


def _code(index: dict[str, int], name: str) -> int:
    """``name``'s code (a new one if unseen); -1 for an empty step."""
    return index.setdefault(name, len(index)) if name else -1


def collapsed(paths: CodedPaths) -> CodedPaths:
    """The same paths with each repeat of the channel just before it dropped."""
    repeat = np.zeros(len(paths.codes), dtype=bool)
    repeat[1:] = (paths.owner[1:] == paths.owner[:-1]) & (paths.codes[1:] == paths.codes[:-1])
    owner = paths.owner[~repeat]
    ends = np.cumsum(np.bincount(owner, minlength=len(paths.starts)))
    return CodedPaths(
        names=paths.names,
        codes=paths.codes[~repeat],
        owner=owner,
        starts=np.concatenate([[0], ends[:-1]]),
        ends=ends,
        rows=paths.rows,
        conversions=paths.conversions,
        nulls=paths.nulls,
        value=paths.value,
    )


def first_order_transitions(paths: CodedPaths) -> pd.DataFrame:
    """``source``, ``target``, ``count`` and ``value`` (carried into conversion) of every
    move between channels, from ``(start)`` and into ``(conversion)`` / ``(drop-off)``, as
    ``journeys.transition_counts`` gives them at order 1."""
    k, names = len(paths.names), np.array(paths.names, dtype=object)
    weight = paths.conversions + paths.nulls
    wide = np.int32 if k * k < 2**31 else np.int64
    between = np.zeros(k * k)
    for first in range(0, len(paths.codes), CHUNK_STEPS):  # each step and the one after it
        owner = paths.owner[first : first + CHUNK_STEPS + 1]
        codes = paths.codes[first : first + CHUNK_STEPS + 1]
        inner = owner[1:] == owner[:-1]
        pairs = codes[:-1][inner].astype(wide) * k + codes[1:][inner]
        between += np.bincount(pairs, weights=weight[owner[:-1][inner]], minlength=k * k)
    first, last = paths.codes[paths.starts], paths.codes[paths.ends - 1]
    converted_value = np.where(paths.conversions > 0, paths.value, 0.0)
    moves = pd.concat(
        [
            pd.DataFrame(
                {"source": np.repeat(names, k), "target": np.tile(names, k), "count": between}
            ),
            pd.DataFrame(
                {"source": START, "target": names, "count": np.bincount(first, weight, k)}
            ),
            pd.DataFrame(
                {
                    "source": names,
                    "target": CONVERSION,
                    "count": np.bincount(last, paths.conversions, k),
                    "value": np.bincount(last, converted_value, k),
                }
            ),
            pd.DataFrame(
                {"source": names, "target": DROP_OFF, "count": np.bincount(last, paths.nulls, k)}
            ),
        ],
        ignore_index=True,
    )
    moves["value"] = moves["value"].fillna(0.0)
    return moves[moves["count"] > 0].reset_index(drop=True)


def coalitions(paths: CodedPaths) -> tuple[pd.DataFrame, list[str]]:
    """The channels of converting paths (sorted) and, per converting path, ``mask`` (bit i
    for the i-th of those channels), ``conversions`` and ``value``: Shapley's input. Beyond
    ``MAX_CHANNELS`` channels the masks are left empty (``shapley_credit`` refuses them)."""
    converting = paths.conversions > 0
    present = np.zeros(len(paths.names), dtype=bool)
    present[paths.codes[converting[paths.owner]]] = True
    channels = sorted(name for name, used in zip(paths.names, present, strict=True) if used)
    if len(channels) > MAX_CHANNELS:
        return pd.DataFrame(), channels
    bit = np.zeros(len(paths.names), dtype=np.int64)
    position = {name: i for i, name in enumerate(channels)}
    for code, name in enumerate(paths.names):
        if name in position:
            bit[code] = 1 << position[name]
    masks = np.bitwise_or.reduceat(bit[paths.codes], paths.starts) if len(paths.codes) else []
    return (
        pd.DataFrame(
            {
                "mask": np.asarray(masks, dtype=np.int64)[converting],
                "conversions": paths.conversions[converting],
                "value": paths.value[converting],
            }
        ),
        channels,
    )


def steps_table(paths: CodedPaths) -> pa.Table:
    """The paths for an engine, as ``journeys.exploded`` reads them: ``journey_id`` (the
    input row), ``channels`` (an array), ``conversions``, ``nulls`` and ``value``."""
    offsets = np.concatenate([[0], paths.ends]).astype(np.int64)
    steps = pc.take(pa.array(paths.names, type=pa.string()), pa.array(paths.codes))
    return pa.table(
        {
            "journey_id": pa.array(paths.rows.astype(np.int64)),
            "channels": pa.LargeListArray.from_arrays(pa.array(offsets), steps),
            "conversions": paths.conversions,
            "nulls": paths.nulls,
            "value": paths.value,
        }
    )
