"""SQLite's ingest writer in a process of its own.

SQLite takes one writer at a time, so the group committer's thread is the serial stage of
ingestion. In the server's process it shares the interpreter lock with the request threads:
every call into SQLite lets go of the lock, and taking it back meant queueing behind them
(40 % of the writer's time, ingest bench). In a process of its own it has an interpreter to
itself. Requests still parse, enrich and bind their events on their own threads; only the
bound tuples (:meth:`~plait.collect.event_store.Batch.lean`) cross the pipe.

The writer process groups what it receives exactly as the thread does (one
:class:`~plait.collect.group_commit.GroupCommitter` inside it), answers each request once
its events are committed, and stops when told to or when the server's end of the pipe
closes (the server is gone, even killed outright).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import pickle
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy.engine import Engine

from plait.collect.event_store import Batch, Stored
from plait.collect.group_commit import EventWriter, GroupCommitter
from plait.core.db import get_engine, sqlite_file
from plait.core.errors import PlaitError
from plait.core.garbage import tune_for_serving
from plait.core.group_commit import settle
from plait.core.processes import name_process
from plait.core.settings import Settings

log = logging.getLogger("plait.writer")

WRITER_PROCESS_NAME = "plait-writer"

_STOP = b""
"""Sent to the writer process: store what you have, then exit."""


class WriterGone(PlaitError):
    """The writer process stopped before it answered: the events may or may not be stored."""

    status, code = 503, "writer_unavailable"


def event_writer(engine: Engine, settings: Settings, *, own_process: bool) -> EventWriter:
    """What a server's ingestion stores through: with ``own_process``, on a SQLite file, a
    :class:`WriterProcess`; otherwise a :class:`GroupCommitter` thread."""
    if own_process and sqlite_file(engine) is not None:
        return WriterProcess(settings)
    return GroupCommitter(engine)


class WriterProcess:
    """A writer process and the pipe to it; :meth:`store` blocks until the caller's events
    are committed there (or fails). A writer process that dies fails the requests waiting
    for it, with :class:`WriterGone`; the next request starts another."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dialect = get_engine(settings).dialect
        self._lock = threading.Lock()  # sending, and replacing a dead writer
        self._ids = itertools.count()
        self._closed = False
        self._writer = _Writer.start(settings, self._lock)

    @property
    def pid(self) -> int | None:
        return self._writer.process.pid

    def store(self, rows: Sequence[dict[str, Any]], rejected: Sequence[dict]) -> Stored:
        """Send rows to the writer process and wait for their commit (or its error).

        The rows are bound and pickled here, on the caller's thread."""
        return self.submit(Batch.bound(self.dialect, rows, rejected).lean()).result()

    def submit(self, batch: Batch) -> Future[Stored]:
        """Send a prepared batch; the future settles when the writer process answers."""
        done: Future[Stored] = Future()
        request_id = next(self._ids)
        message = pickle.dumps((request_id, batch), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._closed:
                raise WriterGone("the server is shutting down; send the events again")
            if self._writer.gone:
                log.warning("the writer process stopped; starting another")
                self._writer = _Writer.start(self.settings, self._lock)
            self._writer.pending[request_id] = done
            try:
                self._writer.connection.send_bytes(message)
            except OSError:  # it died just now: the next request starts another
                self._writer.pending.pop(request_id, None)
                raise WriterGone("the event writer stopped; send the events again") from None
        return done

    def close(self) -> None:
        """Let the writer process commit what it has, then wait for it to exit."""
        with self._lock:
            self._closed = True
            writer = self._writer
        writer.stop()


class _Writer:
    """One writer process: its pipe, the requests it has not answered, and the thread that
    reads its answers."""

    def __init__(self, process: Any, connection: Connection, lock: threading.Lock) -> None:
        self.process = process
        self.connection = connection
        self._lock = lock
        self.pending: dict[int, Future[Stored]] = {}
        self.gone = False
        self._answers = threading.Thread(
            target=self._read_answers, name="plait-writer-answers", daemon=True
        )
        self._answers.start()

    @classmethod
    def start(cls, settings: Settings, lock: threading.Lock) -> _Writer:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=serve_batches, args=(theirs, settings), name=WRITER_PROCESS_NAME, daemon=True
        )
        process.start()
        theirs.close()  # so the pipe ends (EOF here) when the writer process does
        return cls(process, ours, lock)

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # gone already
            self.connection.send_bytes(_STOP)
        self.process.join(timeout=60)
        if self.process.is_alive():
            log.error("the writer process did not stop within 60 s; terminating it")
            self.process.terminate()
            self.process.join(timeout=10)
        self._answers.join(timeout=10)
        self.connection.close()

    def _read_answers(self) -> None:
        while True:
            try:
                request_id, outcome, error = pickle.loads(self.connection.recv_bytes())
            except (EOFError, OSError):
                break
            done = self.pending.pop(request_id, None)
            if done is not None:
                settle(done, outcome, exception=error)
        with self._lock:  # no request joins ``pending`` once it is ``gone``
            self.gone = True
            lost, self.pending = self.pending, {}
        for done in lost.values():
            settle(
                done,
                exception=WriterGone(
                    "the event writer stopped before confirming these events; send them again"
                    " (events already stored are recognized by their messageId)"
                ),
            )


def serve_batches(connection: Connection, settings: Settings) -> None:
    """The writer process: store the batches received with group commit, answering each
    with its outcome, until a stop message or the end of the pipe."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    name_process(WRITER_PROCESS_NAME)
    tune_for_serving()
    committer = GroupCommitter(get_engine(settings))
    sending = threading.Lock()
    try:
        while True:
            try:
                message = connection.recv_bytes()
            except (EOFError, OSError):
                break
            if message == _STOP:
                break
            request_id, batch = pickle.loads(message)
            answer = partial(_answer, connection, sending, request_id)
            committer.enqueue(batch).add_done_callback(answer)
    finally:
        committer.close()
        connection.close()


def _answer(connection: Connection, sending: threading.Lock, request_id: int, done: Future) -> None:
    error = done.exception()
    message = (request_id, None if error else done.result(), _portable(error))
    with sending, contextlib.suppress(OSError):  # if the server is gone, no one is waiting
        connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _portable(error: BaseException | None) -> BaseException | None:
    """``error`` if it survives pickling, else a plain error with its message."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error
