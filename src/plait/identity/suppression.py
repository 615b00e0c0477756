"""The suppression list: identifiers of erased people. Events carrying one are rejected.

Only a digest of each identifier is kept (:func:`suppression_key`), so the list itself does
not hold the personal data it protects.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.clock import parse_timestamp, utcnow
from plait.core.db import UTCDateTime, among, chunks, metadata
from plait.core.errors import InvalidInput
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
    """Those of ``keys`` that are on the suppression list. Every tracking request's group
    checks thousands; on PostgreSQL they travel as one array parameter (``among``), cheaper
    to bind than an ``IN`` list of that many."""
    found: set[str] = set()
    key = suppressed_identifiers.c.key
    for chunk in chunks(keys, 5000):
        found.update(
            conn.execute(sa.select(key).where(among(key, chunk, conn.dialect.name))).scalars()
        )
    return found


_ANYONE = sa.select(suppressed_identifiers.c.key).limit(1)


def any_suppressed(conn: Connection) -> bool:
    """Whether anyone is on the suppression list at all (one index probe). Every group of
    tracking requests asks, so the statement is built once."""
    return conn.execute(_ANYONE).first() is not None


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


def list_suppressed(
    conn: Connection, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The suppression list newest first (keyset on time and digest): what is stored — the
    identifier's kind and digest, never its value — and whose erasure put it there."""
    table = suppressed_identifiers
    query = sa.select(table).order_by(table.c.created_at.desc(), table.c.key.desc())
    if cursor:
        moment, key = _decode_suppressed_cursor(cursor)
        query = query.where(
            sa.or_(
                table.c.created_at < moment,
                sa.and_(table.c.created_at == moment, table.c.key < key),
            )
        )
    rows = conn.execute(query.limit(limit + 1)).mappings().all()
    page = [
        {
            "kind": row["kind"],
            "key": row["key"],
            "profile_id": str(row["profile_id"]),
            "created_at": row["created_at"].isoformat(),
        }
        for row in rows[:limit]
    ]
    if len(rows) <= limit:
        return page, None
    last = rows[limit - 1]
    text = f"{last['created_at'].isoformat()}|{last['key']}"
    return page, base64.urlsafe_b64encode(text.encode()).decode()


def _decode_suppressed_cursor(cursor: str) -> tuple[Any, str]:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        moment_text, _, key = text.partition("|")
        return parse_timestamp(moment_text), key
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(
            "that cursor was not given out by this list", field="suppressed_cursor"
        ) from None
