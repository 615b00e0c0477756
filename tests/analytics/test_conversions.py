"""Conversions on hand-made events: first contact and qualification once per customer,
every sale, revenue as recorded or converted to a reporting currency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import ibis
import pandas as pd

from plait.analytics import connect
from plait.analytics.conversions import conversions
from plait.core.settings import Settings

START = datetime(2026, 3, 1, tzinfo=UTC)


def event(customer: str, hour: int, kind: str, **fields: object) -> dict:
    return {
        "customer_id": customer,
        "id": f"{customer}-{hour}",
        "seq": hour,
        "timestamp": START + timedelta(hours=hour),
        "type": "identify" if kind == "identify" else "track",
        "event": None if kind == "identify" else kind,
        "revenue": fields.get("revenue"),
        "currency": fields.get("currency"),
        "contactable": fields.get("contactable", False),
        "lifecycle_stage": fields.get("stage"),
    }


EVENTS = [
    event("ann", 1, "identify"),  # no e-mail or phone: not a contact
    event("ann", 2, "identify", contactable=True),  # the contact
    event("ann", 3, "Signed Up"),  # a later contact event: not counted again
    event("ann", 4, "identify", stage="mql"),  # qualified by stage
    event("ann", 5, "Lead Qualified"),
    event("ann", 6, "Order Completed", revenue=10.0, currency="EUR"),
    event("ann", 7, "Order Completed", revenue=5.0, currency="GBP"),
    event("bob", 1, "Order Completed", revenue=7.0),
    event("bob", 2, "Order Completed", revenue=3.0, currency="USD"),
    event("bob", 3, "Order Completed"),  # no revenue at all
]


def found(**analytics: object) -> pd.DataFrame:
    settings = Settings(analytics=analytics)
    table = ibis.memtable(pd.DataFrame(EVENTS))
    result = connect(settings).execute(conversions(table, settings))
    return result.sort_values(["customer_id", "kind", "converted_at"], ignore_index=True)


def test_contacts_and_qualifications_count_once_sales_every_time() -> None:
    table = found()
    firsts = table[table.kind != "sale"]
    assert [(r.customer_id, r.kind, r.converted_at.hour) for r in firsts.itertuples()] == [
        ("ann", "contact", 2),
        ("ann", "qualified", 4),
    ]
    assert table[table.kind == "sale"].groupby("customer_id").size().to_dict() == {
        "ann": 2,
        "bob": 3,
    }


def test_revenue_as_recorded_or_in_the_reporting_currency() -> None:
    raw = found().query("kind == 'sale'").value.tolist()
    assert raw == [10.0, 5.0, 7.0, 3.0, 0.0]
    converted = found(currency="usd", exchange_rates={"eur": 2.0}).query("kind == 'sale'")
    # EUR at 2.0; GBP has no rate, so a sale without revenue; no currency means USD.
    assert converted.value.tolist() == [20.0, 0.0, 7.0, 3.0, 0.0]


def test_identify_contacts_can_be_turned_off() -> None:
    table = found(contact_on_identify=False)
    contact = table[table.kind == "contact"]
    assert contact.converted_at.dt.hour.tolist() == [3]  # Signed Up
