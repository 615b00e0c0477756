"""Attribution of aggregated path data (``plait.analytics.attribute_paths``): every path-data
model on journeys whose credit is worked out by hand, properties on random journeys against
small reference implementations written from the model rules, agreement with the
ChannelAttribution package, and the Markov model against a chain whose removal effects are
known exactly. One DuckDB connection serves the whole module."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import ChannelAttribution
import ibis
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from plait.analytics import PATH_MODELS, attribute_paths, connect
from plait.analytics.markov import markov_credit, removal_effects
from plait.analytics.models import credit
from plait.analytics.shapley import shapley_credit
from plait.core.errors import InvalidInput
from plait.core.settings import Settings

SETTINGS = Settings()
SECOND_ORDER = Settings(analytics={"markov_order": 2})
RULE_MODELS = [m for m in PATH_MODELS if m not in ("markov", "shapley")]
MEASURES = ("conversions", "value")

Row = tuple[str, float, float, float]
"""One path: ``(path, conversions, value, nulls)``."""


@pytest.fixture(scope="module")
def con():
    return connect(SETTINGS)


def frame(rows: Sequence[Row]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [row[0] for row in rows],
            "total_conversions": [row[1] for row in rows],
            "total_conversion_value": [float(row[2]) for row in rows],
            "total_null": [row[3] for row in rows],
        }
    )


def run(
    con,
    rows: Sequence[Row] | pd.DataFrame,
    models: Sequence[str] = PATH_MODELS,
    settings: Settings = SETTINGS,
    **options,
) -> pd.DataFrame:
    """``attribute_paths`` indexed by channel."""
    df = rows if isinstance(rows, pd.DataFrame) else frame(rows)
    result = attribute_paths(df, list(models), settings=settings, con=con, **options)
    assert list(result.channel) == sorted(result.channel)
    return result.set_index("channel")


def credit_of(result: pd.DataFrame, model: str) -> dict[str, tuple[float, float]]:
    return {
        channel: (row[f"{model}_conversions"], row[f"{model}_value"])
        for channel, row in result.iterrows()
    }


def assert_credit(result: pd.DataFrame, model: str, expected: dict[str, tuple[float, float]]):
    """``model``'s credit is ``expected`` (channels left out of ``expected`` get nothing)."""
    actual = credit_of(result, model)
    assert set(expected) <= set(actual), (model, actual)
    for channel, (conversions, value) in actual.items():
        want = expected.get(channel, (0.0, 0.0))
        assert conversions == pytest.approx(want[0], rel=1e-9, abs=1e-9), (model, channel)
        assert value == pytest.approx(want[1], rel=1e-9, abs=1e-9), (model, channel)


# ---------------------------------------------------------------------------------------------
# Hand-computed journeys
# ---------------------------------------------------------------------------------------------

# (path, conversions, value, nulls). 10 conversions worth 77 in all; D never converts.
HAND: list[Row] = [
    ("A > B > C", 3, 30, 1),  # P1
    ("A > A > B", 1, 10, 2),  # P2: A twice
    ("B", 2, 20, 0),  # P3: one touch
    ("Direct > A > Direct", 1, 5, 3),  # P4: last non-Direct touch is the middle one
    ("C > Direct", 2, 8, 0),  # P5: two touches
    ("Direct > Direct", 1, 4, 0),  # P6: only Direct
    ("D", 0, 0, 4),  # P7: never converts
]

