"""The suppression list: identifiers of erased people. Events carrying one are rejected.

Only a digest of each identifier is kept (:func:`suppression_key`), so the list itself does
not hold the personal data it protects.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.clock import utcnow
from plait.core.db import UTCDateTime, chunks, metadata
from plait.identity.identifiers import Identifier, suppression_key

suppressed_identifiers = sa.Table(
    "suppressed_identifiers",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("profile_id", sa.Uuid, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


def suppressed_keys(conn: Connection, keys: Collection[str]) -> set[str]:
    """Those of ``keys`` that are on the suppression list."""
    found: set[str] = set()
    for chunk in chunks(keys, 5000):
        found.update(
            conn.execute(
                sa.select(suppressed_identifiers.c.key).where(
                    suppressed_identifiers.c.key.in_(chunk)
                )
            ).scalars()
        )
    return found


def suppress(conn: Connection, identifiers: Iterable[Identifier], profile_id: UUID) -> int:
    """Put identifiers on the suppression list; returns how many were new."""
    now = utcnow()
    rows = {
        suppression_key(identifier): {
            "key": suppression_key(identifier),
            "kind": identifier[0],
            "profile_id": profile_id,
            "created_at": now,
        }
        for identifier in identifiers
    }
    if not rows:
        return 0
    known = suppressed_keys(conn, rows.keys())
    fresh = [row for key, row in rows.items() if key not in known]
    if fresh:
        conn.execute(suppressed_identifiers.insert(), fresh)
    return len(fresh)


def is_suppressed(conn: Connection, identifier: Identifier) -> bool:
    return bool(suppressed_keys(conn, [suppression_key(identifier)]))
