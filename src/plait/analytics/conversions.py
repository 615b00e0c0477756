"""Conversions: a customer's first *contact* (became a known lead), first *qualified* lead,
and every *sale* with its revenue in the reporting currency."""

from __future__ import annotations

import ibis

from plait.core.settings import Settings

KINDS = ("contact", "qualified", "sale")


def conversions(events: ibis.Table, settings: Settings) -> ibis.Table:
    """One row per conversion: ``customer_id``, ``conversion_id``, ``kind``,
    ``converted_at``, ``seq``, ``value``. Contact and qualified count once per customer
    (the first ever); every sale counts."""
    rules = settings.analytics
    contact = events.event.isin(rules.contact_events)
    if rules.contact_on_identify:
        contact |= (events.type == "identify") & events.contactable
    qualified = events.event.isin(settings.profiles.qualified_events) | events.lifecycle_stage.isin(
        [stage.lower() for stage in rules.qualified_stages]
    )
    sales = events.filter(events.event.isin(settings.profiles.order_events))
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


def milestones(conversions: ibis.Table) -> ibis.Table:
    """Per customer, when they first made contact and first qualified (null if never)."""
    firsts = conversions.filter(conversions.kind != "sale")
    return firsts.group_by("customer_id").agg(
        contact_at=firsts.converted_at.max(where=firsts.kind == "contact"),
        qualified_at=firsts.converted_at.max(where=firsts.kind == "qualified"),
    )


def _first(events: ibis.Table, kind: str) -> ibis.Table:
    window = ibis.window(group_by=events.customer_id, order_by=[events.timestamp, events.seq])
    ranked = events.mutate(rank=ibis.row_number().over(window))
    first = ranked.filter(ranked.rank == 0)
    return first.select(
        "customer_id",
        conversion_id=first.customer_id.concat(f":{kind}"),
        kind=ibis.literal(kind),
        converted_at=first.timestamp,
        seq=first.seq,
        value=ibis.literal(0.0),
    )


def _revenue(sales: ibis.Table, settings: Settings) -> ibis.Value:
    """Revenue in ``analytics.currency``; a sale in a currency with no exchange rate counts
    as a sale with no revenue rather than adding incomparable money."""
    reporting = settings.analytics.currency.upper()
    amount = ibis.coalesce(sales.revenue, 0.0)
    rates = {code.upper(): rate for code, rate in settings.analytics.exchange_rates.items()}
    branches = [(sales.currency.isnull() | (sales.currency == reporting), amount)]
    branches += [(sales.currency == code, amount * rate) for code, rate in rates.items()]
    return ibis.cases(*branches, else_=0.0).cast("float64")
