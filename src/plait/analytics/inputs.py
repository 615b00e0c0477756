"""What every report starts from: the lake's *history* (each customer's sessions and
conversions, kept beside the lake: ``analytics.history``) and, for a period, the part of it the
reports read and the journeys built from it. A ``Workspace`` keeps all of this on one DuckDB
connection for one state of the lake, identity map and settings, so the reports run on it
(those of a page, and of every page until the data changes) share the work."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ibis
import pandas as pd
from ibis.backends import BaseBackend

from plait.analytics.conversions import milestones
from plait.analytics.engine import connect, materialize, release
from plait.analytics.history import History
from plait.analytics.history import read_history as history
from plait.analytics.journeys import (
    as_of,
    conversion_journeys,
    drop_off_journeys,
    period_journeys,
)
from plait.analytics.period import Period
from plait.core.settings import Settings

CHAIN_COLUMNS = ("journey_id", "kind", "channel", "pos", "n", "conversions", "nulls", "value")
MAX_TABLES = 32
"""Tables of a period's journeys a workspace keeps (the least recently used are dropped)."""


@dataclass(frozen=True)
class Inputs:
    """The expressions every report starts from, for one period."""

    con: BaseBackend
    settings: Settings
    period: Period
    sessions: ibis.Table
    """Sessions from the start of the lookback window before the period to its end, each
    with its customer's ``original_channel``."""
    conversions: ibis.Table
    """Every conversion up to the period's end."""
    milestones: ibis.Table
    workspace: Workspace | None = None
    """Where the inputs come from when shared, with the journeys computed so far."""

    def converting(self, kinds: Iterable[str], *, reused: bool = False) -> ibis.Table:
        """The journeys of the period's conversions of ``kinds``; computed into a table
        when the caller reads them several times (``reused``), unless a workspace keeps
        every conversion's journeys already."""
        chosen = list(kinds)
        if self.workspace is not None:
            every = self.workspace.journeys()
            return as_of(
                in_period(every, "converted_at", self.period).filter(every.kind.isin(chosen)),
                self.period.end,
            )
        targets = in_period(self.conversions, "converted_at", self.period)
        journeys = conversion_journeys(
            targets.filter(targets.kind.isin(chosen)),
            self.sessions,
            self.milestones,
            lookback_days=self.settings.analytics.lookback_days,
            collapse_repeats=self.settings.analytics.collapse_repeats,
        )
        return materialize(self.con, journeys) if reused else journeys

    def drop_offs(self, kinds: Iterable[str]) -> ibis.Table:
        """The journeys in the period of customers who did not convert, towards each of
        ``kinds`` (told apart by ``kind``); kept by the workspace, if any, for the other
        reports of the period."""
        chosen = list(kinds)

        def build() -> ibis.Table:
            journeys = period_journeys(
                self.sessions,
                start=self.period.start,
                end=self.period.end,
                collapse_repeats=self.settings.analytics.collapse_repeats,
            )
            return drop_off_journeys(
                journeys,
                self.conversions,
                kinds=chosen,
                start=self.period.start,
                end=self.period.end,
            )

        if self.workspace is None:
            return build()
        return self.workspace.kept((self.period, "drop-off", *chosen), build)

    def chain(self, kinds: Iterable[str], converting: ibis.Table | None = None) -> ibis.Table:
        """Converting and drop-off journeys towards each of ``kinds``, told apart by
        ``kind``: the input of a Markov chain."""
        chosen = list(kinds)
        converting = self.converting(chosen) if converting is None else converting
        return ibis.union(
            converting.select(*CHAIN_COLUMNS), self.drop_offs(chosen).select(*CHAIN_COLUMNS)
        )


def inputs(
    settings: Settings, period: Period, con: BaseBackend | Workspace | None = None
) -> Inputs:
    """Sessions and conversions for ``period``, read from the lake through the identity map
    (or from a workspace, which read them once for every report run on it)."""
    if isinstance(con, Workspace):
        return con.inputs(period)
    con = con or connect(settings)
    return period_inputs(settings, period, con, history(settings, con, until=period.end))


