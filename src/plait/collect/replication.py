"""Replication of events to the lake, incremental, crash-safe and idempotent.

Events are numbered in arrival order (``events.seq``). A run first learns a *watermark*: a
``seq`` below which every writing transaction has finished (SQLite has one writer at a
time; on PostgreSQL writers hold a shared advisory lock that the run takes exclusively for
an instant). It records the next range ``(seq_from, seq_to]`` as a numbered batch
(committed), writes one Parquet file per day for that range
(``events/date=YYYY-MM-DD/batch-N.parquet``, atomically), then marks the batch done. A run
that dies in between leaves an unfinished batch, which the next run writes again under the
same file names: no duplicates, no gaps, and no per-row bookkeeping on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import committed_seq, events
from plait.core.clock import utcnow
from plait.core.db import UTCDateTime, exclusive_job, metadata, read, write
from plait.core.lake import lake_filesystem, remove_stale_temporaries, write_parquet
from plait.core.settings import Settings
from plait.core.sources import sources

lake_batches = sa.Table(
    "lake_batches",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("seq_from", sa.BigInteger, nullable=False),
    sa.Column("seq_to", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("row_count", sa.Integer, nullable=False, default=0),
)

_TIME = pa.timestamp("us", tz="UTC")
LAKE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("seq", pa.int64()),
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
        ("identity_kind", pa.string()),
        ("identity_value", pa.string()),
        ("revenue", pa.float64()),
        ("currency", pa.string()),
        ("contactable", pa.bool_()),
        ("lifecycle_stage", pa.string()),
    ]
)
LAKE_FORMAT = "2"
"""Bumped when the lake's columns change; a lake of another format is rebuilt on next sync."""
_DERIVED_COLUMNS = ("revenue", "currency", "contactable", "lifecycle_stage")
_STORED_COLUMNS = [name for name in LAKE_SCHEMA.names if name not in _DERIVED_COLUMNS]
_DERIVED_SQL = """
SELECT *,
  coalesce(
    TRY_CAST(properties->>'$.revenue' AS DOUBLE),
    TRY_CAST(properties->>'$.total' AS DOUBLE),
    TRY_CAST(properties->>'$.value' AS DOUBLE)
  ) AS revenue,
  upper(nullif(trim(properties->>'$.currency'), '')) AS currency,
  coalesce(
    contains(coalesce(traits->>'$.email', context->>'$.traits.email'), '@')
    OR nullif(trim(coalesce(traits->>'$.phone', context->>'$.traits.phone')), '') IS NOT NULL,
    false
  ) AS contactable,
  lower(nullif(trim(coalesce(
    traits->>'$.lifecycle_stage', traits->>'$.lifecycleStage', traits->>'$.lifecyclestage',
    context->>'$.traits.lifecycle_stage', context->>'$.traits.lifecycleStage'
  )), '')) AS lifecycle_stage
FROM batch
"""
_JSON_COLUMNS = frozenset({"traits", "properties", "context", "warnings"})
_UUID_COLUMNS = frozenset({"id", "source_id"})
_TIME_COLUMNS = frozenset({"timestamp", "original_timestamp", "sent_at", "received_at"})
DEFAULT_BATCH_ROWS = 100_000
FORMAT_MARKER = "events-format"


@dataclass
class SyncReport:
    """What one sync wrote (nothing if another process was syncing)."""

    batches: int = 0
    rows: int = 0
    files: list[str] = field(default_factory=list)


