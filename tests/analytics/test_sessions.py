"""Sessionisation on hand-made touches: inactivity, a change of touch kind, campaigns,
several devices of one customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import ibis
import pandas as pd
import pytest

from plait.analytics import connect
from plait.analytics.sessions import sessions, touch_rows
from plait.core.settings import Settings

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def event(customer: str, minutes: float, kind: str = "page", **fields: str | None) -> dict:
    return {
        "customer_id": customer,
        "timestamp": START + timedelta(minutes=minutes),
        "type": "track" if kind != "page" else "page",
        "event": None if kind == "page" else kind,
        "channel": fields.get("channel", "Direct"),
        "traffic_campaign": fields.get("campaign"),
    }


def session_starts(rows: list[dict], **analytics: object) -> list[tuple[str, float, str]]:
    settings = Settings(analytics=analytics)
    table = pd.DataFrame(rows).assign(seq=range(len(rows)))
    found = connect(settings).execute(
        sessions(touch_rows(ibis.memtable(table), settings.analytics), settings.analytics)
    )
    return sorted(
        (row.customer_id, (row.started_at - START).total_seconds() / 60, row.channel)
        for row in found.itertuples()
    )


def test_inactivity_and_touch_kind_start_sessions() -> None:
    rows = [
        event("ann", 0, channel="Paid Search"),
        event("ann", 20, channel="Direct"),  # same session: its channel stays Paid Search
        event("ann", 45),  # 25 minutes after the last view: still the same session
        event("ann", 50, "Call Completed", channel="Phone"),  # another kind of touch
        event("ann", 55, channel="Email"),  # back on the web: a new session
        event("ann", 120, channel="Organic Search"),  # 65 minutes later
        event("ann", 121, "Product Viewed", channel="Organic Search"),  # not a touch
        event("bob", 30, channel="Referral"),
    ]
    assert session_starts(rows) == [
        ("ann", 0, "Paid Search"),
        ("ann", 50, "Phone"),
        ("ann", 55, "Email"),
        ("ann", 120, "Organic Search"),
        ("bob", 30, "Referral"),
    ]
    assert len(session_starts(rows, session_timeout_minutes=10)) == 7  # 20, 45 split too


def test_every_session_carries_its_customers_original_channel() -> None:
    rows = [
        event("ann", 100, channel="Email"),
        event("ann", 0, channel="Paid Social"),  # arrives later, happened first
        event("ann", 300, "Call Completed", channel="Phone"),
        event("bob", 50, channel="Referral"),
        event("bob", 50, channel="Direct"),  # same moment: the earlier seq comes first
    ]
    settings = Settings()
    table = pd.DataFrame(rows).assign(seq=range(len(rows)))
    found = connect(settings).execute(
        sessions(touch_rows(ibis.memtable(table), settings.analytics), settings.analytics)
    )
    originals = found.groupby("customer_id").original_channel.agg(set).to_dict()
    assert originals == {"ann": {"Paid Social"}, "bob": {"Referral"}}
    assert len(found) == 4


def test_campaign_changes_split_sessions_only_when_asked() -> None:
    rows = [
        event("ann", 0, channel="Email", campaign="spring"),
        event("ann", 5, channel="Email", campaign="summer"),
        event("ann", 10, channel="Email", campaign="summer"),
    ]
    assert len(session_starts(rows)) == 1
    assert [start[1] for start in session_starts(rows, split_sessions_on_campaign=True)] == [0, 5]


def test_any_event_on_a_touch_channel_is_a_touch() -> None:
    rows = [event("cy", 0, "Order Completed", channel="Store")]
    assert session_starts(rows) == [("cy", 0, "Store")]
    assert session_starts(rows, touch_channels=[]) == []


@pytest.mark.parametrize("minutes", [-1, 0])
def test_a_timeout_must_be_positive(minutes: int) -> None:
    with pytest.raises(ValueError, match="session_timeout_minutes"):
        Settings(analytics={"session_timeout_minutes": minutes})
