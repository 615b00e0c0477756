"""Finding customers: by any identifier (normalised the way it is stored) or by name, and
reading a customer's timeline."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.collect.event_store import EventFilter, list_events
from plait.core.clock import isoformat
from plait.core.db import escape_like
from plait.core.errors import InvalidInput, NotFound
from plait.identity.graph import (
    customer_summaries,
    find_identity,
    identifier_filter,
    identities,
    profiles,
    root_of,
)
from plait.identity.identifiers import IdentityRules, check_kind
from plait.profiles.customer360 import customer_events

MAX_RESULTS = 100


def lookup(conn: Connection, rules: IdentityRules, kind: str, value: str) -> UUID:
    """The customer holding identifier ``kind``/``value``; NotFound if nobody does."""
    try:
        check_kind(kind)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="kind") from None
    normal = rules.normalize(kind, value)
    if normal is None:
        raise InvalidInput(f"{value!r} is not a valid {kind}", field="value")
    root = find_identity(conn, kind, normal)
    if root is None:
        raise NotFound(f"no customer with {kind} {normal!r}")
    return root


def resolve_reference(conn: Connection, rules: IdentityRules, reference: str) -> UUID:
    """A customer from a profile id, or from any identifier (``email``, ``kind:value``…)."""
    try:
        return root_of(conn, UUID(reference))
    except ValueError:
        pass
    kind, sep, value = reference.partition(":")
    if sep and kind in _kinds(rules):
        return lookup(conn, rules, kind, value)
    found = search(conn, rules, reference, limit=2)
    if len(found) == 1:
        return UUID(found[0]["id"])
    if not found:
        raise NotFound(f"no customer matches {reference!r}")
    raise InvalidInput(f"{reference!r} matches several customers; use an id", field="profile")


def search(
    conn: Connection, rules: IdentityRules, q: str, *, limit: int = 20
) -> list[dict[str, Any]]:
    """Customers whose identifier equals ``q`` (as any kind) or with a name word starting
    with it."""
    text = q.strip()
    if not text:
        raise InvalidInput("q must not be empty", field="q")
    candidates = {(kind, rules.normalize(kind, text)) for kind in _kinds(rules)}
    pairs = [(kind, value) for kind, value in candidates if value is not None]
    by_identifier = (
        sa.select(profiles.c.root_id)
        .join(identities, identities.c.profile_id == profiles.c.id)
        .where(identifier_filter(pairs, conn.dialect.name))
    )
    prefix = escape_like(text.lower()) + "%"
    by_name = sa.select(profiles.c.root_id).where(
        sa.or_(
            profiles.c.search_name.like(prefix, escape="\\"),
            profiles.c.search_name.like("% " + prefix, escape="\\"),
        )
    )
    roots = [
        row[0]
        for row in conn.execute(sa.union(by_identifier, by_name).limit(min(limit, MAX_RESULTS)))
    ]
    return customer_summaries(conn, roots)


def list_customers(
    conn: Connection, *, limit: int = 50, after: UUID | None = None
) -> list[dict[str, Any]]:
    """Customers, newest first (keyset on the id)."""
    query = sa.select(profiles.c.id).where(profiles.c.root_id == profiles.c.id)
    if after is not None:
        query = query.where(profiles.c.id < after)
    roots = list(conn.execute(query.order_by(profiles.c.id.desc()).limit(limit)).scalars())
    return customer_summaries(conn, roots)


def timeline(
    conn: Connection,
    root_id: UUID,
    filters: EventFilter,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The customer's events across channels and devices, newest first, keyset-paginated."""
    return list_events(conn, filters, limit=limit, cursor=cursor, scope=customer_events(root_id))


def customer_identities(conn: Connection, root_id: UUID) -> list[dict[str, Any]]:
    """Every identifier of a customer, with its home profile and when it was first seen."""
    rows = conn.execute(
        sa.select(identities)
        .join(profiles, profiles.c.id == identities.c.profile_id)
        .where(profiles.c.root_id == root_id)
        .order_by(identities.c.kind, identities.c.value)
    ).mappings()
    return [
        {
            "kind": row["kind"],
            "value": row["value"],
            "profile_id": str(row["profile_id"]),
            "first_seen": isoformat(row["first_seen"]),
            "event_id": str(row["event_id"]) if row["event_id"] else None,
        }
        for row in rows
    ]


def _kinds(rules: IdentityRules) -> list[str]:
    return list(dict.fromkeys([*rules.priority, *rules.limits, *rules.trait_kinds.values()]))


def require_customer(conn: Connection, profile_id: str) -> UUID:
    """The customer of a profile id given in a URL; a clear error if it is not one."""
    try:
        return root_of(conn, UUID(profile_id))
    except ValueError:
        raise NotFound(f"no profile {profile_id}") from None