HAND_EXPECTED: dict[str, dict[str, tuple[float, float]]] = {
    # A: P1 3 (30) + P2 1 (10); B: P3; C: P5; Direct: P4 1 (5) + P6 1 (4)
    "first_touch": {"A": (4, 40), "B": (2, 20), "C": (2, 8), "Direct": (2, 9)},
    # C: P1; B: P2 1 (10) + P3 2 (20); Direct: P4 1 (5) + P5 2 (8) + P6 1 (4)
    "last_touch": {"B": (3, 30), "C": (3, 30), "Direct": (4, 17)},
    # P1 -> C, P2 -> B, P3 -> B, P4 -> A (the middle touch), P5 -> C, P6 -> Direct (all Direct)
    # C: 3 + 2 = 5 (30 + 8); B: 1 + 2 = 3 (10 + 20); A: 1 (5); Direct: 1 (4)
    "last_non_direct": {"A": (1, 5), "B": (3, 30), "C": (5, 38), "Direct": (1, 4)},
    # each occurrence 1/n.  A: 3/3 + 2/3*1 + 1/3*1 = 2;  value 30/3 + 2/3*10 + 1/3*5 = 55/3
    # B: 3/3 + 1/3*1 + 2 = 10/3;  value 10 + 10/3 + 20 = 100/3
    # C: 3/3 + 2/2 = 2;  value 10 + 8/2 = 14
    # Direct: 2/3*1 + 2/2 + 1 = 8/3;  value 2/3*5 + 8/2 + 4 = 34/3
    "linear": {"A": (2, 55 / 3), "B": (10 / 3, 100 / 3), "C": (2, 14), "Direct": (8 / 3, 34 / 3)},
    # 40/20/40, two touches 50/50.  P1 A .4 B .2 C .4; P2 A .4+.2 B .4; P4 Direct .4+.4 A .2
    # A: .4*3 + .6*1 + .2*1 = 2.0, value 12 + 6 + 1 = 19
    # B: .2*3 + .4*1 + 2 = 3.0, value 6 + 4 + 20 = 30
    # C: .4*3 + .5*2 = 2.2, value 12 + 4 = 16
    # Direct: .8*1 + .5*2 + 1 = 2.8, value 4 + 4 + 4 = 12
    "position_based": {"A": (2.0, 19), "B": (3.0, 30), "C": (2.2, 16), "Direct": (2.8, 12)},
    # 20/20/60, two touches 25/75.  P1 A .2 B .2 C .6; P2 A .2+.2 B .6; P4 Direct .2+.6 A .2
    # A: .2*3 + .4 + .2 = 1.2, value 6 + 4 + 1 = 11
    # B: .2*3 + .6 + 2 = 3.2, value 6 + 6 + 20 = 32
    # C: .6*3 + .25*2 = 2.3, value 18 + 2 = 20
    # Direct: .8 + .75*2 + 1 = 3.3, value 4 + 6 + 4 = 14
    "j_shaped": {"A": (1.2, 11), "B": (3.2, 32), "C": (2.3, 20), "Direct": (3.3, 14)},
    # 60/20/20, two touches 75/25.  P1 A .6 B .2 C .2; P2 A .6+.2 B .2; P4 Direct .6+.2 A .2
    # A: .6*3 + .8 + .2 = 2.8, value 18 + 8 + 1 = 27
    # B: .2*3 + .2 + 2 = 2.8, value 6 + 2 + 20 = 28
    # C: .2*3 + .75*2 = 2.1, value 6 + 6 = 12
    # Direct: .8 + .25*2 + 1 = 2.3, value 4 + 2 + 4 = 10
    "inverse_j": {"A": (2.8, 27), "B": (2.8, 28), "C": (2.1, 12), "Direct": (2.3, 10)},
    # 30/40/30, two touches 50/50.  P1 A .3 B .4 C .3; P2 A .3+.4 B .3; P4 Direct .6 A .4
    # A: .9 + .7 + .4 = 2.0, value 9 + 7 + 2 = 18
    # B: 1.2 + .3 + 2 = 3.5, value 12 + 3 + 20 = 35
    # C: .9 + 1 = 1.9, value 9 + 4 = 13
    # Direct: .6 + 1 + 1 = 2.6, value 3 + 4 + 4 = 11
    "custom": {"A": (2.0, 18), "B": (3.5, 35), "C": (1.9, 13), "Direct": (2.6, 11)},
    # A coalition is worth the conversions of the journeys whose channels all lie within it:
    # a sum of unanimity games, one per journey, so each journey's conversions are split
    # equally among its distinct channels (repeats do not count twice).
    # P1 {A,B,C} 1 each (10); P2 {A,B} .5 each (5); P4 {A,Direct} .5 each (2.5);
    # P5 {C,Direct} 1 each (4).  A: 1 + .5 + .5 = 2, value 10 + 5 + 2.5 = 17.5
    # B: 1 + .5 + 2 = 3.5, value 10 + 5 + 20 = 35;  C: 1 + 1 = 2, value 14
    # Direct: .5 + 1 + 1 = 2.5, value 2.5 + 4 + 4 = 10.5
    "shapley": {"A": (2, 17.5), "B": (3.5, 35), "C": (2, 14), "Direct": (2.5, 10.5)},
}


@pytest.mark.parametrize(
    ("n", "contact", "qualified", "w_shaped", "full_path"),
    [
        # The first touch also made the contact: it holds two roles (60 %, full path 45 %).
        (4, 1, 3, [0.6, 0.05, 0.3, 0.05], [0.45, 0.1, 0.225, 0.225]),
        # No contact or qualification in the journey: only the ends hold roles.
        (4, None, None, [0.75, 1 / 12, 1 / 12, 1 / 12], [9 / 22, 2 / 22, 2 / 22, 9 / 22]),
        # The last touch made the contact and the qualified lead (and, full path, the sale).
        (4, 4, 4, [0.3, 0.05, 0.05, 0.6], [0.225, 0.05, 0.05, 0.675]),
        (2, 2, None, [0.5, 0.5], [1 / 3, 2 / 3]),
        (1, 1, 1, [1.0], [1.0]),
    ],
)
def test_key_touch_models_when_a_touch_holds_several_roles(
    con, n, contact, qualified, w_shaped, full_path
):
    rows = ibis.memtable(
        {
            "journey_id": ["j"] * n,
            "pos": list(range(1, n + 1)),
            "n": [n] * n,
            "channel": [f"C{pos}" for pos in range(1, n + 1)],
            "age_seconds": [0.0] * n,
            "contact_pos": pd.array([contact] * n, dtype="Int64"),
            "qualified_pos": pd.array([qualified] * n, dtype="Int64"),
        }
    )
    weighted = con.execute(
        credit(rows, ["w_shaped", "full_path"], SETTINGS.analytics).order_by("pos")
    )
    assert weighted.w_shaped_weight.tolist() == pytest.approx(w_shaped)
    assert weighted.full_path_weight.tolist() == pytest.approx(full_path)


