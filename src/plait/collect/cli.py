"""Commands for sources, events, imports and the lake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plait.collect.event_store import EventFilter, list_events, list_rejected
from plait.collect.messages import check_type
from plait.collect.sources import add_source
from plait.core.clock import optional_timestamp
from plait.core.console import (
    JsonFlag,
    console,
    open_database,
    print_json,
    print_table,
)
from plait.core.db import read, write
from plait.core.settings import get_settings
from plait.core.sources import list_sources, rotate_write_key

sources_app = typer.Typer(help="Sources: where events come from.", no_args_is_help=True)
events_app = typer.Typer(help="Read stored and rejected events.", no_args_is_help=True)
lake_app = typer.Typer(help="The columnar event lake.", no_args_is_help=True)


@sources_app.command("create")
def sources_create(
    name: Annotated[str, typer.Argument(help="e.g. 'Website', 'iOS App', 'Store POS'")],
    channel: Annotated[
        str | None,
        typer.Option(help="default channel for an offline source (e.g. Store, Phone)"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a source and print its write key (shown once)."""
    settings = get_settings()
    with write(open_database(settings)) as conn:
        source = add_source(conn, settings, name, channel)
    if as_json:
        print_json(source)
        return
    channel_note = source["channel"] or "derived from UTM, click ids and referrer"
    console.print(f"Created source [bold]{source['name']}[/] (channel: {channel_note})")
    console.print("Write key:", highlight=False)
    console.print(source["write_key"], soft_wrap=True, highlight=False)


@sources_app.command("list")
def sources_list(as_json: JsonFlag = False) -> None:
    """List sources."""
    with read(open_database()) as conn:
        rows = list_sources(conn)
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["name", "channel", "write_key_hint", "created_at", "id"])


@sources_app.command("rotate-key")
def sources_rotate_key(name: str, as_json: JsonFlag = False) -> None:
    """Give a source a new write key; the old one stops working."""
    with write(open_database()) as conn:
        source = rotate_write_key(conn, name)
    if as_json:
        print_json(source)
    else:
        console.print(source["write_key"], soft_wrap=True, highlight=False)


@events_app.command("list")
def events_list(
    source: Annotated[str | None, typer.Option(help="source name")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="identify, track, page, ...")] = None,
    event: Annotated[str | None, typer.Option(help="track event name")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id")] = None,
    anonymous_id: Annotated[str | None, typer.Option("--anonymous-id")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601, exclusive")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    cursor: Annotated[str | None, typer.Option(help="next page, from a previous call")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Events, newest first."""
    filters = EventFilter(
        source=source,
        type=check_type(type_, "--type"),
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        since=optional_timestamp(since, "since", "--since"),
        until=optional_timestamp(until, "until", "--until"),
    )
    with read(open_database()) as conn:
        page, next_cursor = list_events(conn, filters, limit=limit, cursor=cursor)
    if as_json:
        print_json({"events": page, "next_cursor": next_cursor})
        return
    for row in page:
        row["what"] = row["event"] or row["name"] or ""
        row["who"] = row["userId"] or row["anonymousId"]
    print_table(page, ["timestamp", "source", "type", "what", "who", "channel"])
    if next_cursor:
        console.print(f"[dim]more: --cursor {next_cursor}[/]")


@events_app.command("rejected")
def events_rejected(
    source: Annotated[str | None, typer.Option(help="source name")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    cursor: Annotated[str | None, typer.Option()] = None,
    as_json: JsonFlag = False,
) -> None:
    """Rejected events with their reasons, newest first."""
    with read(open_database()) as conn:
        page, next_cursor = list_rejected(conn, source=source, limit=limit, cursor=cursor)
    if as_json:
        print_json({"rejected": page, "next_cursor": next_cursor})
        return
    print_table(page, ["received_at", "source", "origin", "position", "code", "field", "message"])
    if next_cursor:
        console.print(f"[dim]more: --cursor {next_cursor}[/]")


@lake_app.command("sync")
def lake_sync(as_json: JsonFlag = False) -> None:
    """Replicate new events to the lake now (``plait serve`` does this every few seconds)."""
    from plait.collect.replication import pending_count, sync_lake

    settings = get_settings()
    engine = open_database(settings)
    report = sync_lake(engine, settings)
    with read(engine) as conn:
        left = pending_count(conn)
    result = {
        "batches": report.batches,
        "rows": report.rows,
        "files": len(report.files),
        "pending": left,
        "lake": settings.lake,
    }
    if as_json:
        print_json(result)
    else:
        console.print(
            f"wrote {report.rows} events in {len(report.files)} files to {settings.lake}"
            f" ({left} pending)"
        )


def import_command(
    file: Annotated[Path, typer.Argument(help="JSON Lines, CSV or Parquet file")],
    source: Annotated[str, typer.Option(help="the source the events come from")],
    format_: Annotated[
        str | None, typer.Option("--format", help="jsonl, csv or parquet (default: by extension)")
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map", help="FIELD=COLUMN, e.g. userId=customer_id or properties.revenue=amount"
        ),
    ] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="message type for rows without one (CSV/Parquet)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import events from a file through the same validation and de-duplication as the API."""
    from plait.collect.importers import import_file

    settings = get_settings()
    report = import_file(
        open_database(settings),
        settings,
        file,
        source_name=source,
        format_=format_,
        mapping=mapping or [],
        default_type=type_,
        progress=not as_json,
    )
    if as_json:
        print_json(report.to_dict())
        return
    console.print(
        f"imported [bold]{report.accepted}[/] events from {file}"
        f" ({report.duplicates} already present, {len(report.rejected)} rejected)"
    )
    for rejection in report.rejected[:50]:
        field = f" [{rejection['field']}]" if rejection.get("field") else ""
        console.print(
            f"  line {rejection['index']}: {rejection['message']}{field}", highlight=False
        )
    if len(report.rejected) > 50:
        console.print(f"  … and {len(report.rejected) - 50} more: plait events rejected")
