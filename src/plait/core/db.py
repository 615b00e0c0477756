"""The operational database: one SQLAlchemy engine per URL, shared column types, metadata.

SQLite (WAL) is the embedded default; PostgreSQL is selected by URL. Writes go through
:func:`write`, which on SQLite takes the write lock up front (``BEGIN IMMEDIATE``) so
concurrent writers wait for each other instead of failing.
"""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from plait.core.settings import Settings

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSONValue = sa.JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    PostgreSQL stores ``timestamptz``. SQLite stores fixed-width text
    (``YYYY-MM-DD HH:MM:SS.ffffff``, the layout SQLAlchemy uses), which sorts and compares
    correctly as text and converts in C both ways.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(26))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if dialect.name == "sqlite":
            if value.tzinfo is not UTC:  # Plait's own times already are: half the cost
                value = value.astimezone(UTC)
            return value.isoformat(sep=" ", timespec="microseconds")[:26]
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


_engines: dict[str, Engine] = {}


def get_engine(settings: Settings) -> Engine:
    """The engine for the settings' database URL, created once per process."""
    url = settings.database_url
    if url not in _engines:
        _engines[url] = create_engine(settings)
    return _engines[url]


PING_AFTER_IDLE_SECONDS = 10.0
"""A pooled PostgreSQL connection idle this long is checked before use (one round trip);
checking every checkout, as ``pool_pre_ping`` does, cost a busy writer a round trip per
transaction."""


def _ping_when_idle(engine: Engine) -> None:
    """Replace a pooled connection that the server dropped (a restart, an idle timeout)
    before it is used, if it sat idle long enough for that to be likely."""

    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc


def _process_name() -> str:
    """How PostgreSQL's ``pg_stat_activity`` names this process's connections: ``plait``,
    or a Plait background process's own name (``plait-upkeep``)."""
    name = multiprocessing.current_process().name
    return name if name.startswith("plait-") else "plait"


