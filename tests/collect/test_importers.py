"""File imports go through the same validation and de-duplication as the API."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from plait.collect.event_store import events, list_rejected, rejected_events
from plait.collect.importers import import_file, parse_mapping, to_message
from plait.core.errors import InvalidInput, NotFound


def rows(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(events).order_by(events.c.event))]


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_jsonl_with_bad_lines_reported_by_line_number(tmp_path, engine, settings, source) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        orjson.dumps(
            {"type": "track", "userId": "u1", "event": "A", "timestamp": "2026-01-01T00:00:00Z"}
        ),
        b"{broken",
        b"",
        orjson.dumps({"type": "track", "userId": "u1"}),
        orjson.dumps({"type": "identify", "userId": "u1", "traits": {"email": "u@x.io"}}),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = import_file(engine, settings, path, source_name="Website")
    assert result.accepted == 2
    assert [(r["index"], r["code"]) for r in result.rejected] == [
        (2, "invalid_json"),
        (4, "missing_field"),
    ]
    with engine.connect() as conn:
        kept, _ = list_rejected(conn)
    assert sorted((r["position"], r["origin"]) for r in kept) == [
        (2, "import:events.jsonl"),
        (4, "import:events.jsonl"),
    ]
    assert {r["type"] for r in rows(engine)} == {"track", "identify"}


def test_reimporting_the_same_file_stores_nothing_new(tmp_path, engine, settings, source) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(
            orjson.dumps({"type": "track", "userId": f"u{i}", "event": "E"}).decode()
            for i in range(50)
        )
        + "\n{bad\n"
    )
    first = import_file(engine, settings, path, source_name="Website")
    second = import_file(engine, settings, path, source_name="Website")
    assert (first.accepted, first.duplicates) == (50, 0)
    assert (second.accepted, second.duplicates) == (0, 50)
    assert count(engine, events) == 50
    assert count(engine, rejected_events) == 1


def test_csv_with_mapping_types_and_leftovers(tmp_path, engine, settings, source) -> None:
    path = tmp_path / "store.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "action", "when", "amount", "store", "zip", "items"])
        writer.writerow(
            [
                "c1",
                "Order Completed",
                "2026-02-01T10:00:00Z",
                "19.90",
                "S1",
                "01234",
                '[{"sku": "A"}]',
            ]
        )
        writer.writerow(["", "Order Completed", "2026-02-01T11:00:00Z", "5", "S1", "", ""])
        writer.writerow(["c2", "Store Visited", "not a time", "", "S2", "", ""])
        writer.writerow(["c3", "Store Visited", "2026-02-02T09:00:00Z", "", "S2", "", ""])
    mapping = ["userId=customer", "event=action", "timestamp=when", "properties.revenue=amount"]
    result = import_file(engine, settings, path, source_name="Website", mapping=mapping)
    assert result.accepted == 2
    assert [(r["index"], r["code"], r["field"]) for r in result.rejected] == [
        (3, "missing_id", "userId"),
        (4, "invalid_timestamp", "timestamp"),
    ]
    order = rows(engine)[0]
    assert order["event"] == "Order Completed"
    assert order["properties"] == {
        "revenue": 19.9,
        "store": "S1",
        "zip": "01234",
        "items": [{"sku": "A"}],
    }
    assert order["timestamp"].isoformat() == "2026-02-01T10:00:00+00:00"


def test_csv_identify_rows_put_leftovers_in_traits(tmp_path, engine, settings, source) -> None:
    path = tmp_path / "crm.csv"
    path.write_text("type,user_id,email,lifecycle_stage\nidentify,u9,u9@x.io,mql\n")
    result = import_file(engine, settings, path, source_name="Website")
    assert result.accepted == 1
    (row,) = rows(engine)
    assert row["user_id"] == "u9"
    assert row["traits"] == {"email": "u9@x.io", "lifecycle_stage": "mql"}


def test_parquet_import(tmp_path, engine, settings, source) -> None:
    path = tmp_path / "app.parquet"
    table = pa.table(
        {
            "anonymous_id": ["a1", "a2", None],
            "event": ["Application Opened", "Product Viewed", "Product Viewed"],
            "properties.product_id": ["p1", "p2", "p3"],
        }
    )
    pq.write_table(table, path)
    result = import_file(engine, settings, path, source_name="Website")
    assert result.accepted == 2
    assert [(r["index"], r["code"]) for r in result.rejected] == [(3, "missing_id")]
    assert {r["properties"]["product_id"] for r in rows(engine)} == {"p1", "p2"}


def test_bad_arguments(tmp_path, engine, settings, source) -> None:
    with pytest.raises(NotFound):
        import_file(engine, settings, tmp_path / "missing.csv", source_name="Website")
    odd = tmp_path / "events.xml"
    odd.write_text("<x/>")
    with pytest.raises(InvalidInput, match="--format"):
        import_file(engine, settings, odd, source_name="Website")
    good = tmp_path / "e.jsonl"
    good.write_text("{}\n")
    with pytest.raises(NotFound, match="no source named"):
        import_file(engine, settings, good, source_name="Nope")
    with pytest.raises(InvalidInput, match="FIELD=COLUMN"):
        parse_mapping(["userId"])
    with pytest.raises(InvalidInput, match="not a message field"):
        parse_mapping(["favourite=colour"])
    assert count(engine, events) == 0


def test_to_message_defaults() -> None:
    message = to_message({"userId": "u", "event": "E", "Plan": "pro", "count": "3"}, {}, None)
    assert message == {
        "userId": "u",
        "event": "E",
        "type": "track",
        "properties": {"Plan": "pro", "count": 3},
    }
    assert to_message({"userId": "u"}, {}, "page")["type"] == "page"


def test_cli_import_reports_lines(tmp_path: Path, cli, source) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"track","userId":"u","event":"E"}\n{oops\n')
    result = cli("import", str(path), "--source", "Website", "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["accepted"] == 1
    assert report["rejected"][0]["index"] == 2
    plain = cli("import", str(path), "--source", "Website")
    assert "0 events" in plain.stdout
    assert "line 2" in plain.stdout