@pytest.mark.parametrize("model", sorted(HAND_EXPECTED))
def test_hand_computed_credit(con, model):
    result = run(con, HAND, [model])
    assert sorted(result.index) == ["A", "B", "C", "D", "Direct"]
    assert_credit(result, model, HAND_EXPECTED[model])


def test_every_path_model_is_covered_by_the_hand_computed_journeys():
    assert set(HAND_EXPECTED) | {"markov"} == set(PATH_MODELS)


def test_all_models_at_once_equal_each_model_alone(con):
    together = run(con, HAND)
    for model, expected in HAND_EXPECTED.items():
        assert_credit(together, model, expected)
    assert together.loc["D"].abs().sum() == 0


def test_custom_weights_and_direct_channel_come_from_settings(con):
    rules = Settings(
        analytics={
            "custom_weights": {"first": 0.1, "middle": 0.5, "last": 0.4},
            "direct_channel": "(direct)",
        }
    )
    rows = [
        ("A > B > C > (direct)", 1, 100, 0),  # custom: .1 / .25 / .25 / .4
        ("A > B", 1, 10, 0),  # custom two touches: .1/(.1+.4) = .2, .4/.5 = .8
        ("Direct > (direct)", 1, 1, 0),  # two touches .2/.8; "Direct" is ordinary here
    ]
    result = run(con, rows, ["custom", "last_non_direct"], settings=rules)
    # A: .1*1 + .2*1 = .3, value 10 + 2 = 12;  B: .25 + .8 = 1.05, value 25 + 8 = 33
    # C: .25, value 25;  (direct): .4 + .8 = 1.2, value 40 + .8;  Direct: .2, value .2
    assert_credit(
        result,
        "custom",
        {
            "A": (0.3, 12),
            "B": (1.05, 33),
            "C": (0.25, 25),
            "(direct)": (1.2, 40.8),
            "Direct": (0.2, 0.2),
        },
    )
    # last non-"(direct)" touch: C (100), B (10), Direct (1)
    assert_credit(result, "last_non_direct", {"B": (1, 10), "C": (1, 100), "Direct": (1, 1)})


def test_markov_hand_solved_two_step_chain(con):
    # start -> A (2 of 2);  A -> B 1/2, A -> drop-off 1/2;  B -> conversion 1.
    # P(conversion) = 1 * 1/2 * 1 = 1/2.  Without A: 0, so A's removal effect is 1;
    # without B: 0, so B's is 1.  Credit in proportion 1:1.
    result = run(con, [("A > B", 1, 10, 0), ("A", 0, 0, 1)], ["markov"])
    assert_credit(result, "markov", {"A": (0.5, 5), "B": (0.5, 5)})


def test_markov_hand_solved_asymmetric_chain(con):
    rows = [("A > B", 2, 20, 0), ("B", 1, 10, 1), ("A", 0, 0, 1)]
    # start -> A 3/5, start -> B 2/5;  A -> B 2/3, A -> drop 1/3;  B -> conversion 3/4, drop 1/4
    # P = 3/5*2/3*3/4 + 2/5*3/4 = 3/10 + 3/10 = 3/5
    # without A: 2/5*3/4 = 3/10, removal effect 1 - (3/10)/(3/5) = 1/2;  without B: 0, effect 1
    # 3 conversions shared 1/2 : 1  ->  A 1, B 2.  Value reward at B is 30/4 per visit, so
    # the value chain is the conversion chain scaled: 30 shared 1:2 -> A 10, B 20.
    result = run(con, rows, ["markov"])
    assert_credit(result, "markov", {"A": (1, 10), "B": (2, 20)})
    transitions = pd.DataFrame(
        [
            ("(start)", "A", 3, 0.0),
            ("(start)", "B", 2, 0.0),
            ("A", "B", 2, 0.0),
            ("A", "(drop-off)", 1, 0.0),
            ("B", "(conversion)", 3, 30.0),
            ("B", "(drop-off)", 1, 0.0),
        ],
        columns=["source", "target", "count", "value"],
    )
    effects = removal_effects(transitions).set_index("channel")
    assert effects.removal_effect.to_dict() == pytest.approx({"A": 0.5, "B": 1.0})
    assert effects.value_removal_effect.to_dict() == pytest.approx({"A": 0.5, "B": 1.0})


def test_markov_value_uses_the_value_of_each_converting_state(con):
    rows = [("A", 1, 10, 1), ("B", 1, 30, 1)]
    # start -> A 1/2, -> B 1/2; each converts 1/2.  P = 1/2, removing either halves it:
    # conversion removal effects 1/2, 1/2 -> 1 conversion each.
    # Value reward: A 10/2 = 5, B 30/2 = 15 per visit; full = 1/2*5 + 1/2*15 = 10.
    # Without A: 7.5 -> effect 1/4;  without B: 2.5 -> effect 3/4.  40 shared 1:3 -> 10, 30.
    result = run(con, rows, ["markov"])
    assert_credit(result, "markov", {"A": (1, 10), "B": (1, 30)})
    transitions = pd.DataFrame(
        [
            ("(start)", "A", 2, 0.0),
            ("(start)", "B", 2, 0.0),
            ("A", "(conversion)", 1, 10.0),
            ("A", "(drop-off)", 1, 0.0),
            ("B", "(conversion)", 1, 30.0),
            ("B", "(drop-off)", 1, 0.0),
        ],
        columns=["source", "target", "count", "value"],
    )
    shared = markov_credit(transitions, 2.0, 40.0).set_index("channel")
    assert shared.conversions.to_dict() == pytest.approx({"A": 1.0, "B": 1.0})
    assert shared.value.to_dict() == pytest.approx({"A": 10.0, "B": 30.0})


