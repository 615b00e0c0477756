"""Reading events back: filters, newest first, keyset pagination — API and CLI."""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa

from plait.collect.event_store import EventFilter, list_events
from plait.collect.ingest import ingest, rules_from_settings
from plait.collect.messages import Envelope
from plait.core.clock import utcnow
from plait.core.db import read
from plait.core.sources import find_source


@pytest.fixture
def history(engine, settings, source) -> list[dict]:
    """30 events a minute apart: pages by a1, tracks by u1 and u2."""
    with read(engine) as conn:
        website = find_source(conn, "Website")
    messages = []
    for i in range(30):
        base = {"messageId": f"m{i:02d}", "timestamp": f"2026-03-01T10:{i:02d}:00Z"}
        if i % 3 == 0:
            messages.append({**base, "type": "page", "anonymousId": "a1", "name": f"P{i}"})
        else:
            user = "u1" if i % 3 == 1 else "u2"
            messages.append({**base, "type": "track", "userId": user, "event": "Clicked"})
    ingest(engine, messages, Envelope(website, utcnow()), rules_from_settings(settings))
    return messages


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_newest_first_and_pages_cover_everything_once(client, admin_token, history) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/events", params=params, headers=bearer(admin_token)).json()
        seen.extend(e["messageId"] for e in body["events"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"m{i:02d}" for i in reversed(range(30))]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "page"}, 10),
        ({"type": "track", "event": "Clicked"}, 20),
        ({"user_id": "u1"}, 10),
        ({"anonymous_id": "a1"}, 10),
        ({"source": "Website"}, 30),
        ({"source": "Elsewhere"}, 0),
        ({"since": "2026-03-01T10:10:00Z", "until": "2026-03-01T10:20:00Z"}, 10),
        ({"user_id": "u2", "since": "2026-03-01T10:15:00Z"}, 5),
    ],
)
def test_filters(client, admin_token, history, params, expected) -> None:
    body = client.get("/api/events", params={**params, "limit": 100}, headers=bearer(admin_token))
    assert body.status_code == 200
    assert len(body.json()["events"]) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "click"}, "type"),
        ({"since": "last tuesday"}, "since"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
def test_bad_query_parameters(client, admin_token, history, params, field) -> None:
    response = client.get("/api/events", params=params, headers=bearer(admin_token))
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_cli_lists_events_with_filters_and_pages(cli, history) -> None:
    first = cli("events", "list", "--user-id", "u1", "--limit", "4", "--json")
    assert first.returncode == 0, first.stderr
    page = orjson.loads(first.stdout)
    assert [e["userId"] for e in page["events"]] == ["u1"] * 4
    second = cli(
        "events",
        "list",
        "--user-id",
        "u1",
        "--limit",
        "100",
        "--json",
        "--cursor",
        page["next_cursor"],
    )
    rest = orjson.loads(second.stdout)
    assert len(rest["events"]) == 6
    assert rest["next_cursor"] is None
    table = cli("events", "list", "--type", "page", "--limit", "3")
    assert "P27" in table.stdout
    assert "more: --cursor" in table.stdout


def test_cli_bad_filter_is_one_line_and_exit_2(cli, history) -> None:
    result = cli("events", "list", "--type", "click")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --type must be one of alias, group, identify, page, screen, track (field: type)"
    ]


@pytest.fixture
def anonymous_history(engine, settings, source) -> None:
    """Events carrying anonymous id a1 anchored on it, on a user id and on an email, and
    others that must not be found by it."""
    with read(engine) as conn:
        website = find_source(conn, "Website")
    messages = [
        {"type": "page", "anonymousId": "a1", "name": "anchored on a1"},
        {"type": "track", "userId": "u1", "anonymousId": "a1", "event": "anchored on u1"},
        {"type": "identify", "anonymousId": "a1", "traits": {"email": "ana@example.com"}},
        {"type": "page", "anonymousId": "undefined", "name": "junk: anchored on nothing"},
        {"type": "page", "userId": "a1", "anonymousId": "a9", "name": "a user id a1"},
        {"type": "page", "userId": "u1", "anonymousId": "a2", "name": "another device"},
    ]
    for i, message in enumerate(messages):
        message.update(messageId=f"n{i}", timestamp=f"2026-03-02T10:0{i}:00Z")
    ingest(engine, messages, Envelope(website, utcnow()), rules_from_settings(settings))


@pytest.mark.parametrize(
    ("anonymous_id", "expected"), [("a1", ["n2", "n1", "n0"]), ("undefined", ["n3"]), ("a3", [])]
)
def test_an_anonymous_id_finds_its_events_whatever_they_are_anchored_on(
    client, admin_token, anonymous_history, anonymous_id, expected
) -> None:
    params = {"anonymous_id": anonymous_id, "limit": 2}
    first = client.get("/api/events", params=params, headers=bearer(admin_token)).json()
    found = [event["messageId"] for event in first["events"]]
    if first["next_cursor"]:
        params["cursor"] = first["next_cursor"]
        rest = client.get("/api/events", params=params, headers=bearer(admin_token)).json()
        found += [event["messageId"] for event in rest["events"]]
    assert found == expected


def test_an_anonymous_id_is_looked_up_in_indexes_not_by_reading_every_event(
    engine, anonymous_history
) -> None:
    """The look-up's condition must name the partial index's predicate word for word, or the
    database cannot use the index and reads the whole table."""
    statements: list[tuple[str, object]] = []

    def keep(*args: object) -> None:
        statements.append(args[2:4])

    with read(engine) as conn:
        sa.event.listen(conn, "before_cursor_execute", keep)
        page, _ = list_events(conn, EventFilter(anonymous_id="a1"))
        sa.event.remove(conn, "before_cursor_execute", keep)
        assert len(page) == 3
        statement, parameters = statements[-1]
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars().all()
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            plan = [row[-1] for row in rows]
    text = "\n".join(plan)
    assert "ix_events_identity" in text, text
    assert "ix_events_anonymous_id_unanchored" in text, text
    assert "Seq Scan on events" not in text, text
    assert "SCAN events" not in text, text
