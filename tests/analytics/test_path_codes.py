"""Path data coded to integers and counted with NumPy gives exactly what the engine gives
from the same paths: transitions, repeats collapsed, Shapley coalitions; awkward input
(empty steps, blank and missing paths, zero counts) is read the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plait.analytics import connect, path_codes
from plait.analytics.crediting import _members, _shapley
from plait.analytics.engine import materialize
from plait.analytics.journeys import CONVERSION, DROP_OFF, START, exploded, transition_counts
from plait.analytics.path_codes import (
    coalitions,
    code_paths,
    collapsed,
    first_order_transitions,
    steps_table,
)
from plait.analytics.shapley import shapley_credit
from plait.core.errors import InvalidInput
from plait.core.settings import Settings

SETTINGS = Settings()
CHANNELS = ["Search", "Email", "Paid Social", "Direct", "SMS"]


@pytest.fixture(scope="module")
def con():
    return connect(SETTINGS)


@pytest.fixture(scope="module")
def paths() -> pd.DataFrame:
    """600 random paths with repeats, odd spacing, empty steps and some empty rows."""
    rng = np.random.default_rng(11)
    rows = []
    for _ in range(600):
        steps = list(rng.choice(CHANNELS, rng.integers(1, 7)))
        if rng.random() < 0.1:
            steps.insert(int(rng.integers(0, len(steps))), "  ")
        separator = [" > ", ">", "  >  "][int(rng.integers(0, 3))]
        rows.append(separator.join(steps))
    rows[:3] = ["", "  >  ", None]
    conversions = rng.integers(0, 4, len(rows))
    return pd.DataFrame(
        {
            "path": rows,
            "total_conversions": conversions,
            "total_conversion_value": conversions * rng.uniform(5, 50, len(rows)),
            "total_null": rng.integers(0, 6, len(rows)),
        }
    )


def coded(paths: pd.DataFrame, separator: str = ">"):
    return code_paths(
        paths.path,
        paths.total_conversions,
        paths.total_null,
        paths.total_conversion_value,
        separator,
    )


def sorted_moves(moves: pd.DataFrame) -> pd.DataFrame:
    return moves.sort_values(["source", "target"], ignore_index=True)[
        ["source", "target", "count", "value"]
    ]


def test_steps_are_trimmed_and_empty_ones_and_rows_dropped() -> None:
    frame = pd.DataFrame(
        {"path": ["A > B", " >  ", None, "B>>A ", "A\u00a0> B"], "total_conversions": [1] * 5}
    )
    found = code_paths(frame.path, frame.total_conversions, None, None, ">")
    assert found.names == ["A", "B", "A\u00a0"]  # in order of first appearance
    assert found.rows.tolist() == [0, 3, 4]
    steps = [
        [found.names[c] for c in found.codes[a:b]]
        for a, b in zip(found.starts, found.ends, strict=True)
    ]
    assert steps == [["A", "B"], ["B", "A"], ["A\u00a0", "B"]]
    assert found.nulls.tolist() == found.value.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("collapse", [False, True])
def test_first_order_transitions_are_the_engines(con, paths: pd.DataFrame, collapse: bool) -> None:
    found = coded(paths)
    engine = transition_counts(
        exploded(materialize(con, steps_table(found)), collapse_repeats=collapse), 1
    )
    if collapse:
        found = collapsed(found)
    mine = sorted_moves(first_order_transitions(found))
    theirs = sorted_moves(con.execute(engine))
    pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)
    assert {START, CONVERSION, DROP_OFF} <= {*mine.source, *mine.target}


def test_collapsing_drops_only_repeats_next_to_each_other() -> None:
    frame = pd.DataFrame({"path": ["A > A > B > A > A", "B > B"], "total_conversions": [1, 1]})
    found = collapsed(code_paths(frame.path, frame.total_conversions, None, None, ">"))
    steps = [
        "".join(found.names[c] for c in found.codes[a:b])
        for a, b in zip(found.starts, found.ends, strict=True)
    ]
    assert steps == ["ABA", "B"]


def test_shapley_coalitions_give_the_engines_credit(con, paths: pd.DataFrame) -> None:
    found = coded(paths)
    arrays = materialize(con, steps_table(found))
    converting = exploded(arrays.filter(arrays.conversions > 0), collapse_repeats=False)
    theirs = _shapley(con, _members(converting)).sort_values("channel", ignore_index=True)
    mine = shapley_credit(*coalitions(found)).sort_values("channel", ignore_index=True)
    pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)
    # every conversion of a row with a channel is shared out; the three empty rows have none
    assert mine.conversions.sum() == pytest.approx(paths.total_conversions[3:].sum())


def test_too_many_channels_for_shapley_is_a_clear_error() -> None:
    names = [f"C{i}" for i in range(17)]
    frame = pd.DataFrame({"path": [" > ".join(names)], "total_conversions": [1]})
    with pytest.raises(InvalidInput, match="up to 15 channels"):
        shapley_credit(
            *coalitions(code_paths(frame.path, frame.total_conversions, None, None, ">"))
        )


def test_a_multi_character_separator(paths: pd.DataFrame) -> None:
    piped = paths.assign(path=paths.path.str.replace(">", " || ", regex=False))
    a, b = coded(paths), coded(piped, "||")
    assert a.names == b.names
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.rows, b.rows)


def test_chunks_change_nothing(paths: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = coded(paths)
    moves = sorted_moves(first_order_transitions(whole))
    monkeypatch.setattr(path_codes, "CHUNK_ROWS", 7)
    monkeypatch.setattr(path_codes, "CHUNK_STEPS", 5)
    chunked = coded(paths)
    assert chunked.names == whole.names
    for field in ("codes", "owner", "starts", "ends", "rows", "conversions"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))
    pd.testing.assert_frame_equal(sorted_moves(first_order_transitions(chunked)), moves)