def test_markov_hand_solved_loop(con):
    rows = [("A > B > A", 1, 6, 0), ("B", 0, 0, 1)]
    # start -> A 1/2, B 1/2;  A -> B 1/2, A -> conversion 1/2;  B -> A 1/2, B -> drop 1/2.
    # p_A = 1/2 p_B + 1/2, p_B = 1/2 p_A  ->  p_A = 2/3, p_B = 1/3, P = 1/2 (2/3 + 1/3) = 1/2
    # without A: 0, effect 1;  without B: p_A = 1/2, P = 1/4, effect 1/2.  Shares 2:1.
    result = run(con, rows, ["markov"])
    assert_credit(result, "markov", {"A": (2 / 3, 4), "B": (1 / 3, 2)})


def test_markov_second_order_sees_where_a_channel_was_reached_from(con):
    rows = [("A > C", 1, 10, 0), ("B > C", 0, 0, 1)]
    # First order: start -> A 1/2, B 1/2; A -> C, B -> C; C converts 1/2.  P = 1/2;
    # without A or B: 1/4 (effect 1/2 each); without C: 0 (effect 1).  Shares 1 : 1 : 2.
    first = run(con, rows, ["markov"])
    assert_credit(first, "markov", {"A": (0.25, 2.5), "B": (0.25, 2.5), "C": (0.5, 5)})
    # Second order: states A, B, "A > C" (always converts), "B > C" (never).  P = 1/2;
    # without A (A and "A > C" drop): 0, effect 1;  without B: 1/2, effect 0;
    # without C (both pairs drop): 0, effect 1.  Shares A 1/2, B 0, C 1/2.
    second = run(con, rows, ["markov"], settings=SECOND_ORDER)
    assert_credit(second, "markov", {"A": (0.5, 5), "C": (0.5, 5)})


# Three channels; v(S) = conversions of journeys with all channels in S.
SHAPLEY_ROWS: list[Row] = [
    ("A", 2, 20, 0),
    ("A > B", 4, 40, 1),
    ("B", 1, 10, 3),
    ("B > C", 3, 30, 0),
    ("C", 0, 0, 5),
]
# v(A)=2 v(B)=1 v(C)=0 v(AB)=7 v(AC)=2 v(BC)=4 v(ABC)=10.  Weights |S|!(n-|S|-1)!/n!:
# 1/3 for |S|=0, 1/6 for |S|=1, 1/3 for |S|=2.
# A: 1/3*2 + 1/6*(7-1) + 1/6*(2-0) + 1/3*(10-4) = 2/3 + 1 + 1/3 + 2 = 4
# B: 1/3*1 + 1/6*(7-2) + 1/6*(4-0) + 1/3*(10-2) = 1/3 + 5/6 + 2/3 + 8/3 = 4.5
# C: 1/3*0 + 1/6*(2-2) + 1/6*(4-1) + 1/3*(10-7) = 0 + 0 + 1/2 + 1 = 1.5   (sum 10)
# Value is conversions * 10 on every journey, so value credit is conversions credit * 10.
SHAPLEY_EXPECTED = {"A": (4, 40), "B": (4.5, 45), "C": (1.5, 15)}


def test_shapley_by_the_formula(con):
    assert_credit(run(con, SHAPLEY_ROWS, ["shapley"]), "shapley", SHAPLEY_EXPECTED)


def test_shapley_credit_from_coalitions():
    coalitions = pd.DataFrame(
        {
            "mask": [0b001, 0b011, 0b010, 0b110],
            "conversions": [2, 4, 1, 3],
            "value": [20, 40, 10, 30],
        }
    )
    shared = shapley_credit(coalitions, ["A", "B", "C"]).set_index("channel")
    assert shared.conversions.to_dict() == pytest.approx(
        {k: v[0] for k, v in SHAPLEY_EXPECTED.items()}
    )
    assert shared.value.to_dict() == pytest.approx({k: v[1] for k, v in SHAPLEY_EXPECTED.items()})


def test_shapley_refuses_more_channels_than_it_can_solve_exactly(con):
    channels = [f"C{i:02d}" for i in range(16)]
    with pytest.raises(InvalidInput):
        shapley_credit(pd.DataFrame({"mask": [1], "conversions": [1], "value": [1]}), channels)
    with pytest.raises(InvalidInput):
        run(con, [(" > ".join(channels), 1, 1, 0)], ["shapley"])


