"""Where analytics run: Ibis expressions over the event lake and the identity map, executed
by DuckDB in-process by default or by Spark (local or a cluster) with the same code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import ibis
import pandas as pd
import pyarrow.fs as pafs
from ibis import _

from plait.analytics.catalog import BACKENDS
from plait.collect.replication import LAKE_SCHEMA
from plait.core.errors import InvalidInput
from plait.core.ids import uuid7
from plait.core.lake import dataset_path, lake_filesystem
from plait.core.settings import Settings
from plait.identity.identity_map import IDENTITY_MAP_PATH, IDENTITY_MAP_SCHEMA

if TYPE_CHECKING:
    from ibis.backends import BaseBackend
    from pyspark.sql import SparkSession

Backend = Literal["duckdb", "pyspark"]
EVENT_COLUMNS = (
    "id",
    "seq",
    "type",
    "event",
    "channel",
    "traffic_campaign",
    "timestamp",
    "revenue",
    "currency",
    "contactable",
    "lifecycle_stage",
    "identity_kind",
    "identity_value",
)


def connect(
    settings: Settings, backend: str = "duckdb", *, session: SparkSession | None = None
) -> BaseBackend:
    """An Ibis backend to run analytics on: ``duckdb`` (in-process) or ``pyspark``."""
    if backend == "duckdb":
        con = ibis.duckdb.connect()
        # Ibis writes array lambdas as ``x -> …``, which DuckDB 1.4+ only accepts when asked.
        con.raw_sql("SET lambda_syntax = 'ENABLE_SINGLE_ARROW'")
        con.raw_sql("SET enable_progress_bar = false")  # no bars in servers' logs
        return con
    if backend == "pyspark":
        return ibis.pyspark.connect(session or spark_session(settings))
    raise InvalidInput(
        f"unknown analytics backend {backend!r}; use one of {', '.join(BACKENDS)}",
        field="backend",
    )


def spark_session(settings: Settings) -> SparkSession:
    """A Spark session for analytics (``analytics.spark_master``, local mode by default)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InvalidInput(
            "Spark analytics need PySpark: pip install 'plait[spark]'", field="backend"
        ) from None
    session = (
        SparkSession.builder.master(settings.analytics.spark_master)
        .appName("plait")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def materialize(con: BaseBackend, obj: ibis.Table | pd.DataFrame) -> ibis.Table:
    """Compute ``obj`` once into a temporary table of ``con``, for inputs read several times."""
    name = f"plait_{uuid7().hex}"
    if con.name == "duckdb":
        return con.create_table(name, obj, temp=True)
    table = obj if isinstance(obj, ibis.Table) else ibis.memtable(obj)
    view = con.create_view(name, table, overwrite=True)
    # Spark types literals its own way (1.0 is a decimal, row numbers int32): keep Ibis's.
    return view.cast(table.schema()).cache()


def release(con: BaseBackend, table: ibis.Table) -> None:
    """Free a DuckDB table ``materialize`` made, once nothing reads it any more (Spark keeps
    its cached views for the session)."""
    if con.name == "duckdb":
        con.drop_table(table.op().name, force=True)


def event_files(settings: Settings) -> dict[str, tuple[int, int]]:
    """The lake's event files (paths relative to the lake) with their size and modification
    time in nanoseconds."""
    filesystem, root = lake_filesystem(settings.lake)
    base = f"{root.rstrip('/')}/"
    selector = pafs.FileSelector(f"{base}events", recursive=True, allow_not_found=True)
    return {
        info.path[len(base) :]: (info.size, info.mtime_ns)
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File and info.path.endswith(".parquet")
    }


def lake_events(
    con: BaseBackend, settings: Settings, files: Iterable[str] | None = None
) -> ibis.Table:
    """Every event in the lake, with the columns analytics read; on DuckDB, only those of
    ``files`` (from ``event_files``) when given, so several reads see the same events."""
    files = sorted(event_files(settings) if files is None else files)
    if not files:
        return ibis.memtable(LAKE_SCHEMA.empty_table().select(list(EVENT_COLUMNS)))
    if con.name == "duckdb":
        paths = [dataset_path(settings.lake, name) for name in files]
        table = con.read_parquet(paths, hive_partitioning=True)
    else:
        table = con.read_parquet(dataset_path(settings.lake, "events"))
    return table.select(*EVENT_COLUMNS)


def identity_map_path(settings: Settings) -> str:
    """Where the identity map is (see ``identity.identity_map``)."""
    return dataset_path(settings.lake, IDENTITY_MAP_PATH)


def identity_map(con: BaseBackend, settings: Settings) -> ibis.Table:
    """Each identifier and the customer it belongs to now (see ``identity.identity_map``)."""
    filesystem, _ = lake_filesystem(settings.lake)
    path = identity_map_path(settings)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return ibis.memtable(IDENTITY_MAP_SCHEMA.empty_table())
    return con.read_parquet(path)


def anchor_customer(kind: ibis.StringValue, value: ibis.StringValue) -> ibis.StringValue:
    """The customer an identifier stands for while the map does not know it."""
    return kind.concat(":", value)


def customer_events(events: ibis.Table, identities: ibis.Table) -> ibis.Table:
    """Events with the customer each belongs to now, through the identity map on the
    event's anchor; an event whose anchor is not resolved yet stands for itself."""
    mapped = identities.select(map_kind=_.kind, map_value=_.value, customer_id=_.customer_id)
    joined = events.left_join(
        mapped,
        [events.identity_kind == mapped.map_kind, events.identity_value == mapped.map_value],
    )
    anchor = anchor_customer(joined.identity_kind, joined.identity_value)
    return joined.mutate(
        customer_id=ibis.cases(
            (joined.customer_id.notnull(), joined.customer_id),
            (joined.identity_value.notnull(), anchor),
            else_=ibis.literal("event:").concat(joined.seq.cast("string")),
        )
    ).drop("map_kind", "map_value", "identity_kind", "identity_value")
