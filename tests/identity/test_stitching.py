"""Cross-device stitching end to end: events in through the tracking API, resolved into the
graph, read back through the profiles API — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from plait.core.settings import Settings
from plait.identity.graph import profiles
from plait.profiles.pipeline import resolve

PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"
)
LAPTOP_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


def page(anonymous_id: str, at: str, url: str, ua: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "page",
        "anonymousId": anonymous_id,
        "timestamp": at,
        "context": {"page": {"url": url}, "userAgent": ua, **extra},
    }


def test_two_devices_login_and_email_click_make_one_customer(
    send_events, admin_api, engine: sa.Engine, settings: Settings
) -> None:
    send_events(
        page(
            "phone-anon",
            "2026-03-01T10:00:00Z",
            "https://shop.example/?utm_source=facebook&utm_medium=paid_social",
            PHONE_UA,
        ),
        page("phone-anon", "2026-03-01T10:05:00Z", "https://shop.example/sofas", PHONE_UA),
        page(
            "laptop-anon", "2026-03-02T20:00:00Z", "https://shop.example/?gclid=abc123", LAPTOP_UA
        ),
    )
    resolve(engine, settings)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(profiles)).scalar() == 2

    send_events(
        {
            "type": "identify",
            "anonymousId": "laptop-anon",
            "userId": "cus_42",
            "timestamp": "2026-03-02T20:10:00Z",
            "traits": {"email": "Ana.Lima@Example.com", "first_name": "Ana", "last_name": "Lima"},
            "context": {"userAgent": LAPTOP_UA},
        },
        {
            "type": "track",
            "event": "Email Clicked",
            "anonymousId": "phone-anon",
            "timestamp": "2026-03-05T08:00:00Z",
            "properties": {"link_url": "https://shop.example/sale"},
            "context": {"traits": {"email": "ana.lima@example.com"}, "userAgent": PHONE_UA},
        },
    )
    report = resolve(engine, settings)
    assert report.events == 2
    assert report.merges == 1

    found = admin_api.get("/api/profiles?q=ANA.LIMA@example.com")["profiles"]
    assert len(found) == 1
    customer = found[0]["id"]
    profile = admin_api.get(f"/api/profiles/{customer}")
    assert profile["identifiers"]["anonymous_id"] == ["laptop-anon", "phone-anon"]
    assert profile["identifiers"]["user_id"] == ["cus_42"]
    assert profile["identifiers"]["email"] == ["ana.lima@example.com"]
    assert profile["events"] == 5
    assert profile["first_touch_channel"] == "Paid Social"
    assert profile["first_seen"] == "2026-03-01T10:00:00.000Z"
    assert profile["last_seen"] == "2026-03-05T08:00:00.000Z"
    assert profile["name"] == "Ana Lima"
    assert profile["lifecycle_stage"] == "lead"
    assert {device["type"] for device in profile["devices"]} == {"mobile", "desktop"}
    # The customer is the older profile: the first device's.
    assert len(profile["merged_profiles"]) == 1

    timeline = admin_api.get(f"/api/profiles/{customer}/timeline?limit=2")
    assert [event["timestamp"] for event in timeline["events"]] == [
        "2026-03-05T08:00:00.000Z",
        "2026-03-02T20:10:00.000Z",
    ]
    rest = admin_api.get(f"/api/profiles/{customer}/timeline?cursor={timeline['next_cursor']}")
    assert len(rest["events"]) == 3
    assert rest["next_cursor"] is None
    pages = admin_api.get(f"/api/profiles/{customer}/timeline?type=page")
    assert len(pages["events"]) == 3
    by_lookup = admin_api.get("/api/profiles/lookup?kind=user_id&value=cus_42")
    assert by_lookup["id"] == customer
