"""Export and erasure of a person: nothing of them remains in the database or the lake, and
later events carrying their identifiers are rejected as suppressed."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.parquet as pq
import sqlalchemy as sa

from plait.collect.replication import sync_lake
from plait.core.settings import Settings
from plait.identity.identity_map import IDENTITY_MAP_PATH, export_identity_map
from plait.migrations.schema import metadata
from plait.profiles.pipeline import resolve

ANA = ("ana@example.com", "+33612345678", "cus_ana", "ana-phone", "ana-laptop")


def ana_and_bob(send_events) -> None:
    send_events(
        {"type": "page", "anonymousId": "ana-phone", "timestamp": "2026-03-01T10:00:00Z"},
        {
            "type": "identify",
            "anonymousId": "ana-laptop",
            "userId": "cus_ana",
            "timestamp": "2026-03-02T10:00:00Z",
            "traits": {"email": "ana@example.com", "phone": "+33 6 12 34 56 78", "name": "Ana"},
        },
        {
            "type": "track",
            "event": "Order Completed",
            "anonymousId": "ana-phone",
            "timestamp": "2026-03-04T10:00:00Z",
            "properties": {"revenue": 120.5},
            "context": {"traits": {"email": "ana@example.com"}},
        },
        {
            "type": "identify",
            "anonymousId": "bob-phone",
            "userId": "cus_bob",
            "timestamp": "2026-03-02T10:00:00Z",
            "traits": {"email": "bob@example.com"},
        },
    )
    # A rejected event that names Ana (no userId/anonymousId) is kept with its payload.
    send_events({"type": "identify", "traits": {"email": "ana@example.com"}}, expect_rejected=True)


def everything_stored(engine: sa.Engine) -> str:
    """Every row of every table, as text: what a search for personal data would scan."""
    dump = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            dump.extend(str(tuple(row)) for row in conn.execute(sa.select(table)))
    return "\n".join(dump)


def everything_in_lake(lake: str) -> str:
    return "\n".join(
        str(pq.read_table(path).to_pylist()) for path in sorted(Path(lake).rglob("*.parquet"))
    )


def test_export_holds_everything_about_the_person(
    send_events, admin_api, engine: sa.Engine, settings: Settings
) -> None:
    ana_and_bob(send_events)
    resolve(engine, settings)
    customer = admin_api.get("/api/profiles/lookup?kind=email&value=ANA@example.com")["id"]
    exported = admin_api.get(f"/api/profiles/{customer}/export")
    assert exported["profile"]["id"] == customer
    assert exported["profile"]["orders"] == 1
    assert exported["profile"]["lifetime_revenue"] == 120.5
    assert exported["profile"]["lifecycle_stage"] == "customer"
    assert {(i["kind"], i["value"]) for i in exported["identities"]} == {
        ("email", "ana@example.com"),
        ("phone", "+33612345678"),
        ("user_id", "cus_ana"),
        ("anonymous_id", "ana-phone"),
        ("anonymous_id", "ana-laptop"),
    }
    assert len(exported["events"]) == 3
    assert len(exported["merges"]) == 1
    assert "bob" not in orjson.dumps(exported).decode()


def test_erase_leaves_nothing_and_suppresses_later_events(
    send_events, admin_api, engine: sa.Engine, settings: Settings
) -> None:
    ana_and_bob(send_events)
    resolve(engine, settings)
    assert sync_lake(engine, settings).rows == 4
    export_identity_map(engine, settings)
    stored, lake = everything_stored(engine), everything_in_lake(settings.lake)
    assert all(value in stored for value in ANA)
    assert all(value in lake for value in ANA)

    customer = admin_api.get("/api/profiles/lookup?kind=user_id&value=cus_ana")["id"]
    erased = admin_api.delete(f"/api/profiles/{customer}")
    assert erased["events"] == 3
    assert erased["lake_rows"] == 3
    assert erased["identifiers"] == 5
    assert erased["rejected_events"] == 1
    assert erased["suppressed"] == 5

    stored, lake = everything_stored(engine), everything_in_lake(settings.lake)
    for value in ANA:
        assert value not in stored
        assert value not in lake
    assert "cus_bob" in stored
    assert "cus_bob" in lake
    assert "bob@example.com" in everything_in_lake(settings.lake)
    assert Path(settings.lake, IDENTITY_MAP_PATH).exists()
    admin_api.get(f"/api/profiles/{customer}", 404)

    later = send_events(
        {
            "type": "track",
            "event": "Visit",
            "anonymousId": "new-device",
            "context": {"traits": {"phone": "+33 6 12 34 56 78"}},
        },
        {"type": "page", "anonymousId": "bob-phone"},
        expect_rejected=True,
    )
    assert later["accepted"] == 1
    assert later["rejected"] == [
        {
            "index": 0,
            "code": "suppressed",
            "message": "the event carries an identifier of an erased person",
            "field": None,
        }
    ]
    rejected = admin_api.get("/api/events/rejected")["rejected"]
    suppressed = [row for row in rejected if row["code"] == "suppressed"]
    assert len(suppressed) == 1
    assert "+33 6" not in suppressed[0]["payload"]
    assert "new-device" not in suppressed[0]["payload"]
    assert admin_api.get("/api/events?anonymous_id=new-device")["events"] == []
    resolve(engine, settings)
    assert "+33612345678" not in everything_stored(engine)
