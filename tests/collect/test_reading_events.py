"""Reading events back: filters, newest first, keyset pagination — API and CLI."""

from __future__ import annotations

import orjson
import pytest

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