def period_inputs(
    settings: Settings,
    period: Period,
    con: BaseBackend,
    past: History,
    workspace: Workspace | None = None,
) -> Inputs:
    """The part of ``past`` a report of ``period`` reads: nothing after the period's end."""
    window_start = period.start - timedelta(days=settings.analytics.lookback_days)
    before_end = past.sessions.filter(past.sessions.started_at < period.end)
    found = past.conversions.filter(past.conversions.converted_at < period.end)
    return Inputs(
        con=con,
        settings=settings,
        period=period,
        sessions=before_end.filter(before_end.started_at >= window_start),
        conversions=found,
        milestones=milestones(found),
        workspace=workspace,
    )


class Workspace:
    """A DuckDB connection that reads the lake's history once, for one state of the lake,
    identity map and settings, with every conversion's journey and the last ``max_tables``
    tables of journeys reports built for a period. Reports run on it one at a time."""

    def __init__(self, settings: Settings, max_tables: int = MAX_TABLES) -> None:
        self.settings = settings
        self.max_tables = max_tables
        self.con = connect(settings)
        self._lock = threading.RLock()
        self._history: History | None = None
        self.ready_at: float | None = None
        """When the history was read (``time.monotonic()``); None until then."""
        self._journeys: ibis.Table | None = None
        self._inputs: dict[Period, Inputs] = {}
        self._tables: OrderedDict[Hashable, ibis.Table] = OrderedDict()

    def run(
        self, report: Callable[..., pd.DataFrame], period: Period, *args: Any, **kwargs: Any
    ) -> pd.DataFrame:
        """``report(settings, period, *args, con=self, **kwargs)``, alone on the connection."""
        with self._lock:
            return report(self.settings, period, *args, con=self, **kwargs)

    def inputs(self, period: Period) -> Inputs:
        """The inputs of ``period``, from the history read once (the expressions are kept
        for the period's other reports, up to ``max_tables`` periods)."""
        with self._lock:
            found = self._inputs.get(period)
            if found is None:
                if len(self._inputs) >= self.max_tables:
                    self._inputs.clear()
                found = period_inputs(self.settings, period, self.con, self.history(), self)
                self._inputs[period] = found
            return found

    @property
    def ready(self) -> bool:
        """Whether the history has been read, so reports on it need not wait for the lake."""
        return self.ready_at is not None

    def prepare(self, *, threads: int | None = None) -> None:
        """Read the history and every conversion's journey now; the workspace is ``ready``
        only once both are in, so a page served from it does not wait for either. With
        ``threads``, DuckDB uses no more for it (the rest of the cores serve pages)."""
        with self._lock:
            if threads is not None and self.con.name == "duckdb":
                self.con.raw_sql(f"SET threads = {int(threads)}")
            try:
                if self._history is None:
                    past = history(self.settings, self.con, materialized=True)
                    self._journeys = self._journeys_of(past)
                    self._keep(past)
                self.journeys()
            finally:
                if threads is not None and self.con.name == "duckdb":
                    self.con.raw_sql("RESET threads")

    def history(self) -> History:
        """The lake's history, read on first use."""
        with self._lock:
            if self._history is None:
                self._keep(history(self.settings, self.con, materialized=True))
            assert self._history is not None
            return self._history

    def journeys(self) -> ibis.Table:
        """The journey of every conversion in the history, computed once; ``as_of`` a
        period's end they are that period's (see ``Inputs.converting``)."""
        with self._lock:
            if self._journeys is None:
                self._journeys = self._journeys_of(self.history())
            return self._journeys

    def _journeys_of(self, past: History) -> ibis.Table:
        rules = self.settings.analytics
        return materialize(
            self.con,
            conversion_journeys(
                past.conversions,
                past.sessions,
                milestones(past.conversions),
                lookback_days=rules.lookback_days,
                collapse_repeats=rules.collapse_repeats,
            ),
        )

    def _keep(self, past: History) -> None:
        self._history = past
        self.ready_at = time.monotonic()

    def kept(self, key: Hashable, build: Callable[[], ibis.Table]) -> ibis.Table:
        """``build()`` computed into a table once, kept while among the recently used."""
        with self._lock:
            found = self._tables.get(key)
            if found is None:
                found = self._tables[key] = materialize(self.con, build())
            self._tables.move_to_end(key)
            while len(self._tables) > self.max_tables:
                release(self.con, self._tables.popitem(last=False)[1])
            return found


def in_period(table: ibis.Table, column: str, period: Period) -> ibis.Table:
    """The rows of ``table`` whose ``column`` falls in ``period``."""
    return table.filter(table[column] >= period.start, table[column] < period.end)
