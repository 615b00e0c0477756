"""The event store's group committer: concurrent tracking requests share one transaction,
and each is acknowledged once its events are durable (see :mod:`plait.core.group_commit`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine

from plait.collect.event_store import Batch, Stored, store_groups
from plait.core.db import write
from plait.core.group_commit import GroupWorker

POSTGRES_WRITERS = 2
"""How many groups are written to PostgreSQL at once: while one waits for the server (its
COPY, its WAL flush), the next is written. Ingest bench: 10,900 -> 11,800 events/s; more did
no better. SQLite has one writer, so it gets one thread."""


class GroupCommitter:
    """Writer threads; :meth:`store` blocks until the caller's rows are committed."""

    def __init__(self, engine: Engine, *, max_rows: int = 10_000) -> None:
        self.engine = engine
        self._worker: GroupWorker[Batch, Stored] = GroupWorker(
            self._commit,
            name="plait-group-commit",
            max_size=max_rows,
            size=lambda batch: len(batch.rows),
            writers=POSTGRES_WRITERS if engine.dialect.name == "postgresql" else 1,
        )

    def store(self, rows: Sequence[dict[str, Any]], rejected: Sequence[dict]) -> Stored:
        """Queue rows for the next group and wait for the commit (or its error).

        The rows are bound for the driver here, on the caller's thread, so the writer
        thread — the one serial stage — only executes and commits.
        """
        return self._worker.submit(Batch.bound(self.engine.dialect, rows, rejected))

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        self._worker.close()

    def _commit(self, batches: Sequence[Batch]) -> list[Stored]:
        with write(self.engine, journal_in_memory=True) as conn:
            return store_groups(conn, batches)
