"""SQLite's ingest writer in a process of its own: it stores what the thread would, and a
writer process that dies loses no acknowledged event and is replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import sqlalchemy as sa
from tests.conftest import is_alive

from plait.collect.event_store import EVENT_COLUMNS, Batch, _events_plan, events, rejected_events
from plait.collect.group_commit import GroupCommitter
from plait.collect.ingest import ingest, rules_from_settings
from plait.collect.messages import Envelope, normalize
from plait.collect.writer_process import WriterGone, WriterProcess, event_writer
from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.settings import Settings
from plait.core.sources import find_source
from plait.identity.suppression import suppress

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def envelope(engine, source) -> Envelope:
    with read(engine) as conn:
        return Envelope(find_source(conn, "Website"), utcnow())


def track(message_id: str, user_id: str = "u", **fields) -> dict:
    return {"type": "track", "userId": user_id, "event": "E", "messageId": message_id, **fields}


@pytest.fixture
def writer(engine, settings) -> WriterProcess:
    writer = event_writer(engine, settings, own_process=True)
    assert isinstance(writer, WriterProcess)
    yield writer
    writer.close()


def wait_until(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@sqlite_only
def test_concurrent_requests_share_the_writer_process(engine, settings, envelope, writer) -> None:
    rules = rules_from_settings(settings)

    def request(n: int):
        messages = [track(f"r{n}-{i}") for i in range(20)] + [
            track(f"shared-{i}") for i in range(5)
        ]
        return ingest(engine, messages, envelope, rules, committer=writer)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(request, range(40)))
    assert writer.pid != os.getpid()
    assert sum(r.accepted for r in results) == 40 * 20 + 5
    assert sum(r.duplicates for r in results) == 40 * 5 - 5
    with read(engine) as conn:
        stored = conn.execute(sa.select(events.c.message_id)).scalars().all()
    assert len(stored) == len(set(stored)) == 805


@sqlite_only
def test_the_writer_process_stores_what_the_thread_would(engine, settings, envelope, writer):
    rules = rules_from_settings(settings)
    message = {
        **track("x", traits={"email": "a@example.com"}),
        "anonymousId": "anon-1",
        "properties": {"price": 9.5, "tags": ["a", "b"], "nested": {"ok": True}},
        "context": {"campaign": {"source": "google", "medium": "cpc"}, "locale": "fr-FR"},
        "timestamp": "2026-11-20T10:00:00.123456Z",
    }
    thread = GroupCommitter(engine)
    try:
        ingest(engine, [message], envelope, rules, committer=thread)
    finally:
        thread.close()
    ingest(engine, [{**message, "messageId": "y"}], envelope, rules, committer=writer)
    with read(engine) as conn:
        rows = {
            row["message_id"]: row
            for row in conn.execute(sa.select(events).order_by(events.c.seq)).mappings()
        }
    different = {"id", "seq", "message_id"}
    assert {k: v for k, v in rows["x"].items() if k not in different} == {
        k: v for k, v in rows["y"].items() if k not in different
    }


@sqlite_only
def test_events_of_an_erased_person_are_kept_as_rejected(engine, settings, envelope, writer):
    """The writer process reads a suppressed event back from its bound values alone."""
    with write(engine) as conn:
        suppress(conn, [("user_id", "erased")], uuid.uuid4())
    messages = [track("kept"), track("refused", user_id="erased", timestamp="2026-11-20T10:00:00Z")]
    result = ingest(engine, messages, envelope, rules_from_settings(settings), committer=writer)
    assert (result.accepted, result.duplicates) == (1, 0)
    assert [(r["index"], r["code"]) for r in result.rejected] == [(1, "suppressed")]
    with read(engine) as conn:
        assert conn.execute(sa.select(events.c.message_id)).scalars().all() == ["kept"]
        kept = conn.execute(sa.select(rejected_events)).mappings().one()
    assert kept["code"] == "suppressed"
    assert kept["source_id"] == envelope.source.id
    assert orjson.loads(kept["payload"]) == {
        "type": "track",
        "event": "E",
        "messageId": "refused",
        "timestamp": "2026-11-20T10:00:00.000Z",
    }


@sqlite_only
def test_a_failed_group_is_reported_and_the_writer_process_goes_on(
    engine, settings, envelope, writer
) -> None:
    rules = rules_from_settings(settings)
    row = normalize(track("bad"), envelope, rules)
    with pytest.raises(sa.exc.IntegrityError):
        writer.store([{**row, "type": None}], [])
    assert ingest(engine, [track("good")], envelope, rules, committer=writer).accepted == 1


@sqlite_only
def test_a_killed_writer_process_fails_its_waiters_and_is_replaced(
    engine, settings, envelope, writer
) -> None:
    rules = rules_from_settings(settings)
    assert ingest(engine, [track("before")], envelope, rules, committer=writer).accepted == 1
    first = writer.pid
    os.kill(first, signal.SIGSTOP)
    waiting = writer.submit(
        Batch.bound(engine.dialect, [normalize(track("lost"), envelope, rules)], []).lean()
    )
    time.sleep(0.2)
    assert not waiting.done()
    os.kill(first, signal.SIGKILL)
    with pytest.raises(WriterGone) as gone:
        waiting.result(timeout=20)
    assert gone.value.status == 503
    outcome = ingest(engine, [track("after"), track("before")], envelope, rules, committer=writer)
    assert (outcome.accepted, outcome.duplicates) == (1, 1)
    assert writer.pid not in (None, first)
    with read(engine) as conn:
        stored = set(conn.execute(sa.select(events.c.message_id)).scalars())
    assert stored == {"before", "after"}


@sqlite_only
def test_close_commits_what_was_sent_then_refuses_more(engine, settings, envelope, writer):
    rules = rules_from_settings(settings)
    sent = [
        writer.submit(
            Batch.bound(
                engine.dialect,
                [normalize(track(f"m{n}-{i}"), envelope, rules) for i in range(50)],
                [],
            ).lean()
        )
        for n in range(10)
    ]
    writer.close()
    assert [future.result(timeout=0).accepted for future in sent] == [50] * 10
    with read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 500
    with pytest.raises(WriterGone):
        ingest(engine, [track("late")], envelope, rules, committer=writer)


@sqlite_only
def test_the_writer_process_stops_when_its_server_is_killed(settings, engine) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from plait.collect.writer_process import WriterProcess
        from plait.core.settings import Settings
        settings = Settings(home={str(settings.home)!r}, database_url={settings.database_url!r})
        writer = WriterProcess(settings)
        print(writer.pid, flush=True)
        time.sleep(600)
        """
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        writer_pid = int(server.stdout.readline())
        assert is_alive(writer_pid)
    finally:
        server.kill()
        server.wait(timeout=10)
    wait_until(lambda: not is_alive(writer_pid))


