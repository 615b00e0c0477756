"""The report cache: an identical request is answered from memory; a lake sync, an
identity-map export or a change of settings computes afresh; callers get copies; the cache
stays bounded. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pandas as pd
import pytest
import sqlalchemy as sa
from analytics_world import build_world, page

from plait.analytics import channel_report, daily_totals, period
from plait.analytics.options import with_options
from plait.analytics.report_cache import MAX_ENTRIES, REPORTS, ReportCache, cached_report
from plait.collect.replication import lake_batches
from plait.core.clock import utcnow
from plait.core.db import write
from plait.core.settings import Settings
from plait.identity.graph import identity_progress, progress
from plait.upkeep import upkeep_once

MARCH = period("2026-03-01", "2026-03-06")


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    REPORTS.clear()
    yield
    REPORTS.clear()


class Counted(Protocol):
    """A stand-in report that counts how often it really runs."""

    calls: list[tuple[Any, ...]]

    def __call__(self, settings: Settings, span: Any, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """The report's result."""


@pytest.fixture
def report() -> Counted:
    def counted(settings: Settings, span: Any, *args: Any, con: Any, **kwargs: Any) -> pd.DataFrame:
        counted.calls.append((span, args, kwargs))
        return pd.DataFrame({"channel": ["Email", "Direct"], "sessions": [len(counted.calls), 1]})

    counted.calls = []
    return counted


def test_an_identical_request_is_answered_from_the_cache(
    engine: sa.Engine, settings: Settings, report: Counted
) -> None:
    first = cached_report(engine, settings, report, MARCH, "linear", kind="sale")
    again = cached_report(engine, settings, report, MARCH, "linear", kind="sale")
    assert len(report.calls) == 1
    pd.testing.assert_frame_equal(first, again)
    assert report.calls[0][1:] == (("linear",), {"kind": "sale"})

    cached_report(engine, settings, report, MARCH, "markov", kind="sale")
    cached_report(engine, settings, report, MARCH, "linear", kind="contact")
    cached_report(engine, settings, report, period("2026-03-01", "2026-03-06", "Asia/Tokyo"))
    cached_report(engine, settings, report, period("2026-03-01", "2026-03-07"))
    assert len(report.calls) == 5


def test_a_lake_sync_recomputes(engine: sa.Engine, settings: Settings, report: Counted) -> None:
    cached_report(engine, settings, report, MARCH)
    with write(engine) as conn:  # a sync records its batch before writing the files…
        batch = conn.execute(
            lake_batches.insert().values(seq_from=0, seq_to=7, created_at=utcnow(), row_count=0)
        ).inserted_primary_key[0]
    cached_report(engine, settings, report, MARCH)
    assert len(report.calls) == 2
    with write(engine) as conn:  # …and marks it done after: same seq, other files
        conn.execute(
            lake_batches.update().where(lake_batches.c.id == batch).values(completed_at=utcnow())
        )
    cached_report(engine, settings, report, MARCH)
    cached_report(engine, settings, report, MARCH)
    assert len(report.calls) == 3


def test_an_identity_map_export_recomputes(
    engine: sa.Engine, settings: Settings, report: Counted
) -> None:
    with write(engine) as conn:
        progress(conn)
    cached_report(engine, settings, report, MARCH)
    with write(engine) as conn:
        conn.execute(identity_progress.update().values(version=1, exported_version=1))
    cached_report(engine, settings, report, MARCH)
    cached_report(engine, settings, report, MARCH)
    assert len(report.calls) == 2


def test_settings_that_shape_results_recompute(
    engine: sa.Engine, settings: Settings, report: Counted
) -> None:
    cached_report(engine, settings, report, MARCH)
    shorter = with_options(settings, lookback_days=1)
    cached_report(engine, shorter, report, MARCH)
    orders = settings.profiles.model_copy(update={"order_events": ["Order Completed", "Paid"]})
    cached_report(engine, settings.model_copy(update={"profiles": orders}), report, MARCH)
    cached_report(engine, settings.model_copy(update={"lake": f"{settings.lake}-2"}), report, MARCH)
    assert len(report.calls) == 4
    cached_report(engine, with_options(settings, lookback_days=1), report, MARCH)
    unrelated = settings.server.model_copy(update={"port": 9999})
    cached_report(engine, settings.model_copy(update={"server": unrelated}), report, MARCH)
    assert len(report.calls) == 4


def test_callers_get_copies(engine: sa.Engine, settings: Settings, report: Counted) -> None:
    first = cached_report(engine, settings, report, MARCH)
    first.loc[0, "sessions"] = 99
    second = cached_report(engine, settings, report, MARCH)
    assert second.sessions.tolist() == [1, 1]
    second.drop(columns="channel", inplace=True)
    assert list(cached_report(engine, settings, report, MARCH).columns) == ["channel", "sessions"]
    assert len(report.calls) == 1


def test_the_cache_keeps_the_most_recently_used() -> None:
    cache = ReportCache(max_entries=3)
    for key in "abc":
        cache.put(key, pd.DataFrame({"key": [key]}))
    assert cache.get("a") is not None  # a is now the most recent; b the least
    cache.put("d", pd.DataFrame({"key": ["d"]}))
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(key).key[0] for key in "acd"] == ["a", "c", "d"]
    assert REPORTS.max_entries == MAX_ENTRIES == 128


def test_the_shared_cache_stays_bounded(
    engine: sa.Engine, settings: Settings, report: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(REPORTS, "max_entries", 4)
    for limit in range(10):
        cached_report(engine, settings, report, MARCH, limit=limit)
    assert len(REPORTS) == 4
    cached_report(engine, settings, report, MARCH, limit=9)
    cached_report(engine, settings, report, MARCH, limit=0)
    assert len(report.calls) == 11


def test_real_reports_are_cached_and_follow_new_events(
    send_events, engine: sa.Engine, settings: Settings, token_api
) -> None:
    world = build_world(send_events, engine, settings)
    cold = cached_report(engine, world, daily_totals, MARCH)
    pd.testing.assert_frame_equal(cold, daily_totals(world, MARCH))
    pd.testing.assert_frame_equal(cached_report(engine, world, daily_totals, MARCH), cold)

    url = "/api/analytics/channels?from=2026-03-01&to=2026-03-06&model=linear"
    body = token_api("marketer").get(url)
    cached = cached_report(engine, world, channel_report, MARCH, "linear")
    assert body["rows"] == cached.to_dict(orient="records")

    send_events(page({"anonymousId": "fay-1"}, "2026-03-06T09:00:00Z"))
    upkeep_once(engine, world)
    fresh = cached_report(engine, world, daily_totals, MARCH)
    assert fresh.sessions.sum() == cold.sessions.sum() + 1
    assert token_api("marketer").get(url)["totals"]["sessions"] == fresh.sessions.sum()