def sync_lake(
    engine: Engine, settings: Settings, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> SyncReport:
    """Replicate every event committed before the run started; safe to run again at any
    point. Events that arrive meanwhile wait for the next run: chasing them would write a
    file of a few events per turn, as fast as the loop goes, while events keep coming."""
    report = SyncReport()
    with exclusive_job(engine, "lake-sync") as running:
        if not running:
            return report
        remove_stale_temporaries(settings.lake)
        _rebuild_if_outdated(engine, settings.lake)
        watermark = committed_seq(engine)
        with duckdb.connect() as duck:
            while True:
                batch = _unfinished_batch(engine) or _next_batch(engine, batch_rows, watermark)
                if batch is None:
                    return report
                batch_id, seq_from, seq_to = batch
                with read(engine) as conn:
                    table = _range_table(conn, duck, seq_from, seq_to)
                report.files.extend(_write_days(table, settings.lake, batch_id))
                with write(engine) as conn:
                    conn.execute(
                        lake_batches.update()
                        .where(lake_batches.c.id == batch_id)
                        .values(completed_at=utcnow(), row_count=table.num_rows)
                    )
                report.batches += 1
                report.rows += table.num_rows


def _rebuild_if_outdated(engine: Engine, location: str) -> None:
    """Start the lake over when it was written in an older format (the events table is the
    system of record, so the lake can always be rewritten from it). Crash-safe: the marker
    is written last, so an interrupted rebuild starts again."""
    stored = _lake_format(location)
    if stored == LAKE_FORMAT:
        return
    filesystem, root = lake_filesystem(location)
    events_dir = f"{root.rstrip('/')}/events"
    if stored is not None or filesystem.get_file_info(events_dir).type != pafs.FileType.NotFound:
        with write(engine) as conn:
            conn.execute(lake_batches.delete())
        filesystem.delete_dir_contents(events_dir, missing_dir_ok=True)
    _mark_format(location)


def _lake_format(location: str) -> str | None:
    filesystem, root = lake_filesystem(location)
    marker = f"{root.rstrip('/')}/{FORMAT_MARKER}"
    if filesystem.get_file_info(marker).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(marker) as stream:
        return stream.read().decode().strip()


def _mark_format(location: str) -> None:
    filesystem, root = lake_filesystem(location)
    filesystem.create_dir(root, recursive=True)
    with filesystem.open_output_stream(f"{root.rstrip('/')}/{FORMAT_MARKER}") as stream:
        stream.write(LAKE_FORMAT.encode())


def replicated_seq(conn: Connection) -> int:
    """The highest ``seq`` whose batch has been recorded (finished or not)."""
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(lake_batches.c.seq_to), 0))).scalar()


def pending_count(conn: Connection) -> int:
    """Events not yet in a finished lake batch."""
    unfinished_from = conn.execute(
        sa.select(sa.func.min(lake_batches.c.seq_from)).where(lake_batches.c.completed_at.is_(None))
    ).scalar()
    since = replicated_seq(conn) if unfinished_from is None else unfinished_from
    return conn.execute(
        sa.select(sa.func.count()).select_from(events).where(events.c.seq > since)
    ).scalar_one()


def _unfinished_batch(engine: Engine) -> tuple[int, int, int] | None:
    with read(engine) as conn:
        row = conn.execute(
            sa.select(lake_batches.c.id, lake_batches.c.seq_from, lake_batches.c.seq_to)
            .where(lake_batches.c.completed_at.is_(None))
            .order_by(lake_batches.c.id)
            .limit(1)
        ).first()
    return tuple(row) if row else None


def _next_batch(engine: Engine, batch_rows: int, watermark: int) -> tuple[int, int, int] | None:
    with write(engine) as conn:
        seq_from = replicated_seq(conn)
        if watermark <= seq_from:
            return None
        limit_seq = conn.execute(
            sa.select(events.c.seq)
            .where(events.c.seq > seq_from, events.c.seq <= watermark)
            .order_by(events.c.seq)
            .offset(batch_rows - 1)
            .limit(1)
        ).scalar()
        seq_to = limit_seq if limit_seq is not None else watermark
        batch_id = conn.execute(
            lake_batches.insert()
            .values(seq_from=seq_from, seq_to=seq_to, created_at=utcnow(), row_count=0)
            .returning(lake_batches.c.id)
        ).scalar_one()
    return batch_id, seq_from, seq_to


def _lake_column(name: str, dialect: str) -> Any:
    """A column as the lake wants it, converted by the database rather than row by row.

    On PostgreSQL every column leaves as CSV text: times as microseconds since the epoch, so
    Arrow reads integers whatever the session's time zone."""
    if name == "source":
        return sources.c.name.label("source")
    column = events.c[name]
    if name in _JSON_COLUMNS:
        text = (
            sa.cast(column, sa.Text)
            if dialect == "postgresql"
            else sa.type_coerce(column, sa.String)
        )
        return sa.func.nullif(text, "null").label(name)
    if dialect == "postgresql":
        if name in _UUID_COLUMNS:
            return sa.cast(column, sa.Text).label(name)
        if name in _TIME_COLUMNS:
            micros = sa.extract("epoch", column) * 1_000_000
            return sa.cast(micros, sa.BigInteger).label(name)
        return column
    if name in _UUID_COLUMNS:
        raw = sa.type_coerce(column, sa.String)
        parts = [
            sa.func.substr(raw, start, length)
            for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
        ]
        dashed = parts[0]
        for part in parts[1:]:
            dashed = dashed.concat("-").concat(part)
        return sa.func.lower(dashed).label(name)
    if name in _TIME_COLUMNS:
        return sa.type_coerce(column, sa.String()).label(name)
    return column


