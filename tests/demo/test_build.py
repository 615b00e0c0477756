"""The demo world goes through the real pipeline, validly, reproducibly and idempotently."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import sqlalchemy as sa

from plait.collect.event_store import events
from plait.core.db import read
from plait.core.sources import list_sources
from plait.demo.build import build_demo
from plait.demo.world import DEMO_SOURCES

END = datetime(2026, 6, 1, tzinfo=UTC)


def test_build_demo_stores_every_message_once(engine, settings) -> None:
    first = build_demo(engine, settings, customers=40, days=30, seed=3, end=END)
    assert first.result.rejected == []
    assert first.result.accepted > 40 * 10
    assert set(first.write_keys) == {s.name for s in DEMO_SOURCES}
    with read(engine) as conn:
        by_name = {s["name"]: s["channel"] for s in list_sources(conn)}
        stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
        channels = set(conn.execute(sa.select(events.c.channel).distinct()).scalars())
    assert by_name["Store POS"] == "Store"
    assert by_name["Website"] is None
    assert stored == first.result.accepted
    assert {"Store", "Phone", "Email"} <= channels
    assert channels & {"Organic Search", "Paid Search", "Paid Social", "Direct"}
    again = build_demo(engine, settings, customers=40, days=30, seed=3, end=END)
    assert (again.result.accepted, again.result.duplicates) == (0, first.result.accepted)
    assert again.write_keys == {}


def test_plait_demo_command_without_serving(cli) -> None:
    result = cli("demo", "--no-serve", "--customers", "20", "--days", "10", "--json")
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert summary["accepted"] > 0
    assert summary["rejected"] == 0
    assert summary["lake_rows"] == summary["accepted"]
    assert summary["admin_token"].startswith("plt_")
    assert summary["url"].startswith("http://127.0.0.1:")
    # The demo ends with a channel report of its days.
    rows = summary["channels"]
    assert set(rows[0]) == {"channel", "sessions", "contacts", "qualified", "sales", "revenue"}
    assert sum(row["sessions"] for row in rows) > 0
