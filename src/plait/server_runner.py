"""Running the server process: migrations first, then uvicorn."""

from __future__ import annotations

import uvicorn

from plait import __version__
from plait.core.console import console
from plait.core.db import get_engine
from plait.core.settings import Settings
from plait.migrations import upgrade


def app_factory():  # type: ignore[no-untyped-def]
    """The application, for uvicorn's ``--factory`` (worker processes build their own)."""
    from plait.server import create_app

    return create_app(migrate=False)


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
    uvicorn.run(
        "plait.server_runner:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )
