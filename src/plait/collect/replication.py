"""Replication of events to the lake, incremental, crash-safe and idempotent.

Each run claims the not-yet-replicated events into a numbered batch (committed), writes one
Parquet file per day for that batch (``events/date=YYYY-MM-DD/batch-N.parquet``, atomically),
then marks the batch done. A run that dies in between leaves a claimed batch, which the
next run writes again under the same file names: no duplicates, no gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import events
from plait.core.clock import utcnow
from plait.core.db import UTCDateTime, metadata, read, write
from plait.core.lake import remove_stale_temporaries, write_parquet
from plait.core.settings import Settings
from plait.core.sources import sources

lake_batches = sa.Table(
    "lake_batches",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("row_count", sa.Integer, nullable=False, default=0),
)

_TIME = pa.timestamp("us", tz="UTC")
LAKE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("message_id", pa.string()),
        ("source_id", pa.string()),
        ("source", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("name", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("group_id", pa.string()),
        ("previous_id", pa.string()),
        ("channel", pa.string()),
        ("traffic_source", pa.string()),
        ("traffic_medium", pa.string()),
        ("traffic_campaign", pa.string()),
        ("device_type", pa.string()),
        ("os", pa.string()),
        ("browser", pa.string()),
        ("timestamp", _TIME),
        ("original_timestamp", _TIME),
        ("sent_at", _TIME),
        ("received_at", _TIME),
        ("traits", pa.string()),
        ("properties", pa.string()),
        ("context", pa.string()),
        ("warnings", pa.string()),
    ]
)
_JSON_COLUMNS = ("traits", "properties", "context", "warnings")
_ID_COLUMNS = ("id", "source_id")


@dataclass
class SyncReport:
    """What one sync wrote."""

    batches: int = 0
    rows: int = 0
    files: list[str] = field(default_factory=list)


def sync_lake(engine: Engine, settings: Settings, *, batch_size: int = 100_000) -> SyncReport:
    """Replicate every event not yet in the lake; safe to run again at any point."""
    report = SyncReport()
    remove_stale_temporaries(settings.lake)
    while True:
        with write(engine) as conn:
            batch_id = _unfinished_batch(conn) or _claim_batch(conn, batch_size)
        if batch_id is None:
            return report
        with read(engine) as conn:
            table = _batch_table(conn, batch_id)
        report.files.extend(_write_days(table, settings.lake, batch_id))
        with write(engine) as conn:
            conn.execute(
                lake_batches.update()
                .where(lake_batches.c.id == batch_id)
                .values(completed_at=utcnow(), row_count=table.num_rows)
            )
        report.batches += 1
        report.rows += table.num_rows


def pending_count(conn: Connection) -> int:
    """Events not yet replicated to the lake."""
    unclaimed = conn.execute(
        sa.select(sa.func.count()).select_from(events).where(events.c.lake_batch.is_(None))
    ).scalar_one()
    unfinished = conn.execute(
        sa.select(sa.func.count())
        .select_from(events.join(lake_batches, events.c.lake_batch == lake_batches.c.id))
        .where(lake_batches.c.completed_at.is_(None))
    ).scalar_one()
    return unclaimed + unfinished


def _unfinished_batch(conn: Connection) -> int | None:
    return conn.execute(
        sa.select(sa.func.min(lake_batches.c.id)).where(lake_batches.c.completed_at.is_(None))
    ).scalar()


def _claim_batch(conn: Connection, batch_size: int) -> int | None:
    batch_id = conn.execute(
        lake_batches.insert().values(created_at=utcnow(), row_count=0).returning(lake_batches.c.id)
    ).scalar_one()
    unclaimed = (
        sa.select(events.c.id)
        .where(events.c.lake_batch.is_(None))
        .order_by(events.c.id)
        .limit(batch_size)
    )
    claimed = conn.execute(
        events.update()
        .where(events.c.id.in_(unclaimed.scalar_subquery()), events.c.lake_batch.is_(None))
        .values(lake_batch=batch_id)
    ).rowcount
    if claimed == 0:
        conn.execute(lake_batches.delete().where(lake_batches.c.id == batch_id))
        return None
    return batch_id


def _batch_table(conn: Connection, batch_id: int) -> pa.Table:
    columns: list[Any] = []
    for name in LAKE_SCHEMA.names:
        if name == "source":
            columns.append(sources.c.name.label("source"))
        elif name in _JSON_COLUMNS:
            columns.append(sa.cast(events.c[name], sa.Text).label(name))
        else:
            columns.append(events.c[name])
    rows = conn.execute(
        sa.select(*columns)
        .join(sources, sources.c.id == events.c.source_id)
        .where(events.c.lake_batch == batch_id)
        .order_by(events.c.id)
    ).all()
    data = {name: [row[i] for row in rows] for i, name in enumerate(LAKE_SCHEMA.names)}
    for name in _ID_COLUMNS:
        data[name] = [str(value) for value in data[name]]
    for name in _JSON_COLUMNS:
        data[name] = [None if value in (None, "null") else value for value in data[name]]
    return pa.Table.from_pydict(data, schema=LAKE_SCHEMA)


def _write_days(table: pa.Table, location: str, batch_id: int) -> list[str]:
    if table.num_rows == 0:
        return []
    days = pc.strftime(table["timestamp"], format="%Y-%m-%d")
    written = []
    for day in pc.unique(days).to_pylist():
        part = table.filter(pc.equal(days, day))
        written.append(
            write_parquet(part, location, f"events/date={day}/batch-{batch_id:010d}.parquet")
        )
    return written
