"""Sources — where events come from (a website, an app, a POS, a call centre) — and their
write keys, which authenticate ingestion and are stored only as digests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.clock import utcnow
from plait.core.db import UTCDateTime, metadata
from plait.core.errors import Conflict, InvalidInput, NotFound
from plait.core.ids import uuid7
from plait.core.secrets import digest, hint, new_secret

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("channel", sa.String(100)),
    sa.Column("write_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("write_key_hint", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class Source:
    """A source as ingestion needs it."""

    id: UUID
    name: str
    channel: str | None


def create_source(conn: Connection, name: str, channel: str | None = None) -> dict[str, Any]:
    """Create a source; its write key is in the result and is never shown again."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("a source name is 1 to 100 characters", field="name")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise InvalidInput("a source name cannot contain control characters", field="name")
    if conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).first():
        raise Conflict(f"a source named {name!r} exists already", field="name")
    write_key = new_secret(32)
    row = {
        "id": uuid7(),
        "name": name,
        "channel": channel or None,
        "write_key_hash": digest(write_key),
        "write_key_hint": hint(write_key),
        "created_at": utcnow(),
    }
    conn.execute(sources.insert(), row)
    return {**public_source(row), "write_key": write_key}


def rotate_write_key(conn: Connection, name: str) -> dict[str, Any]:
    """Give a source a new write key; the old one stops working at once."""
    write_key = new_secret(32)
    done = conn.execute(
        sources.update()
        .where(sources.c.name == name)
        .values(write_key_hash=digest(write_key), write_key_hint=hint(write_key))
    )
    if done.rowcount == 0:
        raise NotFound(f"no source named {name!r}", field="name")
    return {**get_source(conn, name), "write_key": write_key}


def list_sources(conn: Connection) -> list[dict[str, Any]]:
    """Every source, by name."""
    rows = conn.execute(sa.select(sources).order_by(sources.c.name))
    return [public_source(row._mapping) for row in rows]


def get_source(conn: Connection, name: str) -> dict[str, Any]:
    """One source by name, or NotFound."""
    row = conn.execute(sa.select(sources).where(sources.c.name == name)).first()
    if row is None:
        raise NotFound(f"no source named {name!r}", field="source")
    return public_source(row._mapping)


def find_source(conn: Connection, name: str) -> Source:
    """The source named ``name`` as ingestion needs it, or NotFound."""
    row = conn.execute(
        sa.select(sources.c.id, sources.c.name, sources.c.channel).where(sources.c.name == name)
    ).first()
    if row is None:
        raise NotFound(
            f"no source named {name!r}; create it with: plait sources create", field="source"
        )
    return Source(row.id, row.name, row.channel)


def source_for_write_key(conn: Connection, write_key: str) -> Source | None:
    """The source a write key belongs to, or None."""
    row = conn.execute(
        sa.select(sources.c.id, sources.c.name, sources.c.channel).where(
            sources.c.write_key_hash == digest(write_key)
        )
    ).first()
    return Source(row.id, row.name, row.channel) if row else None


def public_source(row: Any) -> dict[str, Any]:
    """A source as shown to people and the API: no key material beyond a hint."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "channel": row["channel"],
        "write_key_hint": row["write_key_hint"],
        "created_at": row["created_at"].isoformat(),
    }
