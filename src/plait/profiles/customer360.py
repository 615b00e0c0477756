"""The customer 360: one customer's traits, identifiers and computed fields.

Computed fields are read from the customer's events at request time, through the index on
each event's anchor identifier, so merges, splits and erasures are reflected at once:
first and last seen, first- and last-touch channel, last contact (the last human
interaction on any channel), devices, orders and lifetime revenue, lifecycle stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.collect.event_store import events
from plait.core.clock import isoformat
from plait.core.settings import ProfileSettings
from plait.identity.graph import identifiers_query, identities, profiles, root_of
from plait.profiles.lifecycle import lifecycle_stage
from plait.profiles.traits import display_name, resolve_traits

SUMMARY_LENGTH = 200


def customer_events(root_id: UUID) -> sa.FromClause:
    """Events joined to the customer ``root_id`` through their anchor identifier."""
    return customers_events([root_id])


def customers_events(roots: Sequence[UUID]) -> sa.FromClause:
    """Events of the customers ``roots``, each with its customer's id (``profiles.root_id``)."""
    return events.join(
        identities,
        sa.and_(
            events.c.identity_kind == identities.c.kind,
            events.c.identity_value == identities.c.value,
        ),
    ).join(
        profiles,
        sa.and_(profiles.c.id == identities.c.profile_id, profiles.c.root_id.in_(roots)),
    )


def number_property(conn: Connection, name: str) -> sa.ColumnElement[Any]:
    """A numeric event property, NULL where it is missing or not a number."""
    if conn.dialect.name == "postgresql":
        is_number = sa.func.jsonb_typeof(events.c.properties[name]) == "number"
    else:
        is_number = sa.func.json_type(events.c.properties, f"$.{name}").in_(("integer", "real"))
    return sa.case((is_number, events.c.properties[name].as_float()), else_=None)


def profile_360(conn: Connection, profile_id: UUID, settings: ProfileSettings) -> dict[str, Any]:
    """Everything Plait knows about the customer ``profile_id`` belongs to."""
    root_id = root_of(conn, profile_id)
    parts = (
        conn.execute(
            sa.select(profiles).where(profiles.c.root_id == root_id).order_by(profiles.c.id)
        )
        .mappings()
        .all()
    )
    found = conn.execute(identifiers_query(root_id).order_by(identities.c.kind)).mappings().all()
    traits = resolve_traits([part["traits"] for part in parts], settings)
    stats = _activity(conn, root_id, settings)
    kinds = {row["kind"] for row in found}
    return {
        "id": str(root_id),
        "name": display_name(traits),
        "traits": traits,
        "identifiers": _identifier_map(found),
        "merged_profiles": [str(part["id"]) for part in parts if part["id"] != root_id],
        **stats,
        "lifecycle_stage": lifecycle_stage(
            orders=stats["orders"],
            qualified=stats.pop("qualified"),
            contactable=bool(kinds & {"email", "phone"}) or stats["last_contact"] is not None,
            stated=traits.get("lifecycle_stage"),
        ),
    }


def _identifier_map(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for row in rows:
        grouped.setdefault(row["kind"], []).append(row["value"])
    return {kind: sorted(values) for kind, values in grouped.items()}


def _activity(conn: Connection, root_id: UUID, settings: ProfileSettings) -> dict[str, Any]:
    joined = customer_events(root_id)
    is_order = sa.and_(events.c.type == "track", events.c.event.in_(settings.order_events))
    is_qualified = sa.and_(events.c.type == "track", events.c.event.in_(settings.qualified_events))
    revenue = sa.func.coalesce(number_property(conn, "revenue"), number_property(conn, "total"))
    totals = conn.execute(
        sa.select(
            sa.func.count().label("events"),
            sa.func.min(events.c.timestamp).label("first_seen"),
            sa.func.max(events.c.timestamp).label("last_seen"),
            sa.func.count().filter(is_order).label("orders"),
            sa.func.sum(revenue).filter(is_order).label("revenue"),
            sa.func.count().filter(is_qualified).label("qualified"),
        ).select_from(joined)
    ).one()
    touched = sa.select(events.c.channel, events.c.timestamp).select_from(joined)
    touched = touched.where(events.c.channel.is_not(None))
    first = conn.execute(touched.order_by(events.c.timestamp, events.c.seq).limit(1)).first()
    last = conn.execute(
        touched.order_by(events.c.timestamp.desc(), events.c.seq.desc()).limit(1)
    ).first()
    devices = conn.execute(
        sa.select(events.c.device_type, events.c.os, events.c.browser, sa.func.count())
        .select_from(joined)
        .where(events.c.device_type.is_not(None))
        .group_by(events.c.device_type, events.c.os, events.c.browser)
        .order_by(sa.func.count().desc())
    ).all()
    return {
        "events": totals.events,
        "first_seen": isoformat(totals.first_seen),
        "last_seen": isoformat(totals.last_seen),
        "first_touch_channel": first.channel if first else None,
        "last_touch_channel": last.channel if last else None,
        "last_contact": last_contact(conn, root_id, settings),
        "devices": [
            {"type": kind, "os": os, "browser": browser, "events": count}
            for kind, os, browser, count in devices
        ],
        "orders": totals.orders,
        "lifetime_revenue": round(totals.revenue or 0.0, 2),
        "qualified": totals.qualified > 0,
    }


def last_contact(
    conn: Connection, root_id: UUID, settings: ProfileSettings
) -> dict[str, Any] | None:
    """The customer's last human interaction on any channel (an event in ``contact_events``:
    calls, chats, messages, store visits; automated sends are not listed there)."""
    row = conn.execute(
        sa.select(events.c.event, events.c.channel, events.c.timestamp, events.c.properties)
        .select_from(customer_events(root_id))
        .where(events.c.type == "track", events.c.event.in_(settings.contact_events))
        .order_by(events.c.timestamp.desc(), events.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return contact_dict(row.event, row.channel, row.timestamp, row.properties)


def contact_dict(
    event: str, channel: str | None, timestamp: datetime, properties: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A contact event as the 360 shows it: channel, direction, time and a short summary."""
    properties = properties or {}
    direction = properties.get("direction")
    summary = next(
        (
            str(properties[key])
            for key in ("summary", "subject", "text", "topic")
            if properties.get(key) not in (None, "")
        ),
        event,
    )
    return {
        "channel": channel,
        "direction": direction if direction in ("inbound", "outbound") else None,
        "time": isoformat(timestamp),
        "event": event,
        "summary": summary[:SUMMARY_LENGTH],
    }
