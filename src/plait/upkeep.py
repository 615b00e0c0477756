"""Background upkeep, run by ``plait serve`` in a process of its own: resolve new events
into profiles every second (yielding to bursts of ingestion), replicate them to the lake and
export the identity map every few seconds, fold them into the analytics' kept history every
minute, forget message ids older than the de-duplication window, and (SQLite) checkpoint the
write-ahead log every second.

A separate process keeps this work off the request path (and off the request path's
interpreter lock); it stops when the server that started it is gone."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from sqlalchemy.engine import Engine

from plait.analytics.history import keep_history
from plait.collect.event_store import newest_seq, prune_seen
from plait.collect.replication import sync_lake
from plait.core.clock import utcnow
from plait.core.db import analyze, checkpoint, get_engine, read, write
from plait.core.garbage import tune_for_serving
from plait.core.processes import name_process
from plait.core.settings import ServerSettings, Settings
from plait.identity.identity_map import export_identity_map
from plait.profiles.pipeline import SERVING_CHUNK_EVENTS, resolve
from plait.web.login import purge_login_failures
from plait.web.sessions import purge_sessions

log = logging.getLogger("plait.upkeep")

UPKEEP_PROCESS_NAME = "plait-upkeep"

ANALYZE_SECONDS = 600
"""How often SQLite's planner statistics are refreshed (PostgreSQL's autovacuum does it)."""


def run_upkeep(settings: Settings, parent_pid: int) -> None:
    """Loop until the parent process exits (also when it is killed)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    name_process(UPKEEP_PROCESS_NAME)
    os.nice(settings.server.upkeep_nice)
    engine = get_engine(settings)
    tune_for_serving()
    interval = settings.server.lake_sync_interval_seconds
    threading.Thread(
        target=_checkpoint_loop, args=(engine, parent_pid), name="plait-checkpoint", daemon=True
    ).start()
    threading.Thread(
        target=_resolve_loop,
        args=(engine, settings, parent_pid),
        name="plait-resolve",
        daemon=True,
    ).start()
    analyzed = refreshed = 0.0
    while os.getppid() == parent_pid:
        if engine.dialect.name == "sqlite" and time.monotonic() - analyzed > ANALYZE_SECONDS:
            try:
                analyze(engine)
            except Exception:
                log.exception("ANALYZE failed")
            analyzed = time.monotonic()
        try:
            upkeep_once(engine, settings)
        except Exception:
            log.exception("upkeep failed; retrying in %s s", interval)
        if time.monotonic() - refreshed >= settings.server.history_refresh_interval_seconds:
            try:
                keep_history(engine, settings)
            except Exception:
                log.exception("refreshing the kept history failed")
            refreshed = time.monotonic()
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline and os.getppid() == parent_pid:
            time.sleep(min(0.5, interval))


def _resolve_loop(engine: Engine, settings: Settings, parent_pid: int) -> None:
    """Keep profiles within about a second of the events, yielding to bursts of ingestion."""
    behind_since: float | None = None
    while os.getppid() == parent_pid:
        started = time.monotonic()
        try:
            report = resolve(
                engine,
                settings,
                chunk_events=SERVING_CHUNK_EVENTS,
                on_progress=yielding(
                    settings.server, behind_since or started, partial(_newest_seq, engine)
                ),
            )
        except Exception:
            log.exception("identity resolution failed")
        else:
            caught_up = report.events < SERVING_CHUNK_EVENTS
            behind_since = None if caught_up else behind_since or started
        time.sleep(1)


def _newest_seq(engine: Engine) -> int:
    with read(engine) as conn:
        return newest_seq(conn)


def yielding(
    server: ServerSettings,
    behind_since: float,
    newest: Callable[[], int],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[int], None]:
    """A chunk hook that holds identity resolution to ``resolver_burst_share`` of its time
    while events arrive faster than it resolves them (a burst of ingestion), for at most
    ``resolver_burst_seconds`` of being behind: after such a chunk it sleeps in proportion to
    the chunk's time. The burst keeps the CPU (and, on SQLite, the writer); when it ends, or
    lasts too long, resolution runs flat out. ``newest`` gives the newest event's ``seq``."""
    share, patience = server.resolver_burst_share, server.resolver_burst_seconds
    last, last_newest = clock(), newest()

    def after_chunk(resolved: int) -> None:
        nonlocal last, last_newest
        now, arrived = clock(), newest()
        growing = arrived - last_newest > resolved
        last_newest = arrived
        if share < 1 and growing and now - behind_since < patience:
            sleep((now - last) * (1 - share) / share)
        last = clock()

    return after_chunk


def _checkpoint_loop(engine: Engine, parent_pid: int) -> None:
    """Keep SQLite's write-ahead log short, so request writers never have to."""
    while os.getppid() == parent_pid:
        try:
            checkpoint(engine)
        except Exception:
            log.exception("checkpoint failed")
        time.sleep(1)


def upkeep_once(engine: object, settings: Settings) -> None:
    """One round: replicate to the lake and export the identity map, then prune the
    de-duplication window and forget finished sign-in sessions and old failed sign-ins."""
    sync_lake(engine, settings)  # type: ignore[arg-type]
    export_identity_map(engine, settings)  # type: ignore[arg-type]
    window = timedelta(days=settings.collect.dedup_window_days)
    with write(engine) as conn:  # type: ignore[arg-type]
        prune_seen(conn, utcnow() - window)
        purge_sessions(conn)
        purge_login_failures(conn, settings)