def test_collapse_repeats(con):
    repeated = run(con, [("A > A > B", 3, 30, 0)], ["linear", "first_touch"], collapse_repeats=True)
    single = run(con, [("A > B", 3, 30, 0)], ["linear", "first_touch"])
    pd.testing.assert_frame_equal(repeated, single)
    # A > B: 1/2 each
    assert_credit(repeated, "linear", {"A": (1.5, 15), "B": (1.5, 15)})
    # without collapsing, A has two of three touches
    assert_credit(
        run(con, [("A > A > B", 3, 30, 0)], ["linear"]), "linear", {"A": (2, 20), "B": (1, 10)}
    )
    # only consecutive repeats collapse: A > B > A keeps both A touches
    assert_credit(
        run(con, [("A > B > A > A", 3, 30, 0)], ["linear"], collapse_repeats=True),
        "linear",
        {"A": (2, 20), "B": (1, 10)},
    )


def test_channels_are_trimmed_and_empty_segments_dropped(con):
    tidy = run(con, [("A > B > C", 3, 30, 1), ("B > A", 1, 5, 2)])
    messy = run(con, [(" A>B  >>C ", 3, 30, 1), ("B>   > A", 1, 5, 2)])
    pd.testing.assert_frame_equal(tidy, messy)
    pipes = frame([("A | B | C", 3, 30, 1), ("B|A", 1, 5, 2)])
    pd.testing.assert_frame_equal(tidy, run(con, pipes, sep="|"))


def test_value_and_nulls_columns_are_optional(con):
    df = frame([("A > B", 2, 20, 1)])[["path", "total_conversions"]]
    result = run(con, df, ["linear", "markov"])
    assert_credit(result, "linear", {"A": (1, 0), "B": (1, 0)})
    assert result.markov_conversions.sum() == pytest.approx(2)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["time_decay", "w_shaped", "full_path"])
def test_time_dependent_models_are_not_available_on_path_data(con, model):
    with pytest.raises(InvalidInput):
        run(con, HAND, [model])
    with pytest.raises(InvalidInput):
        run(con, HAND, ["linear", model])


@pytest.mark.parametrize("models", [["nonsense"], ["linear", "Linear"], []])
def test_unknown_or_no_model(con, models):
    with pytest.raises(InvalidInput):
        run(con, HAND, models)


@pytest.mark.parametrize(
    ("change", "options"),
    [
        (lambda df: df.drop(columns="path"), {}),
        (lambda df: df.drop(columns="total_conversions"), {}),
        (lambda df: df, {"path": "journey"}),
        (lambda df: df, {"conversions": "sales"}),
        (lambda df: df.assign(total_conversions=df.total_conversions.astype(str)), {}),
        (lambda df: df.assign(total_conversion_value="a lot"), {}),
        (lambda df: df.assign(total_null=df.total_null.astype(str)), {}),
        (lambda df: df.assign(total_conversions=df.total_conversions - 2), {}),
        (lambda df: df.assign(total_conversion_value=-df.total_conversion_value), {}),
        (lambda df: df.assign(total_null=df.total_null - 5), {}),
        (lambda df: df, {"sep": ""}),
    ],
    ids=[
        "no path column",
        "no conversions column",
        "named path column missing",
        "named conversions column missing",
        "text conversions",
        "text value",
        "text nulls",
        "negative conversions",
        "negative value",
        "negative nulls",
        "empty separator",
    ],
)
def test_bad_input(con, change: Callable[[pd.DataFrame], pd.DataFrame], options):
    df = change(frame(HAND))
    with pytest.raises(InvalidInput):
        attribute_paths(df, ["linear"], settings=SETTINGS, con=con, **options)


# ---------------------------------------------------------------------------------------------
# Reference implementations, written from the model rules
# ---------------------------------------------------------------------------------------------

POSITIONAL = {
    "position_based": (0.4, 0.2, 0.4),
    "j_shaped": (0.2, 0.2, 0.6),
    "inverse_j": (0.6, 0.2, 0.2),
    "custom": (0.3, 0.4, 0.3),
}


def touches(path: str, sep: str = ">") -> list[str]:
    return [c.strip() for c in path.split(sep) if c.strip()]


def rule_weights(model: str, channels: list[str]) -> list[float]:
    n = len(channels)
    if model == "first_touch":
        return [1.0] + [0.0] * (n - 1)
    if model == "last_touch":
        return [0.0] * (n - 1) + [1.0]
    if model == "last_non_direct":
        others = [i for i, channel in enumerate(channels) if channel != "Direct"]
        chosen = others[-1] if others else n - 1
        return [float(i == chosen) for i in range(n)]
    if model == "linear":
        return [1 / n] * n
    first, middle, last = POSITIONAL[model]
    if n == 1:
        return [1.0]
    if n == 2:
        return [first / (first + last), last / (first + last)]
    return [first, *[middle / (n - 2)] * (n - 2), last]


def reference_rules(rows: Sequence[Row], model: str) -> dict[str, tuple[float, float]]:
    credit: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for path, conversions, value, _ in rows:
        if conversions <= 0:
            continue
        channels = touches(path)
        if model == "shapley":
            distinct = set(channels)
            pairs = [(c, 1 / len(distinct)) for c in distinct]
        else:
            pairs = list(zip(channels, rule_weights(model, channels), strict=True))
        for channel, weight in pairs:
            credit[channel][0] += weight * conversions
            credit[channel][1] += weight * value
    return {channel: (c, v) for channel, (c, v) in credit.items()}


