"""Workspaces: reports run on one give exactly what they give alone, for any period (the
journeys a workspace keeps for the whole history are cut back to what was known at a
period's end); the report cache runs every report of one lake state on one workspace,
reading the lake once, and a lake sync or an identity-map export opens a new one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from analytics_world import GOOGLE, build_world, identify, page, track

from plait.analytics import (
    MODELS,
    attribution,
    channel_report,
    daily_totals,
    funnel,
    paths,
    period,
    transitions,
)
from plait.analytics import inputs as inputs_module
from plait.analytics.conversions import KINDS
from plait.analytics.inputs import Workspace
from plait.analytics.period import Period
from plait.analytics.report_cache import (
    REPORTS,
    WORKSPACES,
    Workspaces,
    cached_report,
    dashboard_snapshot,
    data_key,
    snapshot,
)
from plait.core.settings import Settings
from plait.profiles.pipeline import resolve
from plait.upkeep import upkeep_once

MARCH = period("2026-03-01", "2026-03-06")
GUS = {"anonymousId": "gus-1"}
LATE_SIGN_UP = [
    page(GUS, "2026-03-01T09:00:00Z", **GOOGLE),
    page(
        GUS, "2026-03-02T09:00:00Z", "https://shop.example/?utm_source=newsletter&utm_medium=email"
    ),
    track(GUS, "2026-03-02T09:05:00Z", "Order Completed", revenue=30),
    track(GUS, "2026-03-05T09:00:00Z", "Signed Up"),
]
"""Gus orders after two touches and makes contact only later."""
PERIODS = [
    MARCH,
    period("2026-03-01", "2026-03-03"),  # Gus's contact comes after it, Bob's qualifying too
    period("2026-03-02", "2026-03-06", "America/New_York"),
]


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    REPORTS.clear()
    WORKSPACES.clear()
    yield
    REPORTS.clear()
    WORKSPACES.clear()


@pytest.fixture
def world(send_events, engine: sa.Engine, settings: Settings) -> Settings:
    send_events(*LATE_SIGN_UP)
    return build_world(send_events, engine, settings)


def every_report() -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    """Each report, every model for every kind of conversion."""
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (daily_totals, (), {}),
        (funnel, (), {}),
        (channel_report, ("markov",), {}),
        (paths, ("sale",), {"outcome": "conversion"}),
        (paths, ("sale",), {"outcome": "drop-off"}),
    ]
    for kind in KINDS:
        calls += [(attribution, (list(MODELS), kind), {}), (transitions, (kind,), {})]
    return calls


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("span", PERIODS, ids=lambda span: f"{span.first}-{span.last}-{span.tz}")
def test_reports_on_a_workspace_are_the_reports_alone(world: Settings, span: Period) -> None:
    workspace = Workspace(world)
    for report, args, kwargs in every_report():
        shared = workspace.run(report, span, *args, **kwargs)
        alone = report(world, span, *args, **kwargs)
        pd.testing.assert_frame_equal(shared, alone, check_exact=False, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_workspace_reads_the_lake_once(world: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = inputs_module.history
    monkeypatch.setattr(
        inputs_module,
        "history",
        lambda *args, **options: reads.append(args) or real(*args, **options),
    )
    workspace = Workspace(world)
    for span in PERIODS:
        workspace.run(channel_report, span, "markov")
        workspace.run(transitions, span, "sale")
    assert len(reads) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_workspace_keeps_a_bounded_number_of_tables(world: Settings) -> None:
    workspace = Workspace(world, max_tables=2)
    for day in range(1, 7):
        span = period(f"2026-03-0{day}", f"2026-03-0{day}")
        workspace.run(transitions, span, "sale")
        workspace.run(paths, span, "sale", outcome="drop-off")
    tables = workspace.con.raw_sql(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'plait_%'"
    ).fetchall()
    assert tables == [(2 + 3,)]  # two periods' journeys; the history, with its journeys


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_threads_take_turns_on_a_workspace(world: Settings) -> None:
    workspace = Workspace(world)
    calls = every_report()[:6]
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(workspace.run, report, MARCH, *a, **kw) for report, a, kw in calls]
        together = [future.result() for future in futures]
    for (report, args, kwargs), shared in zip(calls, together, strict=True):
        pd.testing.assert_frame_equal(shared, report(world, MARCH, *args, **kwargs))


def test_the_report_cache_shares_one_workspace_per_lake_state(
    world: Settings, engine: sa.Engine, send_events
) -> None:
    cached_report(engine, world, daily_totals, MARCH)
    cached_report(engine, world, channel_report, MARCH, "linear")
    cached_report(engine, world, funnel, period("2026-03-02", "2026-03-03"))
    assert len(WORKSPACES) == 1

    send_events(page({"anonymousId": "fay-1"}, "2026-03-06T09:00:00Z"))
    upkeep_once(engine, world)
    fresh = cached_report(engine, world, daily_totals, MARCH)
    assert len(WORKSPACES) == 2
    pd.testing.assert_frame_equal(fresh, daily_totals(world, MARCH))


def test_a_merge_reaches_reports_through_a_new_workspace(
    world: Settings, engine: sa.Engine, send_events
) -> None:
    before = cached_report(engine, world, channel_report, MARCH, "linear")
    # Dee's lone Direct visit turns out to be Ann's, whose first touch was Paid Social.
    send_events(identify({"anonymousId": "dee-1", "userId": "ann"}, "2026-03-06T10:00:00Z"))
    resolve(engine, world)
    upkeep_once(engine, world)
    after = cached_report(engine, world, channel_report, MARCH, "linear")
    pd.testing.assert_frame_equal(after, channel_report(world, MARCH, "linear"))
    originals = dict(zip(after.channel, after.sessions_by_original_channel, strict=True))
    earlier = dict(zip(before.channel, before.sessions_by_original_channel, strict=True))
    assert originals["Paid Social"] == earlier["Paid Social"] + 1
    assert originals["Direct"] == earlier["Direct"] - 1


def test_workspaces_are_bounded() -> None:
    kept = Workspaces(max_entries=2)
    settings = Settings()
    first = kept.get("a", settings)
    assert kept.get("a", settings) is first
    kept.get("b", settings)
    kept.get("c", settings)
    assert len(kept) == 2
    assert kept.get("a", settings) is not first


def wait_for(condition: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def shown(engine: sa.Engine, settings: Settings) -> tuple[Any, pd.DataFrame]:
    """What a dashboard page would show: its state and the daily totals of March."""
    with dashboard_snapshot(engine, settings) as data:
        return data.data, data.report(daily_totals, MARCH)


def test_the_dashboard_shows_the_last_state_read_while_it_reads_the_new_one(
    world: Settings, engine: sa.Engine, send_events
) -> None:
    _, before = shown(engine, world)
    send_events(page({"anonymousId": "fay-1"}, "2026-03-06T09:00:00Z"))
    upkeep_once(engine, world)
    synced = data_key(engine, world)

    state, stale = shown(engine, world)
    assert state != synced
    pd.testing.assert_frame_equal(stale, before)

    wait_for(lambda: shown(engine, world)[0] == synced)
    _, after = shown(engine, world)
    pd.testing.assert_frame_equal(after, daily_totals(world, MARCH))
    assert after.sessions.sum() == before.sessions.sum() + 1


def test_a_first_read_and_other_callers_wait_for_the_current_state(
    world: Settings, engine: sa.Engine, send_events
) -> None:
    state, _ = shown(engine, world)
    assert state == data_key(engine, world)  # nothing read before: no earlier state
    send_events(page({"anonymousId": "fay-1"}, "2026-03-06T09:00:00Z"))
    upkeep_once(engine, world)
    current = snapshot(engine, world)
    assert current.data == data_key(engine, world)
    pd.testing.assert_frame_equal(current.report(daily_totals, MARCH), daily_totals(world, MARCH))


def test_the_newest_state_read_outlives_the_bound_while_the_next_is_read(
    world: Settings,
) -> None:
    kept = Workspaces(max_entries=1)
    old = kept.get(("lake", 1), world)
    old.prepare()
    key, served, read_newer = kept.serving(("lake", 2), world)
    assert (key, served) == (("lake", 1), old)
    assert read_newer is not None
    assert kept.serving(("lake", 3), world) == (("lake", 1), old, None)  # one at a time
    read_newer()
    wait_for(lambda: kept.serving(("lake", 2), world)[0] == ("lake", 2))
    new = kept.serving(("lake", 2), world)[1]
    assert new.ready
    assert new is not old
    assert len(kept) == 1  # the old state went once the new one was read

    assert kept.serving(("lake", 3), world)[:2] == (("lake", 2), new)
    assert kept.serving(("other settings", 1), world)[0] == ("other settings", 1)


def test_a_failed_read_is_logged_and_tried_again(
    world: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kept = Workspaces()
    kept.get(("lake", 1), world).prepare()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("lake unreachable")

    monkeypatch.setattr(inputs_module, "history", broken)
    key, _, read_newer = kept.serving(("lake", 2), world)
    assert key == ("lake", 1)
    read_newer()
    wait_for(lambda: "lake unreachable" in caplog.text)
    monkeypatch.undo()
    key, _, read_newer = kept.serving(("lake", 2), world)
    assert key == ("lake", 1)
    read_newer()
    wait_for(lambda: kept.serving(("lake", 2), world)[0] == ("lake", 2))
