"""``plait smtp`` (the inbound mail listener) and ``plait inboxes imap-poll``."""

from __future__ import annotations

import dataclasses
import imaplib
import signal
import threading
import time
from typing import Annotated, Any

import typer

from plait.core.console import JsonFlag, console, errors, open_database, print_json, print_table
from plait.core.db import read
from plait.core.errors import InvalidInput, NotFound
from plait.core.settings import get_settings


def smtp_command(
    host: Annotated[str | None, typer.Option(help="interface to listen on")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 2525,
) -> None:
    """Receive email for the email inboxes over SMTP (other recipients are refused)."""
    from plait.collect.ingest import rules_from_settings
    from plait.inbox.connectors.email import smtp_controller

    settings = get_settings()
    engine = open_database(settings)
    host = host or settings.server.host
    controller = smtp_controller(engine, settings, rules_from_settings(settings), host, port)
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc}", field="port") from None
    console.print(f"Receiving mail on {host}:{port}", highlight=False)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


def imap_poll_command(
    inbox: Annotated[str | None, typer.Option(help="only this inbox (name or id)")] = None,
    every: Annotated[
        float | None, typer.Option(min=1, help="keep polling, every this many seconds")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Fetch unseen mail from the email inboxes' IMAP mailboxes (those with an imap_host)."""
    from plait.collect.ingest import rules_from_settings
    from plait.inbox.connectors.email import email_inboxes, poll_imap

    settings = get_settings()
    engine = open_database(settings)
    rules = rules_from_settings(settings)
    while True:
        with read(engine) as conn:
            polled = [i for i in email_inboxes(conn) if i.option("imap_host")]
        if inbox is not None:
            polled = [i for i in polled if inbox in (i.name, str(i.id))]
            if not polled:
                raise NotFound(f"no email inbox {inbox!r} with an imap_host", field="inbox")
        reports = []
        for each in polled:
            try:
                reports.append(poll_imap(engine, settings, rules, each))
            except (OSError, imaplib.IMAP4.error) as exc:
                reports.append(_failed(each.name, exc))
        _show(reports, as_json)
        if every is None:
            failed = [r for r in reports if r.error]
            if failed:
                raise InvalidInput(f"{failed[0].inbox}: {failed[0].error}", field="imap_host")
            return
        time.sleep(every)


def _failed(name: str, exc: Exception) -> Any:
    from plait.inbox.connectors.email import ImapReport

    detail = str(exc) or type(exc).__name__
    return ImapReport(name, error=f"{type(exc).__name__}: {detail}"[:300])


def _show(reports: list[Any], as_json: bool) -> None:
    rows = [dataclasses.asdict(report) for report in reports]
    if as_json:
        print_json(rows)
    elif rows:
        print_table(rows, ["inbox", "received", "duplicates", "rejected", "error"])
    else:
        errors.print("no email inbox has an imap_host", highlight=False)