def reference_markov(rows: Sequence[Row], order: int = 1) -> dict[str, tuple[float, float]]:
    """Exact removal effects of the order-``order`` chain fitted to ``rows``, by dense
    linear algebra: a state is the tuple of the last ``order`` channels."""
    start, conversion, drop = ("(start)",), "conversion", "drop"
    counts: dict[tuple, float] = defaultdict(float)
    value_in: dict[tuple, float] = defaultdict(float)
    total = np.zeros(2)
    for path, conversions, value, nulls in rows:
        channels = touches(path)
        if conversions > 0:
            total += (conversions, value)
        if not channels or conversions + nulls == 0:
            continue
        states = [tuple(channels[max(0, i - order + 1) : i + 1]) for i in range(len(channels))]
        for before, after in zip([start, *states[:-1]], states, strict=True):
            counts[before, after] += conversions + nulls
        counts[states[-1], conversion] += conversions
        counts[states[-1], drop] += nulls
        if conversions > 0:
            value_in[states[-1]] += value
    states = sorted({before for before, _ in counts} - {start})
    if total[0] == 0 or not states:
        return {}
    index = {state: i for i, state in enumerate(states)}
    outgoing: dict[tuple, float] = defaultdict(float)
    for (before, _), count in counts.items():
        outgoing[before] += count
    q = np.zeros((len(states), len(states)))
    reward = np.zeros((len(states), 2))
    begin = np.zeros(len(states))
    for (before, after), count in counts.items():
        if before == start:
            begin[index[after]] += count / outgoing[start]
        elif after == conversion:
            reward[index[before], 0] += count / outgoing[before]
        elif after != drop:
            q[index[before], index[after]] += count / outgoing[before]
    for state, value in value_in.items():
        reward[index[state], 1] += value / outgoing[state]

    def converted(removed: str | None) -> np.ndarray:
        keep = np.array([removed not in state for state in states], dtype=float)[:, None]
        return begin @ np.linalg.solve(np.eye(len(states)) - q * keep, reward * keep)

    full = converted(None)
    channels = sorted({channel for state in states for channel in state})
    effects = np.array(
        [
            [1 - lost / whole if whole > 0 else 0.0 for lost, whole in zip(kept, full, strict=True)]
            for kept in (converted(channel) for channel in channels)
        ]
    ).clip(min=0)
    sums = effects.sum(axis=0)
    shares = np.divide(effects, sums, out=np.zeros_like(effects), where=sums > 0)
    return {channel: tuple(shares[i] * total) for i, channel in enumerate(channels)}


def totals(rows: Sequence[Row]) -> tuple[float, float]:
    """Conversions, and value of the converting paths."""
    return (
        sum(r[1] for r in rows if r[1] > 0),
        sum(r[2] for r in rows if r[1] > 0),
    )


def assert_close(actual: dict, expected: dict, label: str, rel: float = 1e-9) -> None:
    for channel in set(actual) | set(expected):
        got, want = actual.get(channel, (0.0, 0.0)), expected.get(channel, (0.0, 0.0))
        assert got == pytest.approx(want, rel=rel, abs=1e-9), (label, channel, actual, expected)


# ---------------------------------------------------------------------------------------------
# Properties on random journeys
# ---------------------------------------------------------------------------------------------

CHANNELS = ["A", "B", "C", "D", "Direct"]
journeys = st.tuples(
    st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=6),
    st.integers(0, 5),
    st.integers(0, 100),
    st.integers(0, 5),
)
# at least one path converts (see test_nothing_converts_gives_no_credit for the other case)
datasets = st.lists(journeys, min_size=1, max_size=8).filter(lambda d: any(j[1] for j in d))
# each example runs a handful of DuckDB queries, so keep the counts modest
few = hypothesis_settings(max_examples=30, deadline=None, database=None)
fewer = hypothesis_settings(max_examples=20, deadline=None, database=None)


def as_rows(data, sep: str = " > ") -> list[Row]:
    return [(sep.join(channels), c, v, n) for channels, c, v, n in data]


@pytest.mark.parametrize(
    "rows",
    [[("A > B", 0, 0, 3)], [("X > X", 0, 5, 1), ("X", 0, 0, 2)], [("A > B", 0, 0, 0)]],
    ids=["two channels", "one channel", "zero counts"],
)
def test_nothing_converts_gives_no_credit(con, rows):
    result = run(con, rows)
    assert sorted(result.index) == sorted({c for path, *_ in rows for c in touches(path)})
    assert (result == 0).all().all(), result


