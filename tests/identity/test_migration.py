"""Migration 0002 on a database that already holds events: they get anchors, so they show
up on their customer's timeline once resolved."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import sqlalchemy as sa

from plait.core.db import get_engine
from plait.core.settings import Settings
from plait.migrations import upgrade
from plait.profiles.pipeline import resolve


def test_events_stored_before_identity_are_anchored_and_resolved(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    engine = get_engine(settings)
    upgrade(engine, "0001")
    source_id = uuid4().hex
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO sources (id, name, write_key_hash, write_key_hint, created_at) "
            f"VALUES ('{source_id}', 'Web', 'x', 'x', '2026-01-01 00:00:00.000000')"
        )
        for n, (user, anonymous) in enumerate([("cus_1", "a1"), (None, "a1"), (None, "a2")]):
            conn.execute(
                sa.text(
                    "INSERT INTO events (id, message_id, source_id, type, user_id, anonymous_id,"
                    " timestamp, received_at) VALUES (:id, :m, :s, 'page', :u, :a,"
                    " '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
                ),
                {"id": uuid4().hex, "m": f"m{n}", "s": source_id, "u": user, "a": anonymous},
            )
    upgrade(engine)
    with engine.connect() as conn:
        anchors = conn.execute(
            sa.text("SELECT identity_kind, identity_value FROM events ORDER BY seq")
        ).all()
    assert [tuple(anchor) for anchor in anchors] == [
        ("user_id", "cus_1"),
        ("anonymous_id", "a1"),
        ("anonymous_id", "a2"),
    ]
    report = resolve(engine, settings)
    assert (report.events, report.profiles) == (3, 2)
