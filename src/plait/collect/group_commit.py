"""The event store's group committer: concurrent tracking requests share one transaction,
and each is acknowledged once its events are durable (see :mod:`plait.core.group_commit`)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import Batch, Stored, store_groups
from plait.core.db import write
from plait.core.group_commit import GroupWorker

POSTGRES_WRITERS = 2
"""How many groups are written to PostgreSQL at once: while one waits for the server (its
COPY, its WAL flush), the next is written. Ingest bench: 10,900 -> 11,800 events/s; more did
no better. SQLite has one writer, so it gets one thread."""

SQLITE_WRITER_CACHE_MIB = 64
"""The page cache of SQLite's writer connection (SQLite's default: 2 MiB). Every event enters
index B-trees at random places (its identity anchor, its message id); with their pages at
hand the events insert took 15 µs per event instead of 27 (single-writer bench, 100,000
events)."""


class EventWriter(Protocol):
    """What a server's ingestion stores events through: a :class:`GroupCommitter`, or on
    SQLite a :class:`~plait.collect.writer_process.WriterProcess`."""

    def store(self, rows: Sequence[dict[str, Any]], rejected: Sequence[dict]) -> Stored: ...

    def close(self) -> None: ...


class GroupCommitter:
    """Writer threads; :meth:`store` blocks until the caller's rows are committed."""

    def __init__(self, engine: Engine, *, max_rows: int = 10_000) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._tuned_driver: object = None
        self._worker: GroupWorker[Batch, Stored] = GroupWorker(
            self._commit,
            name="plait-group-commit",
            max_size=max_rows,
            size=len,
            writers=POSTGRES_WRITERS if engine.dialect.name == "postgresql" else 1,
        )

    def store(self, rows: Sequence[dict[str, Any]], rejected: Sequence[dict]) -> Stored:
        """Queue rows for the next group and wait for the commit (or its error).

        The rows are bound for the driver here, on the caller's thread, so the writer
        thread — the one serial stage — only executes and commits.
        """
        return self.enqueue(Batch.bound(self.engine.dialect, rows, rejected)).result()

    def enqueue(self, batch: Batch) -> Future[Stored]:
        """Queue a prepared batch for the next group without waiting for it."""
        return self._worker.enqueue(batch)

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        self._worker.close()
        if self._connection is not None:
            self._connection.close()

    def _commit(self, batches: Sequence[Batch]) -> list[Stored]:
        with write(self.engine, on=self._kept_connection()) as conn:
            return store_groups(conn, batches)

    def _kept_connection(self) -> Connection | None:
        """On SQLite, the writer thread's own connection, kept between groups, with a large
        page cache (:data:`SQLITE_WRITER_CACHE_MIB`) and its statement journals in memory.

        SQLite empties a connection's cache when it finds that another connection has
        committed since its last transaction. Taking the least recently used connection from
        the pool, the writer found that in 515 groups of 520 (ingest bench) and read every
        index page it needed again. Setting the journals once also spares each group two
        calls into SQLite, each a wait for the interpreter lock on the way back.
        """
        if self.engine.dialect.name != "sqlite":
            return None
        if self._connection is None:
            self._connection = self.engine.connect()
        driver = self._connection.connection.driver_connection
        if driver is not self._tuned_driver:  # a new one after an invalidated connection too
            driver.execute(f"PRAGMA cache_size=-{SQLITE_WRITER_CACHE_MIB * 1024}")
            driver.execute("PRAGMA temp_store=MEMORY")  # for good: see write()'s journal_in_memory
            self._tuned_driver = driver
        return self._connection
