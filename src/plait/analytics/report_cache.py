"""A process-wide cache of report results, so the API and the dashboard pages answer from
memory after the first request. A result is keyed by the report, its arguments, the
settings that shape it and the state of the lake and identity map, read cheaply from the
database: a lake sync or an identity-map export makes new keys, so nothing goes stale.
Reports not cached yet run on a shared ``Workspace`` for the same settings and state, which
reads the lake once for all of them."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
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
        self._entries: OrderedDict[Hashable, Workspace] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, settings: Settings) -> Workspace:
        """The workspace for ``key``, opened for ``settings`` if there is none yet."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                found = self._entries[key] = Workspace(settings)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return found

    def clear(self) -> None:
        """Forget every workspace (reports running on one finish on it)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


WORKSPACES = Workspaces()
"""The workspaces every caller in this process shares."""


def cached_report(
    engine: Engine,
    settings: Settings,
    report: Report,
    period: Period,
    *args: Any,
    **kwargs: Any,
) -> pd.DataFrame:
    """``report(settings, period, *args, **kwargs)`` run on the workspace of the lake's
    current state (reports on one workspace take turns), or a copy of the same result
    computed before against the same lake, identity map and settings."""
    data = data_key(engine, settings)
    key = report_key(report, period, args, kwargs, data)
    found = REPORTS.get(key)
    if found is not None:
        return found
    result = WORKSPACES.get(data, settings).run(report, period, *args, **kwargs)
    REPORTS.put(key, result)  # stores its own copy, so ``result`` is the caller's
    return result


def current_workspace(engine: Engine, settings: Settings) -> Workspace:
    """The workspace reports for ``settings`` run on while the lake stays as it is now."""
    return WORKSPACES.get(data_key(engine, settings), settings)


def report_key(
    report: Report,
    period: Period,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    data: tuple[Hashable, ...],
) -> tuple[Hashable, ...]:
    """What a report's result depends on: the report, its arguments and ``data_key``."""
    return (
        f"{report.__module__}.{report.__qualname__}",
        (period.first.isoformat(), period.last.isoformat(), period.tz),
        _canonical([list(args), kwargs]),
        *data,
    )


def data_key(engine: Engine, settings: Settings) -> tuple[Hashable, ...]:
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