def test_the_writer_process_is_only_for_a_sqlite_file(engine, settings, tmp_path) -> None:
    chosen = event_writer(engine, settings, own_process=True)
    try:
        expected = WriterProcess if engine.dialect.name == "sqlite" else GroupCommitter
        assert type(chosen) is expected
    finally:
        chosen.close()
    threaded = event_writer(engine, settings, own_process=False)
    threaded.close()
    assert type(threaded) is GroupCommitter
    memory = Settings(home=tmp_path / "m", database_url="sqlite://")
    in_memory = event_writer(sa.create_engine("sqlite://"), memory, own_process=True)
    in_memory.close()
    assert type(in_memory) is GroupCommitter


def test_only_a_sqlite_bound_batch_travels_lean(engine, settings, envelope) -> None:
    """A lean batch reads each event back from its bound values exactly (SQLite); PostgreSQL's
    encoded rows cannot do without the rows."""
    rules = rules_from_settings(settings)
    message = {
        **track("m", traits={"email": "a@example.com"}),
        "properties": {"price": 9.5, "tags": ["a"]},
        "timestamp": "2026-11-20T10:00:00.5Z",
    }
    row = normalize(message, envelope, rules)
    batch = Batch.bound(engine.dialect, [row], [])
    if engine.dialect.name != "sqlite":
        with pytest.raises(ValueError, match="only a batch bound for SQLite"):
            batch.lean()
        return
    lean = batch.lean()
    assert lean.rows == ()
    assert len(lean) == 1
    assert lean.keys() == batch.keys()
    assert lean.keys()[0][1] == "m"
    assert lean.identifiers_at(0) == row["identifiers"]
    assert lean.row_at(engine.dialect, 0) == {name: row[name] for name in EVENT_COLUMNS}
    assert _events_plan(engine.dialect).unbind(batch.params[0]) == lean.row_at(engine.dialect, 0)
