"""Group commit: concurrent requests share transactions, and each learns its own outcome."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from plait.collect.event_store import events
from plait.collect.group_commit import GroupCommitter
from plait.collect.ingest import ingest, rules_from_settings
from plait.collect.messages import Envelope, normalize
from plait.core.clock import utcnow
from plait.core.db import read
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
