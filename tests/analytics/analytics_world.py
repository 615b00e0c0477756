"""The hand-worked world of the analytics tests (period 2026-03-01..2026-03-06).

- Ann: Paid Social on her phone (03-01), logs in there; Organic Search on her laptop (03-03),
  identifies with an e-mail there (contact); an e-mail campaign visit (03-05) and an order of
  100. Sessions: Paid Social, Organic Search, Email — joined across devices by her user id.
- Bob: Direct (03-02), signs up (contact); Organic Search (03-04), qualified, orders 50.
- Cy: an order of 20 with no touch at all -> "(none)".
- Dee: one Direct visit, nothing else (drops off).
- Eve: Paid Search on 02-25 (before the period, inside the lookback), orders 10 on
  03-07 02:00 UTC — outside the period in UTC, inside it in New York (03-06 21:00).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from plait.core.settings import Settings
from plait.profiles.pipeline import resolve
from plait.upkeep import upkeep_once

GOOGLE = {"referrer": "https://www.google.com/"}


def page(who: dict[str, str], at: str, url: str = "https://shop.example/", **page: Any) -> dict:
    return {
        "type": "page",
        **who,
        "timestamp": at,
        "context": {"page": {"url": url, **page}},
    }


def track(who: dict[str, str], at: str, event: str, **properties: Any) -> dict:
    return {"type": "track", **who, "timestamp": at, "event": event, "properties": properties}


def identify(who: dict[str, str], at: str, **traits: Any) -> dict:
    return {"type": "identify", **who, "timestamp": at, "traits": traits}


ANN_PHONE = {"anonymousId": "ann-phone"}
ANN_LAPTOP = {"anonymousId": "ann-laptop"}
ANN = {"userId": "ann"}
BOB = {"anonymousId": "bob-1"}
WORLD = [
    page(
        ANN_PHONE,
        "2026-03-01T10:00:00Z",
        "https://shop.example/?utm_source=facebook&utm_medium=paid_social",
    ),
    page(ANN_PHONE, "2026-03-01T10:05:00Z", "https://shop.example/sofas"),
    identify({**ANN_PHONE, **ANN}, "2026-03-01T10:06:00Z"),
    page(ANN_LAPTOP, "2026-03-03T09:00:00Z", **GOOGLE),
    identify({**ANN_LAPTOP, **ANN}, "2026-03-03T09:02:00Z", email="ann@example.com"),
    page(
        ANN, "2026-03-05T12:00:00Z", "https://shop.example/?utm_source=newsletter&utm_medium=email"
    ),
    track(ANN, "2026-03-05T12:10:00Z", "Order Completed", revenue=100, currency="USD"),
    page(BOB, "2026-03-02T14:00:00Z"),
    track(BOB, "2026-03-02T14:01:00Z", "Signed Up"),
    page(BOB, "2026-03-04T08:00:00Z", **GOOGLE),
    track(BOB, "2026-03-04T08:03:00Z", "Lead Qualified"),
    track(BOB, "2026-03-04T08:05:00Z", "Order Completed", total="50"),
    track({"anonymousId": "cy-1"}, "2026-03-04T11:00:00Z", "Order Completed", revenue=20),
    page({"anonymousId": "dee-1"}, "2026-03-02T16:00:00Z"),
    page(
        {"userId": "eve"},
        "2026-02-25T10:00:00Z",
        "https://shop.example/?utm_source=google&utm_medium=cpc",
    ),
    track({"userId": "eve"}, "2026-03-07T02:00:00Z", "Order Completed", revenue=10),
]


def build_world(send_events, engine: sa.Engine, settings: Settings) -> Settings:
    """Send the world through the API, resolve identities, bring the lake up to date."""
    send_events(*WORLD)
    resolve(engine, settings)
    upkeep_once(engine, settings)
    return settings
