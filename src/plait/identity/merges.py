"""Merges a person asks for, and splitting a merge back apart.

A manual merge checks the same limits as automatic ones and refuses with the reason
unless forced. A split detaches the subtree of the merged profile (it and everything merged
into it before), which becomes a customer of its own again with its identifiers and, through
them, its events; the merge is kept in the log, marked as split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.clock import isoformat, utcnow
from plait.core.errors import Conflict, InvalidInput, NotFound
from plait.identity.graph import bump_version, identity_merges, lock_graph, profiles, root_of
from plait.identity.identifiers import IdentityRules
from plait.identity.merge_rules import GraphState, Merge
from plait.identity.resolver import bound_changes, root_counts


def merge_customers(
    conn: Connection,
    rules: IdentityRules,
    profile_ids: Sequence[UUID],
    *,
    by: str | None = None,
    force: bool = False,
    reason: str = "manual",
) -> dict[str, Any]:
    """Merge the customers of ``profile_ids`` into the oldest; returns the merges made."""
    lock_graph(conn)
    roots = sorted({root_of(conn, profile_id) for profile_id in profile_ids})
    if len(roots) < 2:
        raise InvalidInput("name at least two different customers to merge", field="profile_ids")
    counts = root_counts(conn, rules, roots)
    total: dict[str, int] = {}
    for kinds in counts.values():
        for kind, count in kinds.items():
            total[kind] = total.get(kind, 0) + count
    over = {
        kind: count
        for kind, count in total.items()
        if rules.limit(kind) is not None and count > rules.limit(kind)
    }
    if over and not force:
        detail = ", ".join(f"{n} {kind} (limit {rules.limit(kind)})" for kind, n in over.items())
        raise Conflict(f"the merged customer would hold {detail}; pass force to merge anyway")
    into = roots[0]
    state = GraphState(rules, {}, {root: root for root in roots}, counts, lambda: into)
    merges = []
    for root in roots[1:]:
        state.parent[root] = into
        merges.append((Merge(root, into, ()), None))
    write, merge_ids = bound_changes(
        conn.dialect, state, set(roots), utcnow(), [], [], merges, [], reason=reason, created_by=by
    )
    write(conn)
    bump_version(conn)
    return {
        "customer_id": str(into),
        "merged": [str(root) for root in roots[1:]],
        "merge_ids": [str(merge_id) for merge_id in merge_ids],
    }


def split_merge(
    conn: Connection, profile_id: UUID, merge_id: UUID, *, by: str | None = None
) -> dict[str, Any]:
    """Undo merge ``merge_id`` of the customer ``profile_id`` belongs to."""
    lock_graph(conn)
    root_id = root_of(conn, profile_id)
    merge = (
        conn.execute(sa.select(identity_merges).where(identity_merges.c.id == merge_id))
        .mappings()
        .first()
    )
    if merge is None:
        raise NotFound(f"no merge {merge_id}")
    if merge["split_at"] is not None:
        raise Conflict(f"merge {merge_id} was already split")
    detached = merge["from_id"]
    if root_of(conn, detached) != root_id:
        raise InvalidInput(f"merge {merge_id} is not part of customer {root_id}", field="merge_id")
    subtree = (
        sa.select(profiles.c.id).where(profiles.c.id == detached).cte("subtree", recursive=True)
    )
    subtree = subtree.union_all(
        sa.select(profiles.c.id).join(subtree, profiles.c.parent_id == subtree.c.id)
    )
    moved = conn.execute(
        profiles.update().where(profiles.c.id.in_(sa.select(subtree.c.id))).values(root_id=detached)
    ).rowcount
    conn.execute(
        profiles.update().where(profiles.c.id == detached).values(parent_id=None, merge_id=None)
    )
    now = utcnow()
    conn.execute(
        identity_merges.update()
        .where(identity_merges.c.id == merge_id)
        .values(split_at=now, split_by=by)
    )
    bump_version(conn)
    return {
        "customer_id": str(root_id),
        "restored_id": str(detached),
        "profiles_moved": moved,
        "split_at": isoformat(now),
    }


def merge_log(conn: Connection, root_id: UUID) -> list[dict[str, Any]]:
    """The merges that made a customer (and those split off it), oldest first."""
    member_ids = sa.select(profiles.c.id).where(profiles.c.root_id == root_id)
    rows = conn.execute(
        sa.select(identity_merges)
        .where(
            sa.or_(
                identity_merges.c.from_id.in_(member_ids),
                identity_merges.c.into_id.in_(member_ids),
            )
        )
        .order_by(identity_merges.c.created_at, identity_merges.c.id)
    ).mappings()
    return [merge_dict(row) for row in rows]


def merge_dict(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "into_id": str(row["into_id"]),
        "from_id": str(row["from_id"]),
        "reason": row["reason"],
        "event_id": str(row["event_id"]) if row["event_id"] else None,
        "identifiers": row["identifiers"],
        "created_at": isoformat(row["created_at"]),
        "created_by": row["created_by"],
        "split_at": isoformat(row["split_at"]),
        "split_by": row["split_by"],
    }