_STORED_SCHEMA = pa.schema([LAKE_SCHEMA.field(name) for name in _STORED_COLUMNS])


def _range_table(
    conn: Connection, duck: duckdb.DuckDBPyConnection, seq_from: int, seq_to: int
) -> pa.Table:
    dialect = conn.dialect.name
    query = (
        sa.select(*(_lake_column(name, dialect) for name in _STORED_COLUMNS))
        .join(sources, sources.c.id == events.c.source_id)
        .where(events.c.seq > seq_from, events.c.seq <= seq_to)
        .order_by(events.c.seq)
    )
    read_range = _copied_table if dialect == "postgresql" else _fetched_table
    return _with_derived_columns(duck, read_range(conn, query))


def _copied_table(conn: Connection, query: sa.Select) -> pa.Table:
    """PostgreSQL's rows as one CSV stream (``COPY … TO STDOUT``) parsed by Arrow: no Python
    object per value, half the CPU of fetching rows."""
    sql = query.compile(conn, compile_kwargs={"literal_binds": True})
    data = bytearray()
    with conn.connection.driver_connection.cursor().copy(
        f"COPY ({sql}) TO STDOUT (FORMAT csv)"
    ) as copy:
        for chunk in copy:
            data += chunk
    if not data:  # every event of the range was erased since it was claimed
        return _STORED_SCHEMA.empty_table()
    as_read = {
        name: pa.int64() if name in _TIME_COLUMNS else _STORED_SCHEMA.field(name).type
        for name in _STORED_COLUMNS
    }
    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=_STORED_COLUMNS),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=as_read,
            null_values=[""],  # NULL is an unquoted empty field; "" is an empty string
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return _typed(table)


def _fetched_table(conn: Connection, query: sa.Select) -> pa.Table:
    """SQLite's rows, fetched and turned column by column into Arrow arrays."""
    rows = conn.execute(query).all()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(_STORED_COLUMNS)
    arrays = [
        pa.array(values, pa.string() if name in _TIME_COLUMNS else _STORED_SCHEMA.field(name).type)
        for name, values in zip(_STORED_COLUMNS, columns, strict=True)
    ]
    return _typed(pa.Table.from_arrays(arrays, names=_STORED_COLUMNS))


def _typed(table: pa.Table) -> pa.Table:
    """``table`` with its times (microseconds, or SQLite's text) as UTC timestamps."""
    arrays = [
        table[name].cast(pa.timestamp("us")).cast(_TIME) if name in _TIME_COLUMNS else table[name]
        for name in _STORED_COLUMNS
    ]
    return pa.Table.from_arrays(arrays, schema=_STORED_SCHEMA)


def _with_derived_columns(duck: duckdb.DuckDBPyConnection, batch: pa.Table) -> pa.Table:
    """Add the typed columns analytics read (revenue, contactability, stage), extracted
    from the JSON columns set-wise by DuckDB so no engine has to parse JSON at query time."""
    duck.register("batch", batch)
    try:
        return duck.sql(_DERIVED_SQL).to_arrow_table().cast(LAKE_SCHEMA)
    finally:
        duck.unregister("batch")


def _write_days(table: pa.Table, location: str, batch_id: int) -> list[str]:
    if table.num_rows == 0:
        return []
    if _lake_format(location) is None:
        _mark_format(location)
    days = pc.strftime(table["timestamp"], format="%Y-%m-%d")
    written = []
    for day in pc.unique(days).to_pylist():
        part = table.filter(pc.equal(days, day))
        written.append(
            write_parquet(part, location, f"events/date={day}/batch-{batch_id:010d}.parquet")
        )
    return written
