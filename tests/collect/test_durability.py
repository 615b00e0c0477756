"""Acknowledged means durable: an event whose request got a 200 survives ``kill -9`` of the
server, retries after a crash are de-duplicated, and the lake ends up with every event
exactly once even when replication is interrupted half-way through a batch."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import sqlalchemy as sa
from tests.conftest import LiveServer

from plait.collect import replication
from plait.collect.event_store import committed_seq, events
from plait.collect.ingest import ingest, rules_from_settings
from plait.collect.messages import Envelope
from plait.collect.replication import (
    _next_batch,
    _range_table,
    _write_days,
    lake_batches,
    pending_count,
    sync_lake,
)
from plait.core.clock import utcnow
from plait.core.db import read
from plait.core.lake import dataset_path
from plait.core.settings import Settings
from plait.core.sources import Source, source_for_write_key

SYNC_ENV = {"PLAIT_SERVER__LAKE_SYNC_INTERVAL_SECONDS": "0.2"}
BATCH_EVENTS = 50
WORKERS = 4
MIN_ACKNOWLEDGED_EVENTS = 500


# --- helpers ---------------------------------------------------------------------------------


def _messages(run: str, number: int, count: int, *, days_back: int | None = None) -> list[dict]:
    """``count`` track messages with unique ids; their timestamps spread over three days."""
    day = (number % 3) if days_back is None else days_back
    moment = datetime.now(UTC) - timedelta(days=day, minutes=number % 50)
    return [
        {
            "type": "track",
            "event": "Load Tested",
            "messageId": f"{run}-{number:05d}-{i:03d}",
            "anonymousId": f"anon-{number % 17}",
            "properties": {"batch": number, "item": i},
            "timestamp": moment.isoformat(),
        }
        for i in range(count)
    ]


def _db_message_counts(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.message_id, sa.func.count()).group_by(events.c.message_id)
        ).all()
    return Counter(dict(rows))


def _read_lake(settings: Settings) -> pa.Table:
    path = dataset_path(settings.lake, "events")
    if not Path(path).exists():
        return pa.table({"id": [], "message_id": [], "timestamp": [], "date": []})
    dataset = pads.dataset(path, format="parquet", partitioning="hive")
    return dataset.to_table(columns=["id", "message_id", "timestamp", "date"])


def _assert_lake_matches_database(settings: Settings, engine: sa.Engine) -> pa.Table:
    """Every event of the database is in the lake exactly once, in its day's partition, and
    the completed lake batches account for every event."""
    lake = _read_lake(settings)
    lake_ids = lake["id"].to_pylist()
    lake_message_ids = lake["message_id"].to_pylist()
    duplicate_ids = [i for i, n in Counter(lake_ids).items() if n > 1]
    duplicate_messages = [m for m, n in Counter(lake_message_ids).items() if n > 1]
    assert duplicate_ids == []
    assert duplicate_messages == []
    for moment, day in zip(lake["timestamp"].to_pylist(), lake["date"].to_pylist(), strict=True):
        assert moment.strftime("%Y-%m-%d") == str(day)

    with engine.connect() as conn:
        db_rows = conn.execute(sa.select(events.c.id, events.c.message_id)).all()
        batches = conn.execute(
            sa.select(
                lake_batches.c.id,
                lake_batches.c.completed_at,
                lake_batches.c.row_count,
                lake_batches.c.seq_from,
                lake_batches.c.seq_to,
            )
        ).all()
        seqs = conn.execute(sa.select(events.c.seq)).scalars().all()
        assert pending_count(conn) == 0
    covering = Counter(
        batch.id for seq in seqs for batch in batches if batch.seq_from < seq <= batch.seq_to
    )
    per_batch = {batch.id: covering.get(batch.id, 0) for batch in batches}
    unsynced = sum(1 for seq in seqs if not any(b.seq_from < seq <= b.seq_to for b in batches))
    assert set(lake_ids) == {str(row.id) for row in db_rows}
    assert set(lake_message_ids) == {row.message_id for row in db_rows}
    assert len(lake_ids) == len(db_rows)

    assert unsynced == 0
    assert all(batch.completed_at is not None for batch in batches)
    assert {batch.id: batch.row_count for batch in batches} == per_batch
    assert sum(batch.row_count for batch in batches) == len(db_rows)
    return lake


# --- acknowledged means durable, with a real server killed under load -------------------------


class Load:
    """Worker threads POSTing /v1/batch; remembers every batch sent and every one acknowledged."""

    def __init__(self, url: str, write_key: str) -> None:
        self.url = url
        self.write_key = write_key
        self.run = uuid.uuid4().hex[:8]
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.next_number = 0
        self.sent: dict[int, list[dict]] = {}
        self.acknowledged: dict[int, dict[str, Any]] = {}
        self.refused: list[tuple[int, int, str]] = []
        self.transport_errors: Counter[str] = Counter()
        self.in_flight = 0
        self.crashes: list[BaseException] = []

    def acknowledged_events(self) -> int:
        with self.lock:
            return BATCH_EVENTS * len(self.acknowledged)

    def worker(self) -> None:
        try:
            with httpx.Client(base_url=self.url, auth=(self.write_key, ""), timeout=60) as http:
                while not self.stop.is_set():
                    with self.lock:
                        number = self.next_number
                        self.next_number += 1
                        batch = _messages(self.run, number, BATCH_EVENTS)
                        self.sent[number] = batch
                        self.in_flight += 1
                    try:
                        response = http.post("/v1/batch", json={"batch": batch})
                    except httpx.TransportError as exc:
                        # Not acknowledged: the client would retry it.
                        with self.lock:
                            self.transport_errors[type(exc).__name__] += 1
                        continue
                    finally:
                        with self.lock:
                            self.in_flight -= 1
                    with self.lock:
                        if response.status_code == 200:
                            self.acknowledged[number] = response.json()
                        else:
                            self.refused.append((number, response.status_code, response.text))
        except BaseException as exc:
            self.crashes.append(exc)
            raise


def _post_batch(http: httpx.Client, batch: list[dict]) -> dict[str, Any]:
    response = http.post("/v1/batch", json={"batch": batch})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_acknowledged_events_survive_sigkill_and_reach_the_lake_once(
    settings: Settings, engine: sa.Engine, source: dict[str, Any]
) -> None:
    server = LiveServer(settings, extra_env=SYNC_ENV).start()
    restarted: LiveServer | None = None
    load = Load(server.url, source["write_key"])
    threads = [
        threading.Thread(target=load.worker, name=f"load-{i}", daemon=True) for i in range(WORKERS)
    ]
    try:
        started = time.monotonic()
        for thread in threads:
            thread.start()
        # Load for at least 1.5 s and until enough is acknowledged (bounded), then kill the
        # server while requests are in flight.
        deadline = started + 60
        while time.monotonic() < deadline and not load.crashes:
            enough = load.acknowledged_events() >= MIN_ACKNOWLEDGED_EVENTS
            if enough and time.monotonic() - started >= 1.5 and load.in_flight > 0:
                break
            time.sleep(0.01)
        server.kill()
        load.stop.set()
        for thread in threads:
            thread.join(timeout=90)
        assert not any(thread.is_alive() for thread in threads)
        assert load.crashes == []
        assert load.refused == []
        acknowledged_events = load.acknowledged_events()
        assert acknowledged_events >= MIN_ACKNOWLEDGED_EVENTS, (
            f"only {acknowledged_events} events acknowledged before the kill"
        )
        # A fresh batch is stored whole the first time it is acknowledged.
        for answer in load.acknowledged.values():
            assert answer == {
                "success": True,
                "accepted": BATCH_EVENTS,
                "duplicates": 0,
                "rejected": [],
            }

        # Restart and retry like a client would: every unacknowledged batch, and some
        # acknowledged ones whose response we pretend was lost.
        restarted = LiveServer(settings, extra_env=SYNC_ENV).start()
        unacknowledged = sorted(set(load.sent) - set(load.acknowledged))
        assert unacknowledged, "the kill should have cut off at least one request"
        acknowledged = sorted(load.acknowledged)
        with httpx.Client(
            base_url=restarted.url, auth=(source["write_key"], ""), timeout=60
        ) as http:
            for number in unacknowledged:
                answer = _post_batch(http, load.sent[number])
                assert answer["rejected"] == []
                # A batch is one transaction: it was stored entirely or not at all.
                assert (answer["accepted"], answer["duplicates"]) in (
                    (BATCH_EVENTS, 0),
                    (0, BATCH_EVENTS),
                )
            for number in {*acknowledged[:3], *acknowledged[-3:]}:
                answer = _post_batch(http, load.sent[number])
                assert answer == {
                    "success": True,
                    "accepted": 0,
                    "duplicates": BATCH_EVENTS,
                    "rejected": [],
                }

        # The database: every message sent is there exactly once, acknowledged ones included.
        counts = _db_message_counts(engine)
        sent_ids = {m["messageId"] for batch in load.sent.values() for m in batch}
        acknowledged_ids = {m["messageId"] for n in acknowledged for m in load.sent[n]}
        assert len(sent_ids) == BATCH_EVENTS * len(load.sent)
        assert acknowledged_ids <= set(counts)
        assert {m: n for m, n in counts.items() if n != 1} == {}
        assert set(counts) == sent_ids
        assert sum(counts.values()) == len(sent_ids)

        # The lake: let the restarted server's background sync catch up, stop it, and finish
        # anything it left behind ourselves.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with read(engine) as conn:
                if pending_count(conn) == 0:
                    break
            time.sleep(0.1)
        restarted.stop()
        sync_lake(engine, settings)
        lake = _assert_lake_matches_database(settings, engine)
        assert set(lake["message_id"].to_pylist()) == sent_ids
    finally:
        load.stop.set()
        server.kill()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=90)
        if restarted is not None:
            restarted.stop()


# --- lake replication resumes a batch a crash left unfinished ---------------------------------


def _website(engine: sa.Engine, source: dict[str, Any]) -> Source:
    with read(engine) as conn:
        found = source_for_write_key(conn, source["write_key"])
    assert found is not None
    return found


def _ingest(engine: sa.Engine, settings: Settings, website: Source, messages: list[dict]) -> None:
    result = ingest(
        engine,
        messages,
        Envelope(source=website, received_at=utcnow()),
        rules_from_settings(settings),
    )
    assert (result.accepted, result.duplicates, result.rejected) == (len(messages), 0, [])


def _lake_files(settings: Settings) -> list[str]:
    root = Path(dataset_path(settings.lake, "events"))
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


@pytest.mark.parametrize("crash_after", ["claim", "some_days_written", "all_days_written"])
def test_sync_lake_finishes_a_batch_left_unfinished_by_a_crash(
    settings: Settings, engine: sa.Engine, source: dict[str, Any], crash_after: str
) -> None:
    website = _website(engine, source)
    run = uuid.uuid4().hex[:8]
    first = [m for day in range(3) for m in _messages(run, day, 10, days_back=day)]
    _ingest(engine, settings, website, first)

    # A sync that dies after recording batch 1 (committed), and possibly after writing some
    # or all of its day files, but before marking it complete.
    claimed = _next_batch(engine, 100_000, committed_seq(engine))
    assert claimed is not None
    crashed_batch, seq_from, seq_to = claimed
    with read(engine) as conn, duckdb.connect() as duck:
        table = _range_table(conn, duck, seq_from, seq_to)
    assert table.num_rows == len(first)
    if crash_after == "some_days_written":
        first_day = table["timestamp"][0].as_py().strftime("%Y-%m-%d")
        days = [t.strftime("%Y-%m-%d") for t in table["timestamp"].to_pylist()]
        partial = table.filter(pa.array([d == first_day for d in days]))
        assert 0 < partial.num_rows < table.num_rows
        assert len(_write_days(partial, settings.lake, crashed_batch)) == 1
    elif crash_after == "all_days_written":
        assert len(_write_days(table, settings.lake, crashed_batch)) == 3
    files_before = _lake_files(settings)

    # More events arrive (one of them on a day the crashed batch has no file for yet).
    second = _messages(run, 100, 15, days_back=0) + _messages(run, 101, 5, days_back=5)
    _ingest(engine, settings, website, second)
    with read(engine) as conn:
        assert pending_count(conn) == len(first) + len(second)

    report = sync_lake(engine, settings)
    assert report.batches == 2
    assert report.rows == len(first) + len(second)
    lake = _assert_lake_matches_database(settings, engine)
    assert sorted(lake["message_id"].to_pylist()) == sorted(m["messageId"] for m in first + second)

    # The unfinished batch was completed under its own number, holding exactly the events it
    # had claimed; the files written before the crash were rewritten under the same names.
    with engine.connect() as conn:
        batches = conn.execute(
            sa.select(lake_batches.c.id, lake_batches.c.row_count).order_by(lake_batches.c.id)
        ).all()
        first_batch_ids = set(
            conn.execute(
                sa.select(events.c.message_id).where(
                    events.c.seq > seq_from, events.c.seq <= seq_to
                )
            ).scalars()
        )
    assert [(b.id, b.row_count) for b in batches] == [
        (crashed_batch, len(first)),
        (batches[1].id, len(second)),
    ]
    assert first_batch_ids == {m["messageId"] for m in first}
    files_after = _lake_files(settings)
    assert set(files_before) <= set(files_after)
    assert len([f for f in files_after if f.endswith(f"batch-{crashed_batch:010d}.parquet")]) == 3
    assert len(files_after) == 3 + 2

    # Running again writes nothing and changes nothing.
    again = sync_lake(engine, settings)
    assert (again.batches, again.rows, again.files) == (0, 0, [])
    assert _lake_files(settings) == files_after
    _assert_lake_matches_database(settings, engine)


def test_sync_lake_leaves_events_that_arrive_during_it_to_the_next_run(
    settings: Settings, engine: sa.Engine, source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    website = _website(engine, source)
    run = uuid.uuid4().hex[:8]
    first = _messages(run, 0, 10, days_back=0)
    _ingest(engine, settings, website, first)
    late = _messages(run, 1, 4, days_back=0)
    write_days = replication._write_days

    def write_days_while_events_arrive(table: pa.Table, location: str, batch_id: int) -> list:
        written = write_days(table, location, batch_id)
        if late:
            _ingest(engine, settings, website, [late.pop() for _ in range(len(late))])
        return written

    monkeypatch.setattr(replication, "_write_days", write_days_while_events_arrive)
    report = sync_lake(engine, settings, batch_rows=4)
    assert (report.batches, report.rows) == (3, len(first))
    with read(engine) as conn:
        assert pending_count(conn) == 4

    report = sync_lake(engine, settings)
    assert (report.batches, report.rows) == (1, 4)
    _assert_lake_matches_database(settings, engine)


def test_sync_lake_finishes_a_claimed_batch_whose_events_were_all_erased(
    settings: Settings, engine: sa.Engine, source: dict[str, Any]
) -> None:
    """A batch claimed, then emptied (a person's erasure deletes their events) before it was
    written: the next sync completes it with no rows, and goes on to newer events."""
    website = _website(engine, source)
    run = uuid.uuid4().hex[:8]
    _ingest(engine, settings, website, _messages(run, 0, 4))
    claimed = _next_batch(engine, 100_000, committed_seq(engine))
    assert claimed is not None
    _batch, seq_from, seq_to = claimed
    with engine.begin() as conn:
        conn.execute(events.delete().where(events.c.seq > seq_from, events.c.seq <= seq_to))
    later = _messages(run, 1, 3)
    _ingest(engine, settings, website, later)

    report = sync_lake(engine, settings)
    assert (report.batches, report.rows) == (2, len(later))
    with engine.connect() as conn:
        counts = conn.execute(sa.select(lake_batches.c.row_count).order_by(lake_batches.c.id))
        assert list(counts.scalars()) == [0, len(later)]
