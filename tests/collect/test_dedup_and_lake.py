"""The de-duplication window and the event lake's layout and idempotence."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pyarrow.dataset as ds
import sqlalchemy as sa

from plait.collect.event_store import events, prune_seen
from plait.collect.ingest import ingest, rules_from_settings
from plait.collect.messages import Envelope
from plait.collect.replication import pending_count, replicated_seq, sync_lake
from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.sources import find_source


def send(engine, settings, messages, received_at=None):
    with read(engine) as conn:
        website = find_source(conn, "Website")
    envelope = Envelope(website, received_at or utcnow())
    return ingest(engine, messages, envelope, rules_from_settings(settings))


def test_a_message_id_is_stored_again_only_after_the_window(engine, settings, source) -> None:
    message = {"type": "track", "userId": "u", "event": "E", "messageId": "m-1"}
    old = utcnow() - timedelta(days=8)
    assert send(engine, settings, [message], received_at=old).accepted == 1
    assert send(engine, settings, [message]).duplicates == 1
    with write(engine) as conn:
        forgotten = prune_seen(conn, utcnow() - timedelta(days=settings.collect.dedup_window_days))
    assert forgotten == 1
    assert send(engine, settings, [message]).accepted == 1
    with write(engine) as conn:
        assert prune_seen(conn, utcnow() - timedelta(days=7)) == 0
    assert send(engine, settings, [message]).duplicates == 1


def test_lake_is_partitioned_by_day_and_sync_is_idempotent(engine, settings, source) -> None:
    messages = [
        {
            "type": "track",
            "userId": f"u{i}",
            "event": "E",
            "properties": {"i": i},
            "timestamp": f"2026-05-0{1 + i % 3}T12:00:00Z",
            "context": {"locale": "en"},
        }
        for i in range(9)
    ]
    send(engine, settings, messages)
    with read(engine) as conn:
        assert pending_count(conn) == 9
    report = sync_lake(engine, settings)
    assert (report.batches, report.rows, len(report.files)) == (1, 9, 3)
    assert sorted(path.split("/")[-2] for path in report.files) == [
        "date=2026-05-01",
        "date=2026-05-02",
        "date=2026-05-03",
    ]
    again = sync_lake(engine, settings)
    assert (again.batches, again.rows, again.files) == (0, 0, [])
    lake = ds.dataset(f"{settings.lake}/events", format="parquet", partitioning="hive")
    table = lake.to_table()
    assert table.num_rows == 9
    assert sorted(table["user_id"].to_pylist()) == sorted(f"u{i}" for i in range(9))
    assert table.schema.field("timestamp").type.tz == "UTC"
    first = table.filter(ds.field("user_id") == "u0").to_pylist()[0]
    assert orjson.loads(first["properties"]) == {"i": 0}
    assert orjson.loads(first["context"])["locale"] == "en"
    assert first["source"] == "Website"
    assert str(first["date"]) == "2026-05-01"
    with read(engine) as conn:
        assert pending_count(conn) == 0
        newest = conn.execute(sa.select(sa.func.max(events.c.seq))).scalar()
        assert replicated_seq(conn) == newest


def test_new_events_go_to_new_files(engine, settings, source) -> None:
    send(
        engine,
        settings,
        [{"type": "page", "anonymousId": "a", "timestamp": "2026-05-01T00:00:00Z"}],
    )
    first = sync_lake(engine, settings)
    send(
        engine,
        settings,
        [{"type": "page", "anonymousId": "b", "timestamp": "2026-05-01T01:00:00Z"}],
    )
    second = sync_lake(engine, settings)
    assert first.files != second.files
    table = ds.dataset(f"{settings.lake}/events", format="parquet", partitioning="hive").to_table()
    assert sorted(table["anonymous_id"].to_pylist()) == ["a", "b"]


def test_only_one_replicator_runs_at_a_time(engine, settings, source) -> None:
    from plait.core.db import exclusive_job

    send(engine, settings, [{"type": "page", "anonymousId": "a"}])
    with exclusive_job(engine, "lake-sync") as mine:
        assert mine
        assert sync_lake(engine, settings).rows == 0
        with read(engine) as conn:
            assert pending_count(conn) == 1
    assert sync_lake(engine, settings).rows == 1


def test_the_lake_holds_awkward_values_exactly(engine, settings, source) -> None:
    """Empty strings stay empty (not null), text with quotes, commas, newlines and non-ASCII
    survives, JSON null is null, and times keep their microseconds."""
    awkward = 'a "quoted", comma\nnew line, tab\t, backslash \\ and ünïcödé ✓'
    messages = [
        {
            "type": "page",
            "anonymousId": "anon-1",
            "name": "",
            "messageId": "m-awkward",
            "properties": {"text": awkward, "empty": "", "nothing": None},
            "traits": None,
            "timestamp": "2026-05-01T12:00:00.123456Z",
            "context": {"page": {"title": awkward}},
        },
        {"type": "track", "userId": awkward, "event": awkward, "messageId": "m-plain"},
    ]
    send(engine, settings, messages)
    sync_lake(engine, settings)
    lake = ds.dataset(f"{settings.lake}/events", format="parquet", partitioning="hive")
    rows = {row["message_id"]: row for row in lake.to_table().to_pylist()}
    with read(engine) as conn:
        stored = {
            row.message_id: row
            for row in conn.execute(sa.select(events).order_by(events.c.seq)).mappings()
        }
    first, second = rows["m-awkward"], rows["m-plain"]
    assert first["name"] == ""
    assert (first["user_id"], first["traits"], first["warnings"]) == (None, None, None)
    assert orjson.loads(first["properties"]) == {"text": awkward, "empty": "", "nothing": None}
    assert orjson.loads(first["context"])["page"]["title"] == awkward
    assert (second["user_id"], second["event"]) == (awkward, awkward)
    for message_id, row in rows.items():
        for name in ("id", "source_id"):
            assert row[name] == str(stored[message_id][name])
        for name in ("timestamp", "original_timestamp", "sent_at", "received_at"):
            assert row[name] == stored[message_id][name], name
        assert row["seq"] == stored[message_id]["seq"]
    assert first["timestamp"].microsecond == 123456
