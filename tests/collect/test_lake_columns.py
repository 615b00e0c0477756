"""The lake's typed analytics columns (revenue, currency, contactable, lifecycle stage), and
the rebuild of a lake written in an older format."""

from __future__ import annotations

import os

import pyarrow.dataset as ds
import sqlalchemy as sa

from plait.collect.replication import FORMAT_MARKER, LAKE_FORMAT, sync_lake
from plait.core.settings import Settings


def lake_rows(settings: Settings) -> dict[str, dict]:
    table = ds.dataset(f"{settings.lake}/events", format="parquet", partitioning="hive").to_table()
    return {row["message_id"]: row for row in table.to_pylist()}


def test_analytics_columns_are_extracted_from_json(
    send_events, engine: sa.Engine, settings: Settings
) -> None:
    send_events(
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-rev",
         "properties": {"revenue": 12.5, "total": 99, "currency": " eur "}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-total",
         "properties": {"total": "40.25"}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-junk",
         "properties": {"revenue": "lots", "currency": ""}},
        {"type": "identify", "userId": "u2", "messageId": "m-email",
         "traits": {"email": "ann@example.com", "lifecycleStage": " MQL "}},
        {"type": "identify", "userId": "u3", "messageId": "m-phone",
         "traits": {"phone": "+33 6 12 34 56 78"}},
        {"type": "identify", "userId": "u4", "messageId": "m-bad-email",
         "traits": {"email": "not-an-address"}},
        {"type": "track", "userId": "u5", "event": "Clicked", "messageId": "m-context",
         "context": {"traits": {"email": "bo@example.com"}}},
    )  # fmt: skip
    sync_lake(engine, settings)
    rows = lake_rows(settings)
    assert (rows["m-rev"]["revenue"], rows["m-rev"]["currency"]) == (12.5, "EUR")
    assert (rows["m-total"]["revenue"], rows["m-total"]["currency"]) == (40.25, None)
    assert (rows["m-junk"]["revenue"], rows["m-junk"]["currency"]) == (None, None)
    assert rows["m-email"]["contactable"] is True
    assert rows["m-email"]["lifecycle_stage"] == "mql"
    assert rows["m-phone"]["contactable"] is True
    assert rows["m-bad-email"]["contactable"] is False
    assert rows["m-context"]["contactable"] is True
    assert rows["m-rev"]["contactable"] is False


def test_a_lake_of_an_older_format_is_rebuilt_from_the_events(
    send_events, engine: sa.Engine, settings: Settings
) -> None:
    send_events(*({"type": "page", "anonymousId": f"a{i}", "messageId": f"p{i}"} for i in range(5)))
    sync_lake(engine, settings)
    marker = f"{settings.lake}/{FORMAT_MARKER}"
    with open(marker) as handle:
        assert handle.read() == LAKE_FORMAT
    with open(marker, "w") as handle:
        handle.write("1")  # as if an older Plait wrote this lake
    stale = f"{settings.lake}/events/date=2000-01-01"
    os.makedirs(stale)
    open(f"{stale}/batch-0000000001.parquet", "wb").close()  # not even Parquet

    report = sync_lake(engine, settings)
    assert report.rows == 5
    assert sorted(lake_rows(settings)) == [f"p{i}" for i in range(5)]
    with open(marker) as handle:
        assert handle.read() == LAKE_FORMAT
    assert sync_lake(engine, settings).rows == 0
