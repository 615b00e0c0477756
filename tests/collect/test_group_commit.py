"""Group commit: concurrent requests share transactions, and each learns its own outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from plait.collect.event_store import events
from plait.collect.group_commit import SQLITE_WRITER_CACHE_MIB, GroupCommitter
from plait.collect.ingest import IngestResult, ingest, rules_from_settings
from plait.collect.messages import Envelope, normalize
from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.sources import find_source


def test_concurrent_requests_with_overlapping_ids(engine, settings, source) -> None:
    with read(engine) as conn:
        website = find_source(conn, "Website")
    rules = rules_from_settings(settings)
    committer = GroupCommitter(engine)

    def request(n: int):
        # Each request carries 20 ids of its own and 5 shared by every request.
        own = [
            {"type": "track", "userId": "u", "event": "E", "messageId": f"r{n}-{i}"}
            for i in range(20)
        ]
        shared = [
            {"type": "track", "userId": "u", "event": "E", "messageId": f"shared-{i}"}
            for i in range(5)
        ]
        return ingest(engine, own + shared, Envelope(website, utcnow()), rules, committer=committer)

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(request, range(40)))
    finally:
        committer.close()
    assert sum(r.accepted for r in results) == 40 * 20 + 5
    assert sum(r.duplicates for r in results) == 40 * 5 - 5
    assert all(r.accepted >= 20 for r in results)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(events.c.message_id)).scalars().all()
    assert len(stored) == len(set(stored)) == 805


def test_a_failed_commit_is_reported_to_every_waiter(engine, settings, source) -> None:
    with read(engine) as conn:
        website = find_source(conn, "Website")
    committer = GroupCommitter(engine)
    row = normalize(
        {"type": "track", "userId": "u", "event": "E"},
        Envelope(website, utcnow()),
        rules_from_settings(settings),
    )
    broken = [{**row, "type": None}]
    try:
        with pytest.raises(sa.exc.SQLAlchemyError):
            committer.store(broken, [])
        # The writer survives a failed group and keeps committing.
        outcome = ingest(
            engine,
            [{"type": "track", "userId": "u", "event": "E"}],
            Envelope(website, utcnow()),
            rules_from_settings(settings),
            committer=committer,
        )
        assert outcome.accepted == 1
    finally:
        committer.close()


def test_one_bad_request_does_not_fail_its_group(engine, settings, source) -> None:
    with read(engine) as conn:
        website = find_source(conn, "Website")
    rules = rules_from_settings(settings)
    committer = GroupCommitter(engine)
    good = [
        normalize(
            {"type": "track", "userId": "u", "event": f"E{i}"}, Envelope(website, utcnow()), rules
        )
        for i in range(20)
    ]
    bad = {**good[0], "message_id": "bad", "type": None}

    def submit(index: int):
        rows = [bad] if index == 7 else [good[index]]
        try:
            return committer.store(rows, [])
        except sa.exc.SQLAlchemyError as exc:
            return exc

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            outcomes = list(pool.map(submit, range(20)))
    finally:
        committer.close()
    assert isinstance(outcomes[7], sa.exc.SQLAlchemyError)
    assert all(o.accepted == 1 for i, o in enumerate(outcomes) if i != 7)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 19


@pytest.fixture
def sender(engine, settings, source) -> Iterator[tuple[GroupCommitter, Callable, list]]:
    """A committer; a function that sends it one track message with a given message id; and
    the driver connections its events were inserted on, in order."""
    with read(engine) as conn:
        website = find_source(conn, "Website")
    rules = rules_from_settings(settings)
    committer = GroupCommitter(engine)
    writers: list[Any] = []

    def note_writer(conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO events"):
            writers.append(conn.connection.driver_connection)

    def send(message_id: str) -> IngestResult:
        message = {"type": "track", "userId": "u", "event": "E", "messageId": message_id}
        return ingest(engine, [message], Envelope(website, utcnow()), rules, committer=committer)

    sa.event.listen(engine, "before_cursor_execute", note_writer)
    try:
        yield committer, send, writers
    finally:
        committer.close()
        sa.event.remove(engine, "before_cursor_execute", note_writer)


def test_sqlite_writer_keeps_one_warm_connection(engine, sender) -> None:
    """On SQLite the writer keeps its connection (and page cache) between groups, through
    other connections' commits; on PostgreSQL it takes one from the pool for each group."""
    committer, send, writers = sender
    for n in range(4):
        assert send(f"m{n}").accepted == 1
        with write(engine) as conn:  # another connection commits between the groups
            conn.execute(sa.text("UPDATE sources SET name = name"))
    kept = engine.pool.checkedout()
    assert len(writers) == 4
    if engine.dialect.name == "sqlite":
        assert len(set(map(id, writers))) == 1
        assert kept == 1
        assert writers[0].execute("PRAGMA cache_size").fetchone()[0] == (
            -SQLITE_WRITER_CACHE_MIB * 1024
        )
        assert writers[0].execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
    else:
        assert kept == 0
    committer.close()
    assert engine.pool.checkedout() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # kept on SQLite only
def test_sqlite_writer_recovers_from_a_broken_connection(engine, sender) -> None:
    """A kept connection that breaks fails one group; the next gets a fresh, tuned one."""
    _committer, send, writers = sender
    assert send("before").accepted == 1
    writers[0].close()  # as if the driver's connection had died
    with pytest.raises(sa.exc.DBAPIError):
        send("lost")
    assert send("after").accepted == 1
    with read(engine) as conn:
        assert set(conn.execute(sa.select(events.c.message_id)).scalars()) == {"before", "after"}
    assert writers[-1] is not writers[0]
    assert writers[-1].execute("PRAGMA cache_size").fetchone()[0] == -SQLITE_WRITER_CACHE_MIB * 1024
