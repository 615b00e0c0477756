"""Group commit: one writer thread stores the events of every request waiting at that
moment in a single transaction, then acknowledges each of them.

A commit that has to reach the disk (SQLite with ``synchronous=FULL``, PostgreSQL's WAL
flush) costs milliseconds; paying it once per group instead of once per request is what
lets one server take tens of thousands of events per second while still answering only
after the events are durable."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy.engine import Engine

from plait.collect.event_store import Batch, Stored, store_groups
from plait.core.db import write

_STOP = object()


class GroupCommitter:
    """A writer thread; :meth:`store` blocks until the caller's rows are committed."""

    def __init__(self, engine: Engine, *, max_rows: int = 10_000) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="plait-group-commit", daemon=True)
        self._thread.start()

    def store(self, rows: Sequence[dict[str, Any]], rejected: Sequence[dict]) -> Stored:
        """Queue rows for the next group and wait for the commit (or its error).

        The rows are bound for the driver here, on the caller's thread, so the writer
        thread — the one serial stage — only executes and commits.
        """
        done: Future[Stored] = Future()
        batch = Batch.bound(self.engine.dialect, rows, rejected)
        self._queue.put((batch, done))
        return done.result()

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            group, size = [first], len(first[0].rows)
            while size < self.max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)
                size += len(item[0].rows)
            self._commit(group)

    def _commit(self, group: list[tuple[Batch, Future[Stored]]]) -> None:
        """Commit the group; if that fails, commit each request alone, so one bad request
        fails only itself."""
        try:
            with write(self.engine) as conn:
                outcomes = store_groups(conn, [batch for batch, _done in group])
        except Exception as exc:
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            for item in group:
                self._commit([item])
            return
        except BaseException as exc:  # every waiter must hear of the failure
            for _batch, done in group:
                done.set_exception(exc)
            raise
        for (_batch, done), outcome in zip(group, outcomes, strict=True):
            done.set_result(outcome)
