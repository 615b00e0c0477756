"""Background upkeep, run by ``plait serve`` in a process of its own: resolve new events
into profiles every second, replicate them to the lake and export the identity map every
few seconds, fold them into the analytics' kept history every minute, forget message ids
older than the de-duplication window, and (SQLite) checkpoint the write-ahead log every
second.

A separate process keeps this work off the request path (and off the request path's
interpreter lock); it stops when the server that started it is gone."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta

from sqlalchemy.engine import Engine

from plait.analytics.history import keep_history
from plait.collect.event_store import prune_seen
from plait.collect.replication import sync_lake
from plait.core.clock import utcnow
from plait.core.db import analyze, checkpoint, get_engine, write
from plait.core.garbage import tune_for_serving
from plait.core.settings import Settings
from plait.identity.identity_map import export_identity_map
from plait.profiles.pipeline import SERVING_CHUNK_EVENTS, resolve
from plait.web.login import purge_login_failures
from plait.web.sessions import purge_sessions

log = logging.getLogger("plait.upkeep")

ANALYZE_SECONDS = 600
"""How often SQLite's planner statistics are refreshed (PostgreSQL's autovacuum does it)."""


def run_upkeep(settings: Settings, parent_pid: int) -> None:
    """Loop until the parent process exits (also when it is killed)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
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
    """Keep profiles within about a second of the events."""
    while os.getppid() == parent_pid:
        try:
            resolve(engine, settings, chunk_events=SERVING_CHUNK_EVENTS)
        except Exception:
            log.exception("identity resolution failed")
        time.sleep(1)


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
