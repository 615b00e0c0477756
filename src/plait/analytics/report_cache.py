"""A process-wide cache of report results, so the API and the dashboard pages answer from
memory after the first request. A result is keyed by the report, its arguments, the
settings that shape it and the state of the lake and identity map, read cheaply from the
database: a lake sync or an identity-map export makes new keys, so nothing goes stale.
Reports not cached yet run on a shared ``Workspace`` for the same settings and state, which
reads the lake once for all of them. Dashboard pages read through ``dashboard_snapshot``: after
a change they show the state before while the new one is read in the background."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.analytics.inputs import Workspace
from plait.analytics.period import Period
from plait.collect.replication import lake_batches, replicated_seq
from plait.core.db import read
from plait.core.settings import Settings
from plait.identity.graph import identity_progress

MAX_ENTRIES = 128
MAX_WORKSPACES = 2
"""Workspaces kept, each with the lake's history in memory: the current state's and one more
(other settings, or the state before); a report still running keeps its own alive."""
Report = Callable[..., pd.DataFrame]
DataKey = tuple[Hashable, ...]
"""What results depend on besides the report and its arguments (see ``data_key``)."""
log = logging.getLogger("plait.analytics.report_cache")


class ReportCache:
    """A bounded least-recently-used map from keys to report results, safe across threads.
    Reports run outside the lock, so a slow one does not hold up the others."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> pd.DataFrame | None:
        """A copy of the result stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
        return found.copy(deep=True)

    def put(self, key: Hashable, result: pd.DataFrame) -> None:
        """Keep a copy of ``result``, dropping the least recently used beyond the bound."""
        kept = result.copy(deep=True)
        with self._lock:
            self._entries[key] = kept
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every result."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


REPORTS = ReportCache()
"""The cache every caller in this process shares."""


class Workspaces:
    """The most recently used workspaces by settings and data state, safe across threads."""

    def __init__(self, max_entries: int = MAX_WORKSPACES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[DataKey, Workspace] = OrderedDict()
        self._preparing: set[DataKey] = set()
        self._lock = threading.Lock()

    def get(self, key: DataKey, settings: Settings) -> Workspace:
        """The workspace for ``key``, opened for ``settings`` if there is none yet."""
        with self._lock:
            return self._open(key, settings)

    def serving(
        self, key: DataKey, settings: Settings
    ) -> tuple[DataKey, Workspace, Callable[[], None] | None]:
        """The workspace for ``key`` once its history is read. Until then, if a workspace
        for the same settings has read an earlier state, that one and its key, with a
        function that starts reading the new state in the background (None when there is
        nothing to start: a read of this settings' data is already under way)."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found.ready:
                self._entries.move_to_end(key)
                self._trim(key)
                return key, found, None
            earlier = self._newest_ready(key[:-1])
            if earlier is None:
                return key, self._open(key, settings), None
            if any(other[:-1] == key[:-1] for other in self._preparing):
                return *earlier, None  # one state at a time; the newest is read after it
            self._preparing.add(key)
            found = self._open(key, settings)

        def start() -> None:
            threading.Thread(
                target=self._prepare, args=(key, found), name="plait-workspace", daemon=True
            ).start()

        return *earlier, start

    def clear(self) -> None:
        """Forget every workspace (reports running on one finish on it)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _open(self, key: DataKey, settings: Settings) -> Workspace:
        """The workspace for ``key``, opened if new, now the most recently used."""
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = Workspace(settings)
        self._entries.move_to_end(key)
        self._trim(key)
        return found

    def _trim(self, key: DataKey) -> None:
        """Drop the least recently used beyond the bound, but not ``key``, one being read
        or the newest one read of each settings (it answers while the next is read)."""
        groups = {other[:-1] for other in self._entries}
        newest = (self._newest_ready(group) for group in groups)
        kept = {key, *self._preparing, *(entry[0] for entry in newest if entry is not None)}
        for old in list(self._entries):
            if len(self._entries) <= self.max_entries:
                break
            if old not in kept:
                del self._entries[old]

    def _newest_ready(self, group: DataKey) -> tuple[DataKey, Workspace] | None:
        """The workspace for the settings and place ``group`` whose history was read last."""
        ready = [
            (workspace.ready_at, key, workspace)
            for key, workspace in self._entries.items()
            if key[:-1] == group and workspace.ready_at is not None
        ]
        if not ready:
            return None
        _, key, workspace = max(ready, key=lambda entry: entry[0])
        return key, workspace

    def _prepare(self, key: DataKey, workspace: Workspace) -> None:
        try:
            workspace.prepare(threads=1)  # a core stays free for the pages it serves
        except Exception:
            log.exception("reading the lake's new state into a workspace failed")
        finally:
            with self._lock:
                self._preparing.discard(key)
                self._trim(key)


WORKSPACES = Workspaces()
"""The workspaces every caller in this process shares."""


@dataclass(frozen=True)
class Snapshot:
    """One state of the lake, identity map and settings, and the workspace that reads it:
    the reports a page reads from one snapshot agree with each other."""

    data: DataKey
    workspace: Workspace

    def report(self, report: Report, period: Period, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """``report(settings, period, *args, **kwargs)`` on this state (reports on one
        workspace take turns), or a copy of the same result computed before."""
        key = report_key(report, period, args, kwargs, self.data)
        found = REPORTS.get(key)
        if found is not None:
            return found
        result = self.workspace.run(report, period, *args, **kwargs)
        REPORTS.put(key, result)  # stores its own copy, so ``result`` is the caller's
        return result


def snapshot(engine: Engine, settings: Settings) -> Snapshot:
    """The lake's current state (its history is read now if it was not yet)."""
    data = data_key(engine, settings)
    return Snapshot(data, WORKSPACES.get(data, settings))


@contextmanager
def dashboard_snapshot(engine: Engine, settings: Settings) -> Iterator[Snapshot]:
    """The state a dashboard page shows: the current one once its history is read; until
    then the newest state read before, and the current one is read in the background once
    the page has its figures (so the two do not compete for the cores). The first page
    after a sync is as fast as any other, one sync behind; only a process's first waits."""
    data, workspace, read_newer = WORKSPACES.serving(data_key(engine, settings), settings)
    try:
        yield Snapshot(data, workspace)
    finally:
        if read_newer is not None:
            read_newer()


def cached_report(
    engine: Engine,
    settings: Settings,
    report: Report,
    period: Period,
    *args: Any,
    **kwargs: Any,
) -> pd.DataFrame:
    """``report(settings, period, *args, **kwargs)`` on the lake's current state, computed
    on that state's workspace or copied from the same result computed before."""
    return snapshot(engine, settings).report(report, period, *args, **kwargs)


def report_key(
    report: Report,
    period: Period,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    data: DataKey,
) -> tuple[Hashable, ...]:
    """What a report's result depends on: the report, its arguments and ``data_key``."""
    return (
        f"{report.__module__}.{report.__qualname__}",
        (period.first.isoformat(), period.last.isoformat(), period.tz),
        _canonical([list(args), kwargs]),
        *data,
    )


def data_key(engine: Engine, settings: Settings) -> DataKey:
    """What every report's result depends on: the settings that shape it, where the lake
    and database are, and their state. The state is read first, so a result computed while
    the lake moves on is filed under the older state, never the newer."""
    with read(engine) as conn:
        state = data_state(conn)
    return (
        _canonical(
            [part.model_dump(mode="json") for part in (settings.analytics, settings.profiles)]
        ),
        settings.lake,
        engine.url.render_as_string(hide_password=True),
        state,
    )


def data_state(conn: Connection) -> tuple[int, int, int]:
    """The lake's replicated ``seq``, its unfinished batches (a batch is recorded before
    its files are written) and the exported identity map's version."""
    unfinished = conn.execute(
        sa.select(sa.func.count())
        .select_from(lake_batches)
        .where(lake_batches.c.completed_at.is_(None))
    ).scalar_one()
    exported = conn.execute(
        sa.select(identity_progress.c.exported_version).where(identity_progress.c.id == 1)
    ).scalar()
    return replicated_seq(conn), unfinished, exported or 0


def _canonical(value: Any) -> str:
    """A stable text form of plain values (lists and tuples alike, keys sorted)."""
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
