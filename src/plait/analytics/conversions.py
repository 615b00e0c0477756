"""Conversions: a customer's first *contact* (became a known lead), first *qualified* lead,
and every *sale* with its revenue (in the reporting currency, if one is set)."""

from __future__ import annotations

import ibis

from plait.core.settings import Settings

KINDS = ("contact", "qualified", "sale")


def conversions(events: ibis.Table, settings: Settings) -> ibis.Table:
    """One row per conversion: ``customer_id``, ``conversion_id``, ``kind``,
    ``converted_at``, ``seq``, ``value``. Contact and qualified count once per customer
    (the first ever); every sale counts."""
    contact, qualified, sale = _predicates(events, settings)
    sales = events.filter(sale)
    return ibis.union(
        _first(events.filter(contact), "contact"),
        _first(events.filter(qualified), "qualified"),
        sales.select(
            "customer_id",
            conversion_id=sales.id,
            kind=ibis.literal("sale"),
            converted_at=sales.timestamp,
            seq=sales.seq,
            value=_revenue(sales, settings),
        ),
    )


def is_conversion(events: ibis.Table, settings: Settings) -> ibis.BooleanValue:
    """Whether an event is a contact, a qualification or a sale."""
    contact, qualified, sale = _predicates(events, settings)
    return contact | qualified | sale


def _predicates(
    events: ibis.Table, settings: Settings
) -> tuple[ibis.BooleanValue, ibis.BooleanValue, ibis.BooleanValue]:
    rules = settings.analytics
    contact = events.event.isin(rules.contact_events)
    if rules.contact_on_identify:
        contact |= (events.type == "identify") & events.contactable
    stages = [stage.lower() for stage in rules.qualified_stages]
    qualified = events.event.isin(settings.profiles.qualified_events) | ibis.coalesce(
        events.lifecycle_stage.isin(stages), False
    )
    return contact, qualified, events.event.isin(settings.profiles.order_events)


def milestones(conversions: ibis.Table) -> ibis.Table:
    """Per customer, when they first made contact and first qualified (null if never)."""
    firsts = conversions.filter(conversions.kind != "sale")
    return firsts.group_by("customer_id").agg(
        contact_at=firsts.converted_at.max(where=firsts.kind == "contact"),
        qualified_at=firsts.converted_at.max(where=firsts.kind == "qualified"),
    )


def _first(events: ibis.Table, kind: str) -> ibis.Table:
    """Each customer's first such event (an aggregate, not a window: no sort needed)."""
    first = events.group_by("customer_id").agg(
        converted_at=events.timestamp.min(), seq=events.seq.argmin(events.timestamp)
    )
    return first.select(
        "customer_id",
        conversion_id=first.customer_id.concat(f":{kind}"),
        kind=ibis.literal(kind),
        converted_at=first.converted_at,
        seq=first.seq,
        value=ibis.literal(0.0),
    )


def _revenue(sales: ibis.Table, settings: Settings) -> ibis.Value:
    """Revenue as recorded, or in ``analytics.currency`` when one is set: then a sale in a
    currency with no exchange rate counts as a sale with no revenue rather than adding
    incomparable money."""
    amount = ibis.coalesce(sales.revenue, 0.0).cast("float64")
    if settings.analytics.currency is None:
        return amount
    reporting = settings.analytics.currency.upper()
    rates = {code.upper(): rate for code, rate in settings.analytics.exchange_rates.items()}
    branches = [(sales.currency.isnull() | (sales.currency == reporting), amount)]
    branches += [(sales.currency == code, amount * rate) for code, rate in rates.items()]
    return ibis.cases(*branches, else_=0.0).cast("float64")