@few
@given(data=datasets, sep=st.sampled_from([" > ", ">", "  >  "]))
def test_random_paths_match_reference_and_credit_is_conserved(con, data, sep):
    rows = as_rows(data, sep)
    conversions, value = totals(rows)
    result = run(con, rows)
    assert set(result.index) == {c for channels, *_ in data for c in channels}
    for model in PATH_MODELS:
        # credit is never lost or made up: it sums to the conversions and their value
        # (Markov has nothing to share only when nothing converts)
        assert result[f"{model}_conversions"].sum() == pytest.approx(conversions, abs=1e-9)
        assert result[f"{model}_value"].sum() == pytest.approx(value, abs=1e-7)
        assert (result[[f"{model}_conversions", f"{model}_value"]] >= -1e-12).all().all()
    for model in [*RULE_MODELS, "shapley"]:
        assert_close(credit_of(result, model), reference_rules(rows, model), model)
    assert_close(credit_of(result, "markov"), reference_markov(rows), "markov", rel=1e-7)
    second = run(con, rows, ["markov"], settings=SECOND_ORDER)
    assert second.markov_conversions.sum() == pytest.approx(conversions, abs=1e-9)
    assert_close(credit_of(second, "markov"), reference_markov(rows, 2), "markov 2", rel=1e-7)


@fewer
@given(
    data=st.lists(
        st.tuples(st.integers(1, 4), st.integers(0, 5), st.integers(0, 100), st.integers(0, 5)),
        min_size=1,
        max_size=6,
    ).filter(lambda d: any(j[1] for j in d))
)
def test_one_channel_gets_everything(con, data):
    rows = [(" > ".join(["X"] * k), c, v, n) for k, c, v, n in data]
    conversions, value = totals(rows)
    result = run(con, rows)
    assert list(result.index) == ["X"]
    for model in PATH_MODELS:
        assert result.loc["X", f"{model}_conversions"] == pytest.approx(conversions, abs=1e-9)
        assert result.loc["X", f"{model}_value"] == pytest.approx(value, abs=1e-9)


@fewer
@given(data=datasets)
def test_reversing_paths(con, data):
    models = [m for m in PATH_MODELS if m != "markov"]
    forward = run(con, as_rows(data), models)
    backward = run(con, as_rows([(channels[::-1], c, v, n) for channels, c, v, n in data]), models)

    def same(model: str, other: str) -> None:
        for measure in MEASURES:
            np.testing.assert_allclose(
                backward[f"{model}_{measure}"],
                forward[f"{other}_{measure}"],
                rtol=1e-9,
                atol=1e-9,
                err_msg=f"{model} reversed vs {other}",
            )

    # order-insensitive, or symmetric in first and last
    for model in ("linear", "shapley", "position_based", "custom"):
        same(model, model)
    same("first_touch", "last_touch")
    same("last_touch", "first_touch")
    same("j_shaped", "inverse_j")
    same("inverse_j", "j_shaped")


# ---------------------------------------------------------------------------------------------
# ChannelAttribution
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def realistic() -> pd.DataFrame:
    """A few hundred distinct paths over six channels."""
    rng = np.random.default_rng(2024)
    channels = np.array(["Search", "Social", "Email", "Display", "Direct", "Affiliate"])
    popularity = [0.3, 0.2, 0.15, 0.1, 0.15, 0.1]
    rows = []
    for _ in range(700):
        length = min(int(rng.geometric(0.4)) + int(rng.random() < 0.5), 8)
        conversions = int(rng.poisson(1.5))
        rows.append(
            (
                " > ".join(rng.choice(channels, length, p=popularity)),
                conversions,
                round(conversions * float(rng.lognormal(3, 0.5)), 2),
                int(rng.poisson(3)),
            )
        )
    df = frame(rows).groupby("path", as_index=False).sum()
    assert 250 <= len(df) <= 700
    return df


def test_heuristics_match_channel_attribution(con, realistic):
    theirs = ChannelAttribution.heuristic_models(
        realistic,
        "path",
        "total_conversions",
        var_value="total_conversion_value",
        sep=">",
        flg_pro=False,
    ).set_index("channel_name")
    ours = run(con, realistic, ["first_touch", "last_touch", "linear"])
    assert sorted(theirs.index) == list(ours.index)
    for model, their_model in [
        ("first_touch", "first_touch"),
        ("last_touch", "last_touch"),
        ("linear", "linear_touch"),
    ]:
        for measure in MEASURES:
            np.testing.assert_allclose(
                ours[f"{model}_{measure}"],
                theirs.loc[ours.index, f"{their_model}_{measure}"],
                rtol=1e-9,
                err_msg=f"{model} {measure}",
            )


def test_markov_matches_channel_attribution_within_its_simulation_noise(con, realistic):
    # ChannelAttribution estimates removal effects by simulating journeys; by default it
    # stops each simulated journey after as many steps as the longest observed path, which
    # biases channels met on loops downwards. Our model is the exact, unbounded chain, so
    # let it simulate long journeys. Its seed barely changes the draws, so independent
    # repetitions come from shuffling the rows (which renumbers the channels).
    runs = []
    for repetition in range(8):
        shuffled = realistic.sample(frac=1, random_state=repetition).reset_index(drop=True)
        result = ChannelAttribution.markov_model(
            shuffled,
            "path",
            "total_conversions",
            var_value="total_conversion_value",
            var_null="total_null",
            order=1,
            nsim_start=1e6,
            max_step=200,
            seed=repetition,
            verbose=0,
            flg_pro=False,
        )
        runs.append(result.set_index("channel_name"))
    ours = run(con, realistic, ["markov"])
    total = realistic.total_conversions.sum()
    for measure, their_measure in [
        ("conversions", "total_conversions"),
        ("value", "total_conversion_value"),
    ]:
        theirs = pd.concat([r[their_measure] for r in runs], axis=1).loc[ours.index]
        mean, spread = theirs.mean(axis=1), theirs.std(axis=1, ddof=1)
        # five standard errors of their mean, per channel (beyond the 99.8% point of
        # Student's t with 7 degrees of freedom)
        tolerance = 5 * spread / np.sqrt(len(runs))
        scale = total if measure == "conversions" else realistic.total_conversion_value.sum()
        assert (tolerance < 0.01 * scale).all(), tolerance  # the comparison is not vacuous
        assert (spread > 0).all()
        difference = (ours[f"markov_{measure}"] - mean).abs()
        assert (difference <= tolerance).all(), pd.DataFrame(
            {"ours": ours[f"markov_{measure}"], "theirs": mean, "tolerance": tolerance}
        )


