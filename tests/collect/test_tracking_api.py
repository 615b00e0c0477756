"""The tracking API: every limit and bad input with its exact status and error, partial
batches, duplicates, gzip and text/plain, clock skew — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from plait.collect.event_store import events, rejected_events
from plait.core.clock import parse_timestamp


def auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def count(engine: sa.Engine, table: sa.Table = events) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def stored(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(events))]


def post(client: TestClient, path: str, body: Any, key: str | None, **headers: str):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"content-type": "application/json", **(auth(key) if key else {}), **headers}
    return client.post(path, content=data, headers=all_headers)


@pytest.mark.parametrize(
    ("path", "body", "check"),
    [
        ("/v1/identify", {"userId": "u1", "traits": {"email": "a@example.com"}}, "identify"),
        ("/v1/track", {"anonymousId": "a1", "event": "Product Viewed"}, "track"),
        ("/v1/page", {"anonymousId": "a1", "name": "Home"}, "page"),
        ("/v1/screen", {"userId": "u1", "name": "Cart"}, "screen"),
        ("/v1/group", {"userId": "u1", "groupId": "g1"}, "group"),
        ("/v1/alias", {"userId": "u1", "previousId": "a1"}, "alias"),
        ("/v1/i", {"userId": "u1"}, "identify"),
        ("/v1/t", {"userId": "u1", "event": "X"}, "track"),
        ("/v1/p", {"userId": "u1"}, "page"),
        ("/v1/s", {"userId": "u1"}, "screen"),
        ("/v1/g", {"userId": "u1", "groupId": "g"}, "group"),
        ("/v1/a", {"userId": "u1", "previousId": "p"}, "alias"),
    ],
)
def test_every_endpoint_stores_its_type(client, engine, source, path, body, check) -> None:
    response = post(client, path, body, source["write_key"])
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    (row,) = stored(engine)
    assert row["type"] == check
    assert row["message_id"]
    assert row["received_at"] is not None


def test_write_key_in_body_and_text_plain(client, engine, source) -> None:
    body = {"writeKey": source["write_key"], "userId": "u1", "event": "Signed Up"}
    response = post(client, "/v1/t", body, None, **{"content-type": "text/plain"})
    assert response.status_code == 200
    assert stored(engine)[0]["event"] == "Signed Up"


def test_gzip_body(client, engine, source) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": f"E{i}"} for i in range(30)]}
    response = post(
        client,
        "/v1/batch",
        gzip.compress(orjson.dumps(batch)),
        source["write_key"],
        **{"content-encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.json()["accepted"] == 30


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "invalid_write_key"),
        (auth("not-a-key"), "invalid_write_key"),
        ({"Authorization": "Basic %%%"}, "invalid_write_key"),
    ],
)
def test_missing_or_wrong_write_key_is_401(client, engine, source, headers, code) -> None:
    response = client.post(
        "/v1/track",
        content=orjson.dumps({"userId": "u", "event": "E"}),
        headers={"content-type": "application/json", **headers},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert count(engine) == 0


def test_wrong_write_key_in_body_is_401(client, engine, source) -> None:
    response = post(client, "/v1/track", {"writeKey": "nope", "userId": "u", "event": "E"}, None)
    assert response.status_code == 401
    assert count(engine) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
    ],
)
def test_invalid_json(client, engine, source, body, status, code) -> None:
    response = post(client, "/v1/batch", body, source["write_key"])
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert count(engine) == 0
    assert count(engine, rejected_events) == 0


def test_bad_gzip_and_unknown_encoding(client, engine, source) -> None:
    bad = post(
        client, "/v1/batch", b"not gzip", source["write_key"], **{"content-encoding": "gzip"}
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_gzip")
    brotli = post(client, "/v1/batch", b"{}", source["write_key"], **{"content-encoding": "br"})
    assert (brotli.status_code, brotli.json()["error"]["code"]) == (415, "unsupported_encoding")
    assert count(engine) == 0


def test_unsupported_media_type(client, engine, source) -> None:
    response = post(
        client,
        "/v1/track",
        {"userId": "u", "event": "E"},
        source["write_key"],
        **{"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert count(engine) == 0


def test_request_over_500_kb_is_413_and_stores_nothing(client, engine, source) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 20_000}}
            for _ in range(30)
        ]
    }
    body = orjson.dumps(batch)
    assert len(body) > 500 * 1024
    response = post(client, "/v1/batch", body, source["write_key"])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert count(engine) == 0


def test_gzip_bomb_is_413(client, engine, source) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 30_000}}
            for _ in range(40)
        ]
    }
    compressed = gzip.compress(orjson.dumps(batch))
    assert len(compressed) < 500 * 1024
    response = post(
        client, "/v1/batch", compressed, source["write_key"], **{"content-encoding": "gzip"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert count(engine) == 0


def test_more_than_2500_events_is_413(client, engine, source) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E"} for _ in range(2501)]}
    response = post(client, "/v1/batch", batch, source["write_key"])
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "batch_too_large",
        "message": "a batch may hold at most 2500 events",
        "field": "batch",
    }
    assert count(engine) == 0


def test_exactly_2500_events_is_accepted(client, engine, source) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E"} for _ in range(2500)]}
    response = post(client, "/v1/batch", batch, source["write_key"])
    assert response.status_code == 200
    assert response.json()["accepted"] == 2500
    assert count(engine) == 2500


def test_single_event_over_32_kb_is_413(client, engine, source) -> None:
    body = {"userId": "u", "event": "E", "properties": {"blob": "x" * (33 * 1024)}}
    response = post(client, "/v1/track", body, source["write_key"])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "event_too_large"
    assert count(engine) == 0


@pytest.mark.parametrize(
    ("path", "body", "code", "field"),
    [
        ("/v1/track", {"event": "E"}, "missing_id", "userId"),
        ("/v1/track", {"userId": "", "anonymousId": "  ", "event": "E"}, "missing_id", "userId"),
        ("/v1/track", {"userId": "u"}, "missing_field", "event"),
        ("/v1/track", {"userId": "u", "event": ""}, "missing_field", "event"),
        ("/v1/track", {"userId": "u", "event": 7}, "missing_field", "event"),
        ("/v1/group", {"userId": "u"}, "missing_field", "groupId"),
        ("/v1/alias", {"userId": "u"}, "missing_field", "previousId"),
        ("/v1/page", {"userId": "u", "name": 3}, "invalid_field", "name"),
        ("/v1/track", {"userId": {"a": 1}, "event": "E"}, "invalid_field", "userId"),
        ("/v1/track", {"userId": True, "event": "E"}, "invalid_field", "userId"),
        (
            "/v1/track",
            {"userId": "u", "event": "E", "properties": [1]},
            "invalid_field",
            "properties",
        ),
        ("/v1/identify", {"userId": "u", "traits": "vip"}, "invalid_field", "traits"),
        ("/v1/track", {"userId": "u", "event": "E", "context": 1}, "invalid_field", "context"),
        (
            "/v1/track",
            {"userId": "u", "event": "E", "timestamp": "yesterday"},
            "invalid_timestamp",
            "timestamp",
        ),
        ("/v1/track", {"userId": "u", "event": "E", "sentAt": 12}, "invalid_timestamp", "sentAt"),
        (
            "/v1/track",
            {"userId": "u", "event": "E", "messageId": ["x"]},
            "invalid_field",
            "messageId",
        ),
    ],
)
def test_invalid_single_event_is_400_and_writes_nothing(
    client, engine, source, path, body, code, field
) -> None:
    response = post(client, path, body, source["write_key"])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"]
    assert count(engine) == 0
    assert count(engine, rejected_events) == 0


def test_batch_must_be_an_array(client, engine, source) -> None:
    response = post(client, "/v1/batch", {"batch": {"type": "track"}}, source["write_key"])
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "batch"
    response = post(client, "/v1/batch", {"batch": [], "sentAt": "nope"}, source["write_key"])
    assert (response.status_code, response.json()["error"]["field"]) == (400, "sentAt")


def test_partial_batch_stores_valid_and_keeps_rejected(client, engine, source, admin_token):
    items = [
        {"type": "track", "userId": "u1", "event": "Good", "messageId": "good-1"},
        {"type": "track", "userId": "u1"},
        {"type": "unknown", "userId": "u1"},
        "not an object",
        {"type": "page", "anonymousId": "a1", "messageId": "good-2"},
        {"type": "track", "userId": "u", "event": "Big", "properties": {"x": "y" * 40_000}},
    ]
    response = post(client, "/v1/batch", {"batch": items}, source["write_key"])
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "missing_field"),
        (2, "invalid_type"),
        (3, "invalid_event"),
        (5, "event_too_large"),
    ]
    assert sorted(row["message_id"] for row in stored(engine)) == ["good-1", "good-2"]
    listed = client.get(
        "/api/events/rejected", headers={"Authorization": f"Bearer {admin_token}"}
    ).json()["rejected"]
    assert sorted((r["position"], r["code"], r["source"]) for r in listed) == [
        (1, "missing_field", "Website"),
        (2, "invalid_type", "Website"),
        (3, "invalid_event", "Website"),
        (5, "event_too_large", "Website"),
    ]
    by_position = {r["position"]: r for r in listed}
    assert orjson.loads(by_position[1]["payload"]) == items[1]
    assert by_position[1]["field"] == "event"


def test_duplicates_are_acknowledged_and_stored_once(client, engine, source) -> None:
    item = {"type": "track", "userId": "u", "event": "E", "messageId": "dup-1"}
    first = post(client, "/v1/batch", {"batch": [item, item]}, source["write_key"]).json()
    assert (first["accepted"], first["duplicates"]) == (1, 1)
    again = post(client, "/v1/track", item, source["write_key"]).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert count(engine) == 1


def test_same_message_id_from_another_source_is_not_a_duplicate(
    client, engine, source, settings
) -> None:
    from plait.collect.sources import add_source
    from plait.core.db import write

    with write(engine) as conn:
        other = add_source(conn, settings, "iOS App")
    item = {"type": "track", "userId": "u", "event": "E", "messageId": "same"}
    post(client, "/v1/track", item, source["write_key"])
    post(client, "/v1/track", item, other["write_key"])
    assert count(engine) == 2


def test_missing_message_id_gets_one(client, engine, source) -> None:
    post(client, "/v1/track", {"userId": "u", "event": "E"}, source["write_key"])
    post(client, "/v1/track", {"userId": "u", "event": "E"}, source["write_key"])
    ids = [row["message_id"] for row in stored(engine)]
    assert len(set(ids)) == 2
    assert all(ids)


def test_clock_skew_is_corrected(client, engine, source) -> None:
    device_now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    happened = device_now - timedelta(seconds=30)
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "timestamp": happened.isoformat()}
        ],
        "sentAt": device_now.isoformat(),
    }
    post(client, "/v1/batch", body, source["write_key"])
    (row,) = stored(engine)
    assert row["original_timestamp"] == happened
    assert row["sent_at"] == device_now
    assert row["timestamp"] == row["received_at"] - timedelta(seconds=30)
    assert row["warnings"] is None


def test_future_timestamp_is_set_to_received_at_with_a_warning(client, engine, source) -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    post(
        client, "/v1/track", {"userId": "u", "event": "E", "timestamp": future}, source["write_key"]
    )
    (row,) = stored(engine)
    assert row["timestamp"] == row["received_at"]
    assert row["original_timestamp"] == parse_timestamp(future)
    assert "future" in row["warnings"][0]


def test_past_timestamp_without_sent_at_is_kept(client, engine, source) -> None:
    post(
        client,
        "/v1/track",
        {"userId": "u", "event": "E", "timestamp": "2024-03-01T10:00:00Z"},
        source["write_key"],
    )
    assert stored(engine)[0]["timestamp"] == datetime(2024, 3, 1, 10, tzinfo=UTC)


def test_batch_context_and_integrations_merge_into_items(client, engine, source) -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "A"},
            {
                "type": "track",
                "userId": "u",
                "event": "B",
                "context": {"library": {"version": "9"}, "locale": "fr-FR"},
            },
        ],
        "context": {"library": {"name": "analytics.js", "version": "1"}, "locale": "en-US"},
        "integrations": {"All": False},
    }
    post(client, "/v1/batch", body, source["write_key"])
    rows = {row["event"]: row for row in stored(engine)}
    assert rows["A"]["context"]["library"] == {"name": "analytics.js", "version": "1"}
    assert rows["B"]["context"]["library"] == {"name": "analytics.js", "version": "9"}
    assert rows["B"]["context"]["locale"] == "fr-FR"
    assert rows["A"]["integrations"] == {"All": False}


def test_enrichment_channel_and_device(client, engine, source) -> None:
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
    )
    body = {
        "anonymousId": "a",
        "name": "Landing",
        "context": {
            "userAgent": iphone,
            "page": {
                "url": "https://shop.example/?utm_source=newsletter&utm_medium=email",
                "referrer": "https://mail.example/",
            },
        },
    }
    post(client, "/v1/page", body, source["write_key"])
    (row,) = stored(engine)
    assert row["channel"] == "Email"
    assert (row["traffic_source"], row["traffic_medium"]) == ("newsletter", "email")
    assert (row["device_type"], row["os"], row["browser"]) == ("mobile", "iOS", "Mobile Safari")
    assert row["context"]["ip"] == "testclient"


def test_offline_source_channel_overrides(client, engine, settings) -> None:
    from plait.collect.sources import add_source
    from plait.core.db import write

    with write(engine) as conn:
        pos = add_source(conn, settings, "Store POS", "store")
    assert pos["channel"] == "Store"
    post(
        client,
        "/v1/track",
        {
            "userId": "u",
            "event": "Order Completed",
            "context": {"page": {"referrer": "https://www.google.com/"}},
        },
        pos["write_key"],
    )
    assert stored(engine)[0]["channel"] == "Store"


def test_errors_are_json_for_unknown_routes_and_methods(client) -> None:
    missing = client.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/track")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_nul_characters_are_refused_per_event(client, engine, source) -> None:
    single = post(client, "/v1/track", {"userId": "u", "event": "a\u0000b"}, source["write_key"])
    assert single.status_code == 400
    assert single.json()["error"]["code"] == "invalid_character"
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "Good"},
            {"type": "track", "userId": "u", "event": "E", "properties": {"k\u0000": 1}},
        ]
    }
    response = post(client, "/v1/batch", batch, source["write_key"]).json()
    assert response["accepted"] == 1
    assert [(r["index"], r["code"]) for r in response["rejected"]] == [(1, "invalid_character")]
    in_context = post(
        client, "/v1/batch", {"batch": [], "context": {"x": "\u0000"}}, source["write_key"]
    )
    assert (in_context.status_code, in_context.json()["error"]["field"]) == (400, "context")
    assert [row["event"] for row in stored(engine)] == ["Good"]


def test_tracking_errors_also_carry_top_level_code_for_the_sdks(client, source) -> None:
    body = post(client, "/v1/batch", b"{", source["write_key"]).json()
    assert body["code"] == body["error"]["code"] == "invalid_json"
    assert body["message"] == body["error"]["message"]


def test_page_category_is_kept(client, engine, source) -> None:
    post(
        client,
        "/v1/page",
        {"userId": "u", "name": "Shoes", "category": "Catalog"},
        source["write_key"],
    )
    assert stored(engine)[0]["properties"] == {"category": "Catalog"}


def test_browsers_on_other_sites_may_send_events(client, engine, source) -> None:
    preflight = client.options(
        "/v1/t",
        headers={
            "origin": "https://shop.example.com",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert count(engine) == 0
    body = {"userId": "u1", "event": "Clicked"}
    sent = post(client, "/v1/t", body, source["write_key"], origin="https://shop.example.com")
    assert sent.status_code == 200
    assert sent.headers["access-control-allow-origin"] == "*"
    refused = post(client, "/v1/t", body, "wrong key", origin="https://shop.example.com")
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"  # the SDK can read why
    assert "access-control-allow-origin" not in client.get("/api/events").headers
