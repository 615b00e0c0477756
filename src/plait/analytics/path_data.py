"""Attribution of aggregated path data exported from other tools, in the ChannelAttribution
convention: one row per path (``a > b > c``) with its conversions, value and
non-converting journeys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from ibis.backends import BaseBackend

from plait.analytics.catalog import DATA_DRIVEN_MODELS, PATH_MODELS, check_models, credit_columns
from plait.analytics.crediting import rule_credit
from plait.analytics.engine import connect, materialize
from plait.analytics.journeys import exploded, transition_counts
from plait.analytics.markov import markov_credit
from plait.analytics.path_codes import (
    coalitions,
    code_paths,
    collapsed,
    first_order_transitions,
    steps_table,
)
from plait.analytics.shapley import shapley_credit
from plait.core.errors import InvalidInput
from plait.core.settings import Settings, get_settings


def attribute_paths(
    df: pd.DataFrame,
    models: list[str] | tuple[str, ...] = PATH_MODELS,
    path: str = "path",
    conversions: str = "total_conversions",
    value: str | None = "total_conversion_value",
    nulls: str | None = "total_null",
    sep: str = ">",
    *,
    collapse_repeats: bool = False,
    settings: Settings | None = None,
    con: BaseBackend | None = None,
) -> pd.DataFrame:
    """One row per channel: ``channel`` and ``<model>_conversions`` / ``<model>_value`` for
    each model. ``value`` and ``nulls`` columns are optional (missing means zero); Markov
    needs the non-converting counts to be meaningful."""
    check_models(list(models), PATH_MODELS)
    settings = settings or get_settings()
    value = value if value in df.columns else None
    nulls = nulls if nulls in df.columns else None
    _check_columns(df, path, conversions, value, nulls)
    if not sep:
        raise InvalidInput("the path separator must not be empty", field="sep")
    coded = code_paths(
        df[path],
        df[conversions],
        df[nulls] if nulls else None,
        df[value] if value else None,
        sep,
    )
    if collapse_repeats:
        coded = collapsed(coded)
    result = pd.DataFrame({"channel": coded.names})
    rule_models = [m for m in models if m not in DATA_DRIVEN_MODELS]
    engine_needed = rule_models or ("markov" in models and settings.analytics.markov_order > 1)
    if engine_needed:
        con = con or connect(settings)
        arrays = materialize(con, steps_table(coded))
    if rule_models:
        converting = exploded(arrays.filter(arrays.conversions > 0), collapse_repeats=False)
        credited = rule_credit(con, converting, rule_models, settings.analytics, ["channel"])
        result = result.merge(credited, on="channel", how="left")
    for model in (m for m in models if m in DATA_DRIVEN_MODELS):
        if model == "shapley":
            shared = shapley_credit(*coalitions(coded))
        else:
            if settings.analytics.markov_order == 1:
                moves = first_order_transitions(coded)
            else:
                journeys = exploded(arrays, collapse_repeats=False)
                moves = con.execute(transition_counts(journeys, settings.analytics.markov_order))
            done = coded.conversions > 0
            shared = markov_credit(
                moves, float(coded.conversions[done].sum()), float(coded.value[done].sum())
            )
        renamed = {"conversions": f"{model}_conversions", "value": f"{model}_value"}
        result = result.merge(shared.rename(columns=renamed), on="channel", how="left")
    columns = credit_columns(models)
    result[columns] = result[columns].fillna(0.0).astype("float64")
    return result[["channel", *columns]].sort_values("channel", ignore_index=True)


def read_paths(file: Path) -> pd.DataFrame:
    """Path data from a CSV or Parquet file."""
    if not file.exists():
        raise InvalidInput(f"no such file: {file}", field="file")
    if file.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(file)
    if file.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(file)
    raise InvalidInput("path data must be a .csv or .parquet file", field="file")


def _check_columns(df: pd.DataFrame, path: str, *numeric: str | None) -> None:
    if path not in df.columns:
        raise InvalidInput(f"no path column {path!r} in the data", field="path")
    for column in (c for c in numeric if c):
        if column not in df.columns:
            raise InvalidInput(f"no column {column!r} in the data", field=column)
        if not pd.api.types.is_numeric_dtype(df[column]):
            raise InvalidInput(f"column {column!r} must be numeric", field=column)
        if (df[column].fillna(0) < 0).any():
            raise InvalidInput(f"column {column!r} has negative counts", field=column)
