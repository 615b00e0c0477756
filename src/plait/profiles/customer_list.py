"""What the customer pages list: customers with their lifecycle stage, last contact, orders
and revenue (computed set-wise for a page of customers, in a fixed number of queries
whatever the page's size), a customer's channels, and merge suggestions awaiting review."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.collect.event_store import events
from plait.core.clock import isoformat
from plait.core.settings import ProfileSettings
from plait.identity.graph import customer_summaries, members, profiles
from plait.identity.suggestions import identity_suggestions
from plait.profiles.customer360 import (
    contact_dict,
    customer_events,
    customers_events,
    number_property,
)
from plait.profiles.lifecycle import lifecycle_stage
from plait.profiles.traits import resolve_traits


def add_activity(
    conn: Connection, rows: list[dict[str, Any]], settings: ProfileSettings
) -> list[dict[str, Any]]:
    """Customer summaries (``customer_summaries``, as search and list give them) with each
    one's lifecycle stage, last contact, orders, revenue and order currency added, computed
    as the customer 360 computes them."""
    if not rows:
        return rows
    roots = [UUID(row["id"]) for row in rows]
    stated = _stated_stages(conn, roots, settings)
    totals = _order_totals(conn, roots, settings)
    contacts = last_contacts(conn, roots, settings)
    for row in rows:
        root = UUID(row["id"])
        orders, revenue, qualified, currency = totals.get(root, (0, 0.0, False, None))
        contact = contacts.get(root)
        row.update(
            orders=orders,
            revenue=revenue,
            currency=currency,
            last_contact=contact,
            lifecycle_stage=lifecycle_stage(
                orders=orders,
                qualified=qualified,
                contactable=bool(row["emails"] or row["phones"]) or contact is not None,
                stated=stated.get(root),
            ),
        )
    return rows


def _stated_stages(
    conn: Connection, roots: Sequence[UUID], settings: ProfileSettings
) -> dict[UUID, Any]:
    """The lifecycle stage each customer's traits state (a CRM's), resolved across merges."""
    records: dict[UUID, list[dict[str, Any]]] = {}
    query = sa.select(profiles.c.root_id, profiles.c.traits).where(profiles.c.root_id.in_(roots))
    for root, traits in conn.execute(query):
        record = (traits or {}).get("lifecycle_stage")
        if record is not None:
            records.setdefault(root, []).append({"lifecycle_stage": record})
    return {
        root: resolve_traits(parts, settings).get("lifecycle_stage")
        for root, parts in records.items()
    }


def _order_totals(
    conn: Connection, roots: Sequence[UUID], settings: ProfileSettings
) -> dict[UUID, tuple[int, float, bool, str | None]]:
    """Per customer: orders, revenue, whether qualified, and the orders' currency if one."""
    is_order = events.c.event.in_(settings.order_events)
    is_qualified = events.c.event.in_(settings.qualified_events)
    revenue = sa.func.coalesce(number_property(conn, "revenue"), number_property(conn, "total"))
    currency = events.c.properties["currency"].as_string()
    query = (
        sa.select(
            profiles.c.root_id,
            sa.func.count().filter(is_order),
            sa.func.sum(revenue).filter(is_order),
            sa.func.count().filter(is_qualified),
            sa.func.min(currency).filter(is_order),
            sa.func.max(currency).filter(is_order),
        )
        .select_from(customers_events(roots))
        .where(
            events.c.type == "track",
            events.c.event.in_([*settings.order_events, *settings.qualified_events]),
        )
        .group_by(profiles.c.root_id)
    )
    return {
        root: (orders, round(total or 0.0, 2), qualified > 0, low if low == high else None)
        for root, orders, total, qualified, low, high in conn.execute(query)
    }


def order_currency(conn: Connection, root_id: UUID, settings: ProfileSettings) -> str | None:
    """The currency of the customer's orders, if they all have the same one."""
    return _order_totals(conn, [root_id], settings).get(root_id, (0, 0.0, False, None))[3]


def last_contacts(
    conn: Connection, roots: Sequence[UUID], settings: ProfileSettings
) -> dict[UUID, dict[str, Any]]:
    """Each customer's last human interaction (``customer360.last_contact``), in one query."""
    rank = sa.func.row_number().over(
        partition_by=profiles.c.root_id,
        order_by=(events.c.timestamp.desc(), events.c.seq.desc()),
    )
    ranked = (
        sa.select(
            profiles.c.root_id,
            events.c.event,
            events.c.channel,
            events.c.timestamp,
            events.c.properties,
            rank.label("rank"),
        )
        .select_from(customers_events(roots))
        .where(events.c.type == "track", events.c.event.in_(settings.contact_events))
        .subquery()
    )
    rows = conn.execute(sa.select(ranked).where(ranked.c.rank == 1))
    return {
        row.root_id: contact_dict(row.event, row.channel, row.timestamp, row.properties)
        for row in rows
    }


def customer_channels(conn: Connection, root_id: UUID) -> list[dict[str, Any]]:
    """The channels of a customer's events with how many each, busiest first."""
    query = (
        sa.select(events.c.channel, sa.func.count().label("events"))
        .select_from(customer_events(root_id))
        .where(events.c.channel.is_not(None))
        .group_by(events.c.channel)
        .order_by(sa.func.count().desc(), events.c.channel)
    )
    return [{"channel": channel, "events": count} for channel, count in conn.execute(query)]


def pending_suggestion_count(conn: Connection) -> int:
    """How many merge suggestions wait for a person's decision."""
    query = sa.select(sa.func.count()).where(identity_suggestions.c.status == "pending")
    return conn.execute(query).scalar_one()


def customer_suggestions(conn: Connection, root_id: UUID) -> list[dict[str, Any]]:
    """Pending merge suggestions involving the customer ``root_id``, most probable first,
    each with the other customer summarised (``None`` if both are already one customer)."""
    mine = members(root_id)
    rows = conn.execute(
        sa.select(identity_suggestions)
        .where(
            identity_suggestions.c.status == "pending",
            sa.or_(
                identity_suggestions.c.left_id.in_(mine), identity_suggestions.c.right_id.in_(mine)
            ),
        )
        .order_by(identity_suggestions.c.probability.desc(), identity_suggestions.c.id)
    ).mappings()
    found = [dict(row) for row in rows]
    sides = {row[side] for row in found for side in ("left_id", "right_id")}
    current = sa.select(profiles.c.id, profiles.c.root_id).where(profiles.c.id.in_(sides))
    root: dict[UUID, UUID] = {row.id: row.root_id for row in conn.execute(current)}
    others = {
        row["id"]: next(
            (root[side] for side in (row["left_id"], row["right_id"]) if root[side] != root_id),
            None,
        )
        for row in found
    }
    shown = {
        UUID(summary["id"]): summary
        for summary in customer_summaries(conn, sorted({o for o in others.values() if o}))
    }
    return [
        {
            "id": str(row["id"]),
            "probability": round(row["probability"], 4),
            "created_at": isoformat(row["created_at"]),
            "other": shown.get(others[row["id"]]) if others[row["id"]] else None,
        }
        for row in found
    ]


def suggestion_status(conn: Connection, suggestion_id: UUID) -> str | None:
    """A suggestion's status (``pending``, ``accepted``, ``rejected``), None if unknown."""
    query = sa.select(identity_suggestions.c.status).where(
        identity_suggestions.c.id == suggestion_id
    )
    return conn.execute(query).scalar()