def create_engine(settings: Settings) -> Engine:
    """A new engine; on SQLite the data directory is created and WAL is switched on."""
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        engine = sa.create_engine(
            url,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            # In UTC, psycopg returns timestamps with ``datetime.UTC`` itself: nothing to
            # convert per row (a named zone, even ``Etc/UTC``, costs a conversion per value).
            connect_args={
                "options": f"{url.query.get('options', '')} -c TimeZone=UTC".strip(),
                "application_name": url.query.get("application_name", _process_name()),
            },
            pool_size=10,
            max_overflow=20,
        )
        _ping_when_idle(engine)
        return engine
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=10,
        max_overflow=20,
    )
    synchronous = settings.sqlite_synchronous

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Writers checkpoint only past ~80 MB of WAL; `plait serve` checkpoints every second.
        cursor.execute("PRAGMA wal_autocheckpoint=20000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("plait_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write(
    engine: Engine, *, journal_in_memory: bool = False, on: Connection | None = None
) -> Iterator[Connection]:
    """A transaction meant to write: committed on success, rolled back on error.

    On SQLite, Plait's writers queue on a lock file (threads and processes alike) rather
    than polling SQLite's busy handler, which sleeps and wakes late under load.

    ``journal_in_memory`` keeps SQLite's statement journals in memory for this transaction:
    a multi-row INSERT copies each page it is the first to change there, and in a file that
    was half of the ingest writer's system calls. Only for transactions of small statements:
    the same setting keeps every sort in memory too.

    ``on`` is an open connection of ``engine`` to write on, for a writer that keeps its own
    (and with it SQLite's page cache); it stays open. Otherwise one comes from the pool.
    """
    in_memory = journal_in_memory and engine.dialect.name == "sqlite"
    with (
        _sqlite_writer_lock(engine),
        nullcontext(on) if on is not None else engine.connect() as conn,  # once locked
    ):
        conn = conn.execution_options(plait_write=True)
        driver = conn.connection.driver_connection
        if in_memory:  # on the driver: outside the transaction, which has not begun
            driver.execute("PRAGMA temp_store=MEMORY")
        try:
            with conn.begin():
                yield conn
        finally:
            if in_memory:
                driver.execute("PRAGMA temp_store=DEFAULT")


_thread_locks: dict[str, threading.Lock] = {}
_lock_files: dict[str, int] = {}
_registry_lock = threading.Lock()


def sqlite_file(engine: Engine) -> str | None:
    """The path of ``engine``'s database if it is a SQLite file (not PostgreSQL, not in memory)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return database


def _lock_path(engine: Engine, name: str) -> str | None:
    database = sqlite_file(engine)
    return None if database is None else f"{database}.{name}.lock"


def _lock_file(path: str) -> int:
    with _registry_lock:
        if path not in _lock_files:
            _lock_files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            _thread_locks[path] = threading.Lock()
        return _lock_files[path]


@contextmanager
def _sqlite_writer_lock(engine: Engine) -> Iterator[None]:
    path = _lock_path(engine, "write")
    if path is None:
        yield
        return
    descriptor = _lock_file(path)
    with _thread_locks[path]:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)


@contextmanager
def exclusive_job(engine: Engine, name: str) -> Iterator[bool]:
    """Try to become the one process running job ``name``; yields whether it did.

    PostgreSQL: a session advisory lock; SQLite: a lock file beside the database.
    """
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:7])
        with engine.connect() as conn:
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()
            conn.commit()
            try:
                yield bool(got)
            finally:
                if got:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                    conn.commit()
        return
    path = _lock_path(engine, name)
    if path is None:
        yield True
        return
    descriptor = _lock_file(path)
    if not _thread_locks[path].acquire(blocking=False):
        yield False
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        _thread_locks[path].release()


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only unit of work (one consistent snapshot)."""
    with engine.connect() as conn, conn.begin():
        yield conn


@dataclass(frozen=True)
class InsertPlan:
    """A driver-level INSERT for some columns of a table, with their bind processors."""

    target: str
    row_marker: str
    suffix: str
    names: tuple[str, ...]
    processors: tuple[Any, ...]
    result_processors: tuple[Any, ...]

    @property
    def head(self) -> str:
        return f"INSERT INTO {self.target}"

    @property
    def sql(self) -> str:
        """The one-row statement (for ``executemany``)."""
        return f"{self.head} VALUES {self.row_marker}{self.suffix}"

    def execute(self, conn: Connection, params: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Insert bound rows; returns what a RETURNING suffix returns. PostgreSQL takes plain
        inserts through COPY; SQLite takes many rows per statement. Both are several times
        cheaper than ``executemany``."""
        if not params:
            return []
        if conn.dialect.name != "sqlite":
            if self.suffix:
                return [tuple(r) for p in params for r in conn.exec_driver_sql(self.sql, p)]
            statement = f"COPY {self.target} FROM STDIN"
            cursor = conn.connection.driver_connection.cursor()
            dbapi_error = conn.dialect.loaded_dbapi.Error
            try:
                with cursor.copy(statement) as copy:
                    for row in params:
                        copy.write_row(row)
            except dbapi_error as exc:  # report it as SQLAlchemy would
                raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi_error) from exc
            return []
        returned: list[Any] = []
        per_statement = max(1, _SQLITE_MAX_VARIABLES // len(self.names))
        for start in range(0, len(params), per_statement):
            chunk = params[start : start + per_statement]
            sql = f"{self.head} VALUES {', '.join([self.row_marker] * len(chunk))}{self.suffix}"
            result = conn.exec_driver_sql(sql, tuple(chain.from_iterable(chunk)))
            if self.suffix:
                returned.extend(tuple(row) for row in result)
        return returned

    def unbind(self, params: tuple[Any, ...]) -> dict[str, Any]:
        """A bound row read back as Python values, as a query of the table would return them."""
        return {
            name: process(value) if process else value
            for name, process, value in zip(self.names, self.result_processors, params, strict=True)
        }

    def bind(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Rows as the driver's parameter tuples (what SQLAlchemy would send)."""
        pairs = tuple(zip(self.names, self.processors, strict=True))
        return [
            tuple(process(row.get(name)) if process else row.get(name) for name, process in pairs)
            for row in rows
        ]


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys; no column defaults are applied) the cheapest
    way the database takes many: COPY on PostgreSQL, many rows per statement on SQLite."""
    bound_insert(conn.dialect, table, rows)(conn)


Write = Callable[[Connection], Any]
"""A write bound for the driver ahead of time: a transaction holding the writer runs it."""


def bound_insert(dialect: sa.Dialect, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> Write:
    """:func:`insert_rows`, with the rows bound now and inserted when the result is called."""
    if not rows:
        return in_order()
    plan = insert_plan(dialect, table, list(rows[0]))
    return partial(plan.execute, params=plan.bind(rows))


def bound_update(
    dialect: sa.Dialect,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str = "id",
) -> Write:
    """UPDATE ``table`` SET each row's other keys WHERE ``key`` matches, one statement
    executed per row by the driver; the rows (each with the same keys) are bound now."""
    if not rows:
        return in_order()
    names = [name for name in rows[0] if name != key] + [key]
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    preparer = dialect.identifier_preparer
    assignments = ", ".join(f"{preparer.format_column(table.c[n])} = {marker}" for n in names[:-1])
    sql = (
        f"UPDATE {preparer.format_table(table)} SET {assignments} "
        f"WHERE {preparer.format_column(table.c[key])} = {marker}"
    )
    processors = [table.c[name].type._cached_bind_processor(dialect) for name in names]
    params = [
        tuple(
            process(row[name]) if process else row[name]
            for name, process in zip(names, processors, strict=True)
        )
        for row in rows
    ]
    return lambda conn: conn.exec_driver_sql(sql, params)


def in_order(*writes: Write) -> Write:
    """One write that runs ``writes`` one after another (none: a write that does nothing)."""

    def run(conn: Connection) -> None:
        for each in writes:
            each(conn)

    return run


_plans: dict[tuple[str, str, tuple[str, ...], str], InsertPlan] = {}
_SQLITE_MAX_VARIABLES = 32_000


def _json_text(value: Any) -> str | None:
    """A JSON column's value as text, which COPY hands to PostgreSQL to parse."""
    return None if value is None else _json_dumps(value)


def insert_plan(
    dialect: sa.Dialect, table: sa.Table, names: Sequence[str], suffix: str = ""
) -> InsertPlan:
    """The INSERT of ``names`` into ``table`` for ``dialect`` (built once, then cached);
    ``suffix`` is appended, e.g. ``ON CONFLICT DO NOTHING RETURNING …``."""
    key = (dialect.name, table.name, tuple(names), suffix)
    if key not in _plans:
        columns = [table.c[name] for name in names]
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        preparer = dialect.identifier_preparer
        target = (
            f"{preparer.format_table(table)} "
            f"({', '.join(preparer.format_column(c) for c in columns)})"
        )
        copying = dialect.name == "postgresql" and not suffix
        processors = tuple(
            _json_text
            if copying and isinstance(column.type, sa.JSON)
            else column.type._cached_bind_processor(dialect)
            for column in columns
        )
        row_marker = f"({', '.join(marker for _ in columns)})"
        _plans[key] = InsertPlan(
            target,
            row_marker,
            f" {suffix}" if suffix else "",
            tuple(names),
            processors,
            tuple(column.type._cached_result_processor(dialect, None) for column in columns),
        )
    return _plans[key]


def checkpoint(engine: Engine) -> None:
    """Copy SQLite's write-ahead log into the database without blocking anyone."""
    if engine.dialect.name != "sqlite":
        return
    connection = engine.raw_connection()
    try:
        connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        connection.close()


def analyze(engine: Engine) -> None:
    """Refresh the query planner's statistics. SQLite never gathers them by itself (without
    them it can pick a poor index); a sampled ANALYZE keeps this cheap on large tables.
    PostgreSQL's autovacuum does it, but not at once after a bulk load."""
    connection = engine.raw_connection()
    try:
        cursor = connection.driver_connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("PRAGMA analysis_limit=1000")
        cursor.execute("ANALYZE")
        connection.commit()
    finally:
        connection.close()


def dispose_engines() -> None:
    """Close every pooled connection (tests and forked workers call this)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def dialect_insert(conn: Connection) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING / DO UPDATE."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def escape_like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern whose escape character is a backslash."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def among(
    column: sa.ColumnElement[Any], values: Iterable[Any], dialect: str
) -> sa.ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(array)``, one parameter whatever the
    number of values, so the statement's text stays the same and the driver parses it once
    (an ``IN`` list is written out afresh for every count). On SQLite a long list travels
    as one JSON array, read back by ``json_each``, for the same reason."""
    if dialect == "postgresql":
        array = sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column == sa.any_(array)
    values = list(values)
    if dialect == "sqlite" and len(values) > _SQLITE_JSON_LIST_FROM:
        process = column.type._cached_bind_processor(_SQLITE)
        stored = [process(value) for value in values] if process else values
        listed = sa.func.json_each(sa.bindparam(None, orjson.dumps(stored).decode()))
        return column.in_(sa.select(sa.column("value")).select_from(listed))
    return column.in_(values)


_SQLITE = sqlite.dialect()
_SQLITE_JSON_LIST_FROM = 64
"""Below this many values a plain ``IN`` list is quicker on SQLite (no JSON to parse)."""


def chunks(values: Iterable[Any], size: int = 2000) -> Iterator[list[Any]]:
    """``values`` in lists of at most ``size``: how long ``IN`` lists are sent."""
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
