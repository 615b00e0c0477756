"""The identity graph in the database: profiles, the identifiers that belong to them, and
the log of merges and refused merges.

Every identifier has a *home* profile, the one it was first linked to; a merge never
rewrites identifiers or events. Instead profiles form a forest: a merged profile points at
the profile it was merged into (``parent_id``) and every profile knows the root of its tree
(``root_id``, kept flat). The customer is the root; its identifiers are those of every
profile in its tree, and its events are those anchored on them. Splitting a merge detaches a
subtree again, so identifiers and events follow without being touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.clock import isoformat
from plait.core.db import JSONValue, UTCDateTime, among, metadata
from plait.core.errors import NotFound

profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("root_id", sa.Uuid, nullable=False, index=True),
    sa.Column("parent_id", sa.Uuid),
    sa.Column("merge_id", sa.Uuid),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("first_seen", UTCDateTime),
    sa.Column("last_seen", UTCDateTime),
    sa.Column("name", sa.Text),
    sa.Column("search_name", sa.Text, index=True),
    sa.Column("traits", JSONValue),
    sa.Index("ix_profiles_parent_id", "parent_id"),
)
"""Profiles; a root (``root_id == id``) is a customer, the others are merged into one."""

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("kind", sa.String(50), primary_key=True),
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("profile_id", sa.Uuid, nullable=False, index=True),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("event_id", sa.Uuid),
)
"""Identifiers and their home profile (never changed by a merge)."""

identity_merges = sa.Table(
    "identity_merges",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("into_id", sa.Uuid, nullable=False, index=True),
    sa.Column("from_id", sa.Uuid, nullable=False, index=True),
    sa.Column("reason", sa.String(20), nullable=False),
    sa.Column("event_id", sa.Uuid),
    sa.Column("identifiers", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200)),
    sa.Column("split_at", UTCDateTime),
    sa.Column("split_by", sa.String(200)),
)
"""Every merge: which root (``from_id``) joined which (``into_id``), why, and through what."""

identity_refusals = sa.Table(
    "identity_refusals",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("event_id", sa.Uuid, index=True),
    sa.Column("code", sa.String(30), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("identifiers", JSONValue, nullable=False),
    sa.Column("profile_ids", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
"""Merges the rules refused, and identifiers they left out, with the event and reason."""

identity_progress = sa.Table(
    "identity_progress",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("resolved_seq", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("exported_version", sa.BigInteger, nullable=False),
)
"""One row: events resolved so far (by ``seq``) and a counter bumped by every change."""

GRAPH_LOCK = 0x504C414954_02
"""PostgreSQL advisory lock held by every transaction that changes the graph."""


def lock_graph(conn: Connection) -> None:
    """Serialise graph changes (SQLite's single writer already does)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({GRAPH_LOCK})")


def progress(conn: Connection) -> dict[str, int]:
    """The progress row, created on first use."""
    row = conn.execute(sa.select(identity_progress).where(identity_progress.c.id == 1)).first()
    if row is None:
        conn.execute(
            identity_progress.insert().values(id=1, resolved_seq=0, version=0, exported_version=0)
        )
        return {"resolved_seq": 0, "version": 0, "exported_version": 0}
    return {
        "resolved_seq": row.resolved_seq,
        "version": row.version,
        "exported_version": row.exported_version,
    }


def bump_version(conn: Connection, **values: Any) -> None:
    """Record that the graph changed (so the exported identity map is refreshed)."""
    progress(conn)
    conn.execute(
        identity_progress.update()
        .where(identity_progress.c.id == 1)
        .values(version=identity_progress.c.version + 1, **values)
    )


def root_of(conn: Connection, profile_id: UUID) -> UUID:
    """The customer a profile belongs to now (itself, or what it was merged into)."""
    root = conn.execute(sa.select(profiles.c.root_id).where(profiles.c.id == profile_id)).scalar()
    if root is None:
        raise NotFound(f"no profile {profile_id}")
    return root


def members(root_id: UUID) -> sa.Select:
    """The ids of the profiles a customer is made of."""
    return sa.select(profiles.c.id).where(profiles.c.root_id == root_id)


def identifiers_query(root_id: UUID) -> sa.Select:
    """A customer's identifiers with their home profile."""
    return sa.select(identities).where(identities.c.profile_id.in_(members(root_id)))


def find_identity(conn: Connection, kind: str, value: str) -> UUID | None:
    """The customer (root profile) an identifier belongs to, if any."""
    return conn.execute(
        sa.select(profiles.c.root_id)
        .join(identities, identities.c.profile_id == profiles.c.id)
        .where(identities.c.kind == kind, identities.c.value == value)
    ).scalar()


def customer_count(conn: Connection) -> int:
    """How many customers there are (root profiles)."""
    query = sa.select(sa.func.count()).where(profiles.c.root_id == profiles.c.id)
    return conn.execute(query).scalar_one()


def customer_summaries(conn: Connection, roots: Sequence[UUID]) -> list[dict[str, Any]]:
    """A line per customer: name, e-mails and phones, first and last seen."""
    if not roots:
        return []
    parts = conn.execute(
        sa.select(
            profiles.c.root_id,
            sa.func.max(profiles.c.name),
            sa.func.min(profiles.c.first_seen),
            sa.func.max(profiles.c.last_seen),
            sa.func.count(),
        )
        .where(profiles.c.root_id.in_(roots))
        .group_by(profiles.c.root_id)
    ).all()
    contact = conn.execute(
        sa.select(profiles.c.root_id, identities.c.kind, identities.c.value)
        .join(identities, identities.c.profile_id == profiles.c.id)
        .where(profiles.c.root_id.in_(roots), identities.c.kind.in_(("email", "phone", "user_id")))
        .order_by(identities.c.value)
    ).all()
    found: dict[UUID, dict[str, list[str]]] = {}
    for root, kind, value in contact:
        found.setdefault(root, {}).setdefault(kind, []).append(value)
    by_root = {
        root: {
            "id": str(root),
            "name": name,
            "user_ids": found.get(root, {}).get("user_id", []),
            "emails": found.get(root, {}).get("email", []),
            "phones": found.get(root, {}).get("phone", []),
            "first_seen": isoformat(first),
            "last_seen": isoformat(last),
            "profiles": count,
        }
        for root, name, first, last, count in parts
    }
    return [by_root[root] for root in roots if root in by_root]


def list_refusals(
    conn: Connection, *, limit: int = 50, before: UUID | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Refused merges and left-out identifiers, newest first (keyset on the id)."""
    query = sa.select(identity_refusals).order_by(identity_refusals.c.id.desc())
    if before is not None:
        query = query.where(identity_refusals.c.id < before)
    rows = conn.execute(query.limit(limit + 1)).mappings().all()
    page = [
        {
            "id": str(row["id"]),
            "event_id": str(row["event_id"]) if row["event_id"] else None,
            "code": row["code"],
            "message": row["message"],
            "identifiers": row["identifiers"],
            "profile_ids": row["profile_ids"],
            "created_at": isoformat(row["created_at"]),
        }
        for row in rows[:limit]
    ]
    return page, page[-1]["id"] if len(rows) > limit else None


def identifier_filter(pairs: Iterable[tuple[str, str]], dialect: str) -> sa.ColumnElement[bool]:
    """``identities`` rows matching any of ``pairs``, written per kind so that both databases
    search the primary key (SQLite scans the table for a row-value ``IN`` list)."""
    by_kind: dict[str, list[str]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, []).append(value)
    return sa.or_(
        sa.false(),
        *(
            sa.and_(identities.c.kind == kind, among(identities.c.value, values, dialect))
            for kind, values in sorted(by_kind.items())
        ),
    )