# ---------------------------------------------------------------------------------------------
# Markov against a known chain
# ---------------------------------------------------------------------------------------------

CHAIN_CHANNELS = ["Search", "Social", "Email", "Display"]
CHAIN_START = np.array([0.4, 0.3, 0.2, 0.1])
# rows: from each channel to Search, Social, Email, Display, conversion, drop-off
CHAIN = np.array(
    [
        [0.10, 0.15, 0.10, 0.05, 0.20, 0.40],
        [0.20, 0.10, 0.10, 0.10, 0.05, 0.45],
        [0.15, 0.05, 0.05, 0.05, 0.30, 0.40],
        [0.25, 0.20, 0.10, 0.05, 0.05, 0.35],
    ]
)
CHAIN_VALUE = np.array([50.0, 20.0, 80.0, 10.0])
"""The value of a conversion made from each channel."""


def chain_shares() -> np.ndarray:
    """Exact shares of conversions and of value (columns) by removal effect."""
    q = CHAIN[:, :4]
    reward = np.column_stack([CHAIN[:, 4], CHAIN[:, 4] * CHAIN_VALUE])

    def converted(keep: np.ndarray) -> np.ndarray:
        return CHAIN_START @ np.linalg.solve(np.eye(4) - q * keep[:, None], reward * keep[:, None])

    full = converted(np.ones(4))
    effects = np.array([1 - converted(np.arange(4) != c) / full for c in range(4)])
    return effects / effects.sum(axis=0)


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    """200,000 journeys drawn from the chain, aggregated to paths."""
    assert np.allclose(CHAIN.sum(axis=1), 1)
    assert np.isclose(CHAIN_START.sum(), 1)
    rng = np.random.default_rng(11)
    n = 200_000
    names = np.array(CHAIN_CHANNELS, dtype=object)
    state = rng.choice(4, n, p=CHAIN_START)
    paths = names[state].copy()
    outcome = np.full(n, -1)
    active = np.arange(n)
    cumulative = CHAIN.cumsum(axis=1)
    while active.size:
        step = (rng.random(active.size)[:, None] > cumulative[state[active]]).sum(axis=1)
        step = np.minimum(step, 5)
        ended = step >= 4
        outcome[active[ended]] = step[ended] - 4  # 0 converted, 1 dropped off
        moving = active[~ended]
        state[moving] = step[~ended]
        paths[moving] = paths[moving] + " > " + names[state[moving]]
        active = moving
    converted = outcome == 0
    journeys = pd.DataFrame(
        {
            "path": paths,
            "total_conversions": converted.astype(int),
            "total_conversion_value": np.where(converted, CHAIN_VALUE[state], 0.0),
            "total_null": (~converted).astype(int),
        }
    )
    return journeys.groupby("path", as_index=False).sum()


@pytest.mark.parametrize("order", [1, 2, 3])
def test_markov_recovers_a_known_chain(con, simulated, order):
    settings = Settings(analytics={"markov_order": order})
    result = run(con, simulated, ["markov"], settings=settings).loc[CHAIN_CHANNELS]
    conversions = simulated.total_conversions.sum()
    value = simulated.total_conversion_value.sum()
    assert result.markov_conversions.sum() == pytest.approx(conversions)
    assert result.markov_value.sum() == pytest.approx(value)
    # a first-order process seen through a higher-order chain has the same removal effects
    # (a channel's first visit enters a state containing it), so every order recovers them
    expected = chain_shares()
    np.testing.assert_allclose(result.markov_conversions / conversions, expected[:, 0], atol=0.01)
    np.testing.assert_allclose(result.markov_value / value, expected[:, 1], atol=0.01)


def test_usual_and_unusual_spacing_read_the_same(con) -> None:
    """Spaces around steps are trimmed however the separator is spaced."""
    spellings = ["A > B", "A>B", " A  >  B ", "A > > B", "A >B", "A\u00a0> B", "A > B >"]
    df = pd.DataFrame({"path": spellings, "total_conversions": [1] * len(spellings)})
    result = attribute_paths(
        df, ["first_touch", "last_touch"], value=None, nulls=None, settings=Settings(), con=con
    ).set_index("channel")
    assert result.loc["A", "first_touch_conversions"] == len(spellings) - 1
    assert result.loc["B", "last_touch_conversions"] == len(spellings)
    assert "A\u00a0" in result.index  # a no-break space is not trimmed: it is a character
