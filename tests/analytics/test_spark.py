"""The same Ibis expressions on Spark (local mode) give the same reports as on DuckDB: the
channel report, daily totals, every model for every kind of conversion (the channel report's credit
columns come from the same code), paths, transitions and the funnel."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa
from analytics_world import build_world, identify, track
from pandas.testing import assert_frame_equal

from plait.analytics import (
    MODELS,
    attribute_paths,
    attribution,
    channel_report,
    connect,
    daily_totals,
    funnel,
    paths,
    period,
    transitions,
)
from plait.analytics.engine import spark_session
from plait.analytics.history import keep_history
from plait.core.settings import Settings
from plait.profiles.pipeline import resolve
from plait.upkeep import upkeep_once

MARCH = period("2026-03-01", "2026-03-06")  # the period of the world in analytics_world.py


@pytest.fixture
def world(send_events, engine: sa.Engine, settings: Settings) -> Settings:
    return build_world(send_events, engine, settings)


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    session = spark_session(Settings())
    session.conf.set("spark.sql.shuffle.partitions", "2")  # tiny data: fewer tasks
    yield session
    session.stop()


def same(duck: pd.DataFrame, spark: pd.DataFrame, keys: list[str]) -> None:
    def tidy(table: pd.DataFrame) -> pd.DataFrame:
        return table.sort_values(keys, ignore_index=True).astype(
            {c: "float64" for c in table.columns if pd.api.types.is_numeric_dtype(table[c])}
        )

    assert_frame_equal(tidy(duck), tidy(spark), check_exact=False, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reports_are_equal_on_duckdb_and_spark(world: Settings, spark) -> None:
    duck, sparky = connect(world), connect(world, "pyspark", session=spark)
    same(
        channel_report(world, MARCH, "last_touch", con=duck),
        channel_report(world, MARCH, "last_touch", con=sparky),
        ["channel"],
    )
    for tz in ("UTC", "Asia/Tokyo"):
        span = period("2026-02-20", "2026-03-10", tz)
        same(daily_totals(world, span, con=duck), daily_totals(world, span, con=sparky), ["day"])
    for kind in ("contact", "sale"):  # qualified takes the same path as contact
        same(
            attribution(world, MARCH, MODELS, kind, con=duck),
            attribution(world, MARCH, MODELS, kind, con=sparky),
            ["channel"],
        )
    same(paths(world, MARCH, con=duck), paths(world, MARCH, con=sparky), ["path"])
    same(
        paths(world, MARCH, outcome="drop-off", con=duck),
        paths(world, MARCH, outcome="drop-off", con=sparky),
        ["path"],
    )
    same(
        transitions(world, MARCH, con=duck),
        transitions(world, MARCH, con=sparky),
        ["source", "target"],
    )
    same(funnel(world, MARCH, con=duck), funnel(world, MARCH, con=sparky), ["channel"])


def test_path_data_is_equal_on_duckdb_and_spark(spark) -> None:
    data = pd.DataFrame(
        {
            "path": ["A > B > A", "B", "C > A", "A", "Direct > B", "C > Direct"],
            "total_conversions": [2, 1, 0, 3, 4, 1],
            "total_conversion_value": [20.0, 5.0, 0.0, 9.0, 40.0, 7.5],
            "total_null": [1, 3, 2, 0, 5, 2],
        }
    )
    settings = Settings()
    duck = attribute_paths(data, settings=settings, con=connect(settings))
    sparky = attribute_paths(
        data, settings=settings, con=connect(settings, "pyspark", session=spark)
    )
    same(duck, sparky, ["channel"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_kept_history_with_what_changed_since_is_read_the_same_on_spark(
    world: Settings, engine: sa.Engine, send_events, spark
) -> None:
    keep_history(engine, world)
    dee = {"anonymousId": "dee-1"}
    send_events(  # Dee signs up, then turns out to be Ann: new events and a merge
        track(dee, "2026-03-05T08:02:00Z", "Signed Up"),
        identify({**dee, "userId": "ann"}, "2026-03-05T08:03:00Z"),
    )
    resolve(engine, world)
    upkeep_once(engine, world)
    duck, sparky = connect(world), connect(world, "pyspark", session=spark)
    for model in ("last_touch", "linear"):
        same(
            channel_report(world, MARCH, model, con=duck),
            channel_report(world, MARCH, model, con=sparky),
            ["channel"],
        )
    same(funnel(world, MARCH, con=duck), funnel(world, MARCH, con=sparky), ["channel"])
