"""Running ``plait serve``: migrations first, then the upkeep process, then uvicorn."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time

import uvicorn

from plait import __version__
from plait.core.console import console
from plait.core.db import get_engine
from plait.core.garbage import tune_for_serving
from plait.core.settings import Settings, get_settings
from plait.migrations import upgrade
from plait.upkeep import UPKEEP_PROCESS_NAME, run_upkeep

SQLITE_SWITCH_INTERVAL = 0.0005
"""How long (s) a thread of a server on SQLite runs on while another waits for the interpreter
lock; Python's default is 0.005. SQLite's one writer thread, the serial stage of ingestion,
lets go of the lock for every call into SQLite and must then wait for it behind the request
threads. Ingest bench, 4 connections: 7,267 / 7,400 -> 7,892 / 8,292 events/s. PostgreSQL's
writers wait on its server instead, and there a shorter interval cost 3 %."""

SERVER_PID_VARIABLE = "PLAIT_SERVER_PID"
"""Set by :func:`run_server` for its worker processes: the pid of the server that started them."""


def app_factory():  # type: ignore[no-untyped-def]
    """The application, for uvicorn's ``--factory`` (worker processes build their own)."""
    from plait.server import create_app

    settings = get_settings()
    app = create_app(
        settings,
        migrate=False,
        warm=settings.server.warm_dashboard,
        writer_process=settings.server.sqlite_writer_process,
    )
    tune_for_serving()
    tune_thread_switching(settings)
    _end_with_server()
    return app


def tune_thread_switching(settings: Settings) -> None:
    """On SQLite, hand the interpreter lock round sooner (:data:`SQLITE_SWITCH_INTERVAL`)."""
    if get_engine(settings).dialect.name == "sqlite":
        sys.setswitchinterval(SQLITE_SWITCH_INTERVAL)


def _end_with_server() -> None:
    """In a worker process of ``plait serve --workers N``, shut down (as on SIGTERM: requests
    in flight are finished) once the server that started it is gone, even killed outright,
    instead of serving on as an orphan. The upkeep process does the same."""
    server = os.environ.get(SERVER_PID_VARIABLE)
    if server is None or int(server) == os.getpid():
        return
    threading.Thread(
        target=_stop_when_orphaned, args=(int(server),), name="plait-parent-watch", daemon=True
    ).start()


def _stop_when_orphaned(server_pid: int) -> None:
    while os.getppid() == server_pid:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def run_server(
    settings: Settings, *, host: str | None = None, port: int | None = None, workers: int = 1
) -> None:
    """Apply migrations, then serve until interrupted."""
    upgrade(get_engine(settings))
    host, port = host or settings.server.host, port or settings.server.port
    console.print(
        f"Plait {__version__} serving on [bold]http://{host}:{port}[/]"
        f" (database: {settings.database_url.split('://', 1)[0]}, lake: {settings.lake});"
        " Ctrl+C stops it",
        highlight=False,
    )
    upkeep = multiprocessing.get_context("spawn").Process(
        target=run_upkeep,
        args=(settings, os.getpid()),
        name=UPKEEP_PROCESS_NAME,
        daemon=True,
    )
    upkeep.start()
    os.environ[SERVER_PID_VARIABLE] = str(os.getpid())
    try:
        uvicorn.run(
            "plait.server_runner:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
    finally:
        upkeep.terminate()
        upkeep.join(timeout=10)
