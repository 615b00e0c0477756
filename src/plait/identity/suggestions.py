"""Merge suggestions: customers who share no identifier but are probably one person.

Found by :func:`plait.identity.duplicates.find_duplicates` (Splink) over each customer's
name, e-mail, phone and address, stored with their match probability, and merged only when
a person accepts them; a rejected pair is remembered and not suggested again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.core.clock import isoformat, utcnow
from plait.core.db import UTCDateTime, metadata, read, write
from plait.core.errors import Conflict, InvalidInput, NotFound
from plait.core.ids import uuid7
from plait.identity.graph import customer_summaries, identities, profiles, root_of
from plait.identity.identifiers import IdentityRules
from plait.identity.merges import merge_customers

if TYPE_CHECKING:  # pandas and Splink load only when suggestions are computed
    import pandas as pd

STATUSES = ("pending", "accepted", "rejected")

identity_suggestions = sa.Table(
    "identity_suggestions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("left_id", sa.Uuid, nullable=False),
    sa.Column("right_id", sa.Uuid, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("decided_at", UTCDateTime),
    sa.Column("decided_by", sa.String(200)),
    sa.Column("merge_id", sa.Uuid),
    sa.UniqueConstraint("left_id", "right_id"),
    sa.Index("ix_identity_suggestions_status", "status", "probability"),
)
"""Suggested pairs of customers (``left_id < right_id``): pending, accepted or rejected."""


_TRAIT_PATHS = {
    "first_name": ("first_name", "firstName"),
    "last_name": ("last_name", "lastName"),
    "postcode": ("postcode", "postal_code", "postalCode", "zip"),
    "city": ("city",),
    "birth_date": ("birthday", "birth_date", "birthDate", "dob"),
}


def _trait(name: str) -> sa.ColumnElement[Any]:
    """A trait's last value in a profile's trait records, extracted by the database."""
    return profiles.c.traits[(name, "last", 0)].as_string()


def profile_records(conn: Connection) -> pd.DataFrame:
    """One record per customer for the duplicate finder (:data:`RECORD_COLUMNS`), built
    set-wise in the database: named customers only, since a nameless one cannot be matched
    on anything but identifiers, which the graph already joins."""
    fields = {
        column: sa.func.max(
            sa.func.coalesce(*(_trait(path) for path in paths))
            if len(paths) > 1
            else _trait(paths[0])
        )
        for column, paths in _TRAIT_PATHS.items()
    }
    named = (
        sa.select(profiles.c.root_id.label("id"), *(v.label(k) for k, v in fields.items()))
        .group_by(profiles.c.root_id)
        .subquery()
    )
    contacts = {
        kind: sa.select(profiles.c.root_id, sa.func.min(identities.c.value).label("value"))
        .join(identities, identities.c.profile_id == profiles.c.id)
        .where(identities.c.kind == kind)
        .group_by(profiles.c.root_id)
        .subquery()
        for kind in ("email", "phone")
    }
    query = (
        sa.select(
            named,
            contacts["email"].c.value.label("email"),
            contacts["phone"].c.value.label("phone"),
        )
        .outerjoin(contacts["email"], contacts["email"].c.root_id == named.c.id)
        .outerjoin(contacts["phone"], contacts["phone"].c.root_id == named.c.id)
        .where(sa.or_(named.c.first_name.is_not(None), named.c.last_name.is_not(None)))
    )
    import pandas as pd

    from plait.identity.duplicates import RECORD_COLUMNS

    rows = conn.execute(query).mappings().all()
    frame = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    frame["id"] = frame["id"].astype(str)
    for column in RECORD_COLUMNS[1:]:
        frame[column] = frame[column].astype("string").str.strip().replace("", pd.NA)
    return frame


@dataclass
class SuggestReport:
    customers: int = 0
    pairs: int = 0
    new: int = 0


def suggest(engine: Engine, *, threshold: float = 0.9, seed: int = 1) -> SuggestReport:
    """Find probable duplicates among customers and store new suggestions.

    Pairs already suggested keep their status (a rejected pair stays rejected); pending
    ones get the new probability.
    """
    with read(engine) as conn:
        records = profile_records(conn)
    from plait.identity.duplicates import find_duplicates

    pairs = find_duplicates(records, threshold=threshold, seed=seed)
    report = SuggestReport(customers=len(records), pairs=len(pairs))
    now = utcnow()
    with write(engine) as conn:
        known = {
            (row.left_id, row.right_id): row
            for row in conn.execute(
                sa.select(
                    identity_suggestions.c.id,
                    identity_suggestions.c.left_id,
                    identity_suggestions.c.right_id,
                    identity_suggestions.c.status,
                )
            )
        }
        fresh, refreshed = [], []
        for left, right, probability in pairs.itertuples(index=False):
            key = tuple(sorted((UUID(left), UUID(right))))
            row = known.get(key)
            if row is None:
                fresh.append(
                    {
                        "id": uuid7(),
                        "left_id": key[0],
                        "right_id": key[1],
                        "probability": float(probability),
                        "status": "pending",
                        "created_at": now,
                    }
                )
            elif row.status == "pending":
                refreshed.append({"b_id": row.id, "b_probability": float(probability)})
        if fresh:
            conn.execute(identity_suggestions.insert(), fresh)
        if refreshed:
            conn.execute(
                identity_suggestions.update()
                .where(identity_suggestions.c.id == sa.bindparam("b_id"))
                .values(probability=sa.bindparam("b_probability")),
                refreshed,
            )
    report.new = len(fresh)
    return report


def list_suggestions(
    conn: Connection, *, status: str = "pending", limit: int = 50
) -> list[dict[str, Any]]:
    """Suggestions, most probable first, with a summary of both customers."""
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    rows = (
        conn.execute(
            sa.select(identity_suggestions)
            .where(identity_suggestions.c.status == status)
            .order_by(identity_suggestions.c.probability.desc(), identity_suggestions.c.id)
            .limit(limit)
        )
        .mappings()
        .all()
    )
    sides = [row[side] for row in rows for side in ("left_id", "right_id")]
    current = sa.select(profiles.c.id, profiles.c.root_id).where(profiles.c.id.in_(sides))
    root = {row.id: row.root_id for row in conn.execute(current)}
    shown = {UUID(s["id"]): s for s in customer_summaries(conn, sorted(set(root.values())))}
    return [
        {
            "id": str(row["id"]),
            "probability": round(row["probability"], 4),
            "status": row["status"],
            "created_at": isoformat(row["created_at"]),
            "decided_at": isoformat(row["decided_at"]),
            "decided_by": row["decided_by"],
            "merge_id": str(row["merge_id"]) if row["merge_id"] else None,
            "left": shown.get(root.get(row["left_id"])),
            "right": shown.get(root.get(row["right_id"])),
        }
        for row in rows
    ]


def decide(
    conn: Connection,
    rules: IdentityRules,
    suggestion_id: UUID,
    accept: bool,
    *,
    by: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Accept (merge the two customers) or reject a pending suggestion."""
    row = (
        conn.execute(
            sa.select(identity_suggestions).where(identity_suggestions.c.id == suggestion_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no suggestion {suggestion_id}")
    if row["status"] != "pending":
        raise Conflict(f"suggestion {suggestion_id} is already {row['status']}")
    values: dict[str, Any] = {"decided_at": utcnow(), "decided_by": by}
    result: dict[str, Any] = {"id": str(suggestion_id)}
    if accept:
        left, right = root_of(conn, row["left_id"]), root_of(conn, row["right_id"])
        if left != right:
            merged = merge_customers(
                conn, rules, [left, right], by=by, force=force, reason="suggestion"
            )
            result["customer_id"] = merged["customer_id"]
            values["merge_id"] = UUID(merged["merge_ids"][0])
        else:
            result["customer_id"] = str(left)
    values["status"] = "accepted" if accept else "rejected"
    conn.execute(
        identity_suggestions.update()
        .where(identity_suggestions.c.id == suggestion_id)
        .values(**values)
    )
    return {**result, "status": values["status"]}
