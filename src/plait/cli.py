"""The ``plait`` command: each area contributes its commands; errors print one line and
exit with code 2."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from plait import __version__
from plait.analytics.cli import report_app
from plait.collect.cli import events_app, import_command, lake_app, sources_app
from plait.core.cli import db_app, tokens_app, users_app
from plait.core.console import errors
from plait.core.errors import PlaitError
from plait.demo.cli import demo_command
from plait.identity.cli import identity_app
from plait.inbox.cli import inboxes_app
from plait.inbox.connectors.email_cli import imap_poll_command, smtp_command
from plait.inbox.reports import report_inbox
from plait.profiles.cli import profiles_app, resolve_command

app = typer.Typer(
    name="plait",
    help="Plait: one thread per customer across every channel.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(sources_app, name="sources")
app.add_typer(tokens_app, name="tokens")
app.add_typer(users_app, name="users")
app.add_typer(events_app, name="events")
app.add_typer(lake_app, name="lake")
app.add_typer(profiles_app, name="profiles")
app.add_typer(identity_app, name="identity")
app.add_typer(report_app, name="report")
app.add_typer(inboxes_app, name="inboxes")
identity_app.command("resolve")(resolve_command)
app.command("import")(import_command)
app.command("demo")(demo_command)
report_app.command("inbox")(report_inbox)
app.command("smtp")(smtp_command)
inboxes_app.command("imap-poll")(imap_poll_command)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
) -> None:
    """Run the API server (migrations are applied first; the lake syncs in the background)."""
    from plait.core.settings import get_settings
    from plait.server_runner import run_server

    settings = get_settings()
    run_server(settings, host=host, port=port, workers=workers)


@app.command()
def version() -> None:
    """Print Plait's version."""
    print(__version__)


def main() -> None:
    """Entry point of the ``plait`` command."""
    try:
        app()
    except PlaitError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        errors.print(f"error: {exc.message}{field}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
