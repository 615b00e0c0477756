"""The kept history (``analytics.history``): reports read from it give what they give when
every session is derived from the events; what changed since it was written (new events,
merges, splits, identifiers newly resolved) is recomputed when it is read and folded in by a
refresh; history that no longer matches the lake or the rules is not used."""

from __future__ import annotations

from uuid import UUID

import pandas as pd
import pyarrow.fs as pafs
import pytest
import sqlalchemy as sa
from analytics_world import ANN, BOB, GOOGLE, build_world, identify, page, track

from plait.analytics import channel_report, connect, funnel, paths, period, transitions
from plait.analytics.engine import event_files, identity_map, lake_events
from plait.analytics.history import _usable as usable
from plait.analytics.history import (
    derive,
    keep_history,
    read_history,
    relevant_events,
)
from plait.core.db import read, write
from plait.core.lake import HISTORY_DATASET, lake_filesystem
from plait.core.settings import Settings
from plait.identity.graph import identities
from plait.identity.identifiers import identity_rules
from plait.identity.merges import merge_customers, split_merge
from plait.profiles.pipeline import resolve
from plait.profiles.privacy import erase_person
from plait.upkeep import upkeep_once

MARCH = period("2026-03-01", "2026-03-06")
DEE = {"anonymousId": "dee-1"}
HAL = {"anonymousId": "hal-1"}
LATER = [
    page(DEE, "2026-03-05T08:00:00Z", "https://shop.example/?utm_source=news&utm_medium=email"),
    track(DEE, "2026-03-05T08:02:00Z", "Signed Up"),
    identify({**DEE, **ANN}, "2026-03-05T08:03:00Z"),  # Dee's device turns out to be Ann's
    page(HAL, "2026-03-04T10:00:00Z", **GOOGLE),
    track(HAL, "2026-03-04T10:04:00Z", "Order Completed", revenue=5),
    page(BOB, "2026-03-06T10:00:00Z"),
]


@pytest.fixture
def world(send_events, engine: sa.Engine, settings: Settings) -> Settings:
    return build_world(send_events, engine, settings)


def tidy(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(list(table.columns), ignore_index=True)


def kept_and_afresh(settings: Settings) -> tuple[dict[str, pd.DataFrame], ...]:
    """The history as read (kept, plus what changed since) and as derived from every event."""
    con = connect(settings)
    found = read_history(settings, con)
    lake = relevant_events(lake_events(con, settings), settings)
    afresh = derive(con, settings, lake, identity_map(con, settings))
    return tuple(
        {
            "sessions": tidy(con.execute(history.sessions)),
            "conversions": tidy(con.execute(history.conversions)),
        }
        for history in (found, afresh)
    )


def assert_same_history(settings: Settings) -> None:
    kept, afresh = kept_and_afresh(settings)
    for part in ("sessions", "conversions"):
        pd.testing.assert_frame_equal(kept[part], afresh[part])


def generations(settings: Settings) -> set[str]:
    filesystem, root = lake_filesystem(settings.lake)
    names = filesystem.get_file_info(
        pafs.FileSelector(f"{root}/{HISTORY_DATASET}", allow_not_found=True)
    )
    return {
        info.base_name.removesuffix(".parquet").rsplit("-", 1)[-1]
        for info in names
        if info.base_name.endswith(".parquet")
    }


def profile_of(engine: sa.Engine, kind: str, value: str) -> UUID:
    with read(engine) as conn:
        return conn.execute(
            sa.select(identities.c.profile_id).where(
                identities.c.kind == kind, identities.c.value == value
            )
        ).scalar_one()


def catch_up(engine: sa.Engine, settings: Settings) -> None:
    resolve(engine, settings)
    upkeep_once(engine, settings)


def test_reports_from_kept_history_are_the_reports_derived_from_the_events(
    world: Settings, engine: sa.Engine
) -> None:
    reports = [
        (channel_report, ("last_touch",)),
        (channel_report, ("markov",)),
        (funnel, ()),
        (paths, ("sale",)),
        (transitions, ("contact",)),
    ]
    before = [report(world, MARCH, *args) for report, args in reports]
    assert usable(world, event_files(world)) is None
    assert keep_history(engine, world) is True
    assert keep_history(engine, world) is False  # nothing changed since
    assert usable(world, event_files(world)) is not None
    for (report, args), expected in zip(reports, before, strict=True):
        pd.testing.assert_frame_equal(report(world, MARCH, *args), expected)


def test_changes_since_are_recomputed_when_read_then_folded_in(
    world: Settings, engine: sa.Engine, send_events
) -> None:
    keep_history(engine, world)
    first = usable(world, event_files(world))
    assert first is not None
    report_then = channel_report(world, MARCH, "linear")

    send_events(*LATER)
    catch_up(engine, world)
    assert usable(world, event_files(world)) == first  # still the same kept files
    assert_same_history(world)  # new events, Dee merged into Ann, Hal new
    report_now = channel_report(world, MARCH, "linear")
    assert report_now.sales.sum() == report_then.sales.sum() + 1  # Hal's order

    assert keep_history(engine, world) is True
    second = usable(world, event_files(world))
    assert second is not None
    assert second.generation != first.generation
    assert second.max_seq > first.max_seq
    assert generations(world) == {first.generation, second.generation}
    assert_same_history(world)
    pd.testing.assert_frame_equal(channel_report(world, MARCH, "linear"), report_now)

    with write(engine) as conn:  # a merge by hand, then its split: only the map moves
        merged = merge_customers(
            conn,
            identity_rules(world),
            [
                profile_of(engine, "anonymous_id", "bob-1"),
                profile_of(engine, "anonymous_id", "cy-1"),
            ],
        )
    upkeep_once(engine, world)
    assert_same_history(world)
    keep_history(engine, world)
    third = usable(world, event_files(world))
    assert third is not None
    assert generations(world) == {second.generation, third.generation}  # the first is gone
    with write(engine) as conn:
        split_merge(conn, UUID(merged["customer_id"]), UUID(merged["merge_ids"][0]))
    upkeep_once(engine, world)
    assert_same_history(world)
    pd.testing.assert_frame_equal(channel_report(world, MARCH, "linear"), report_now)


def test_new_events_that_are_no_touches_only_move_the_state_on(
    world: Settings, engine: sa.Engine, send_events
) -> None:
    keep_history(engine, world)
    first = usable(world, event_files(world))
    send_events(track(BOB, "2026-03-06T11:00:00Z", "Wishlist Viewed"))
    catch_up(engine, world)
    assert keep_history(engine, world) is True
    now = usable(world, event_files(world))
    assert now is not None
    assert first is not None
    assert now.generation == first.generation
    assert now.max_seq > first.max_seq
    assert_same_history(world)


def test_an_erasure_drops_the_kept_history_and_a_refresh_derives_it_without_them(
    world: Settings, engine: sa.Engine
) -> None:
    keep_history(engine, world)
    ann = profile_of(engine, "user_id", "ann")
    erase_person(engine, world, ann)
    assert usable(world, event_files(world)) is None
    assert generations(world) == set()
    report = channel_report(world, MARCH, "last_touch")
    assert report.sales.sum() == 2  # Bob's and Cy's; Ann's is gone (Eve's is after March 6)
    keep_history(engine, world)
    assert usable(world, event_files(world)) is not None
    pd.testing.assert_frame_equal(channel_report(world, MARCH, "last_touch"), report)
    kept, _ = kept_and_afresh(world)
    assert str(ann) not in set(kept["sessions"].customer_id)


def test_kept_history_is_read_only_under_the_rules_it_was_derived_under(
    world: Settings, engine: sa.Engine
) -> None:
    keep_history(engine, world)
    files = event_files(world)
    other_timeout = world.model_copy(
        update={"analytics": world.analytics.model_copy(update={"session_timeout_minutes": 5})}
    )
    other_lookback = world.model_copy(
        update={"analytics": world.analytics.model_copy(update={"lookback_days": 3})}
    )
    assert usable(other_timeout, files) is None
    assert usable(other_lookback, files) is not None  # the models' settings shape no session
