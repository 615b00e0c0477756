"""Commands for customer profiles: show, search, timeline, merge, split, export, erase."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from plait.collect.event_store import EventFilter
from plait.collect.messages import check_type
from plait.core.console import (
    JsonFlag,
    console,
    open_database,
    parse_id,
    print_json,
    print_table,
)
from plait.core.db import read, write
from plait.core.settings import get_settings
from plait.identity.identifiers import identity_rules
from plait.identity.identity_map import export_identity_map
from plait.identity.merges import merge_customers, split_merge
from plait.profiles.customer360 import profile_360
from plait.profiles.pipeline import resolve
from plait.profiles.privacy import erase_person, export_person
from plait.profiles.search import resolve_reference, search, timeline

profiles_app = typer.Typer(
    help="Customer profiles: the 360 of each customer.", no_args_is_help=True
)

Reference = Annotated[
    str, typer.Argument(help="a profile id, or an identifier: e-mail, phone, kind:value")
]


@profiles_app.command("show")
def profiles_show(profile: Reference, as_json: JsonFlag = False) -> None:
    """The customer 360: traits, identifiers, computed fields."""
    settings = get_settings()
    with read(open_database(settings)) as conn:
        root_id = resolve_reference(conn, identity_rules(settings), profile)
        shown = profile_360(conn, root_id, settings.profiles)
    if as_json:
        print_json(shown)
        return
    console.print(f"[bold]{shown['name'] or 'Unnamed customer'}[/]  {shown['id']}")
    contact = shown["last_contact"]
    facts = {
        "lifecycle stage": shown["lifecycle_stage"],
        "first seen": shown["first_seen"],
        "last seen": shown["last_seen"],
        "first touch": shown["first_touch_channel"],
        "last touch": shown["last_touch_channel"],
        "last contact": contact
        and f"{contact['time']} {contact['channel']} "
        f"{contact['direction'] or ''} {contact['summary']}",
        "orders": shown["orders"],
        "lifetime revenue": shown["lifetime_revenue"],
        "events": shown["events"],
    }
    for label, value in facts.items():
        console.print(f"  {label:>16}: {value if value is not None else '-'}", highlight=False)
    for kind, values in shown["identifiers"].items():
        console.print(f"  {kind:>16}: {', '.join(values)}", highlight=False)
    for name, value in shown["traits"].items():
        console.print(f"  [dim]{name:>16}: {value}[/]", highlight=False)


@profiles_app.command("search")
def profiles_search(
    q: Annotated[str, typer.Argument(help="an identifier or the start of a name")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Find customers by any identifier or by name."""
    settings = get_settings()
    with read(open_database(settings)) as conn:
        found = search(conn, identity_rules(settings), q, limit=limit)
    if as_json:
        print_json(found)
        return
    for row in found:
        row["emails"] = ", ".join(row["emails"])
        row["phones"] = ", ".join(row["phones"])
    print_table(found, ["id", "name", "emails", "phones", "last_seen"])


@profiles_app.command("timeline")
def profiles_timeline(
    profile: Reference,
    channel: Annotated[str | None, typer.Option()] = None,
    type_: Annotated[str | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    cursor: Annotated[str | None, typer.Option()] = None,
    as_json: JsonFlag = False,
) -> None:
    """The customer's events across channels and devices, newest first."""
    settings = get_settings()
    filters = EventFilter(type=check_type(type_, "--type"), channel=channel)
    with read(open_database(settings)) as conn:
        root_id = resolve_reference(conn, identity_rules(settings), profile)
        page, next_cursor = timeline(conn, root_id, filters, limit=limit, cursor=cursor)
    if as_json:
        print_json({"customer_id": str(root_id), "events": page, "next_cursor": next_cursor})
        return
    for row in page:
        row["what"] = row["event"] or row["name"] or ""
    print_table(page, ["timestamp", "channel", "source", "type", "what"])
    if next_cursor:
        console.print(f"[dim]more: --cursor {next_cursor}[/]")


@profiles_app.command("merge")
def profiles_merge(
    profiles: Annotated[list[str], typer.Argument(help="two or more profiles or identifiers")],
    force: Annotated[bool, typer.Option(help="merge even past the identifier limits")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Merge customers by hand into the oldest of them."""
    settings = get_settings()
    rules = identity_rules(settings)
    with write(open_database(settings)) as conn:
        roots = [resolve_reference(conn, rules, reference) for reference in profiles]
        merged = merge_customers(conn, rules, roots, by="cli", force=force)
    _done(merged, as_json, f"merged into {merged['customer_id']}")


@profiles_app.command("split")
def profiles_split(
    profile: Reference,
    merge_id: Annotated[str, typer.Option("--merge", help="the merge to undo (see identities)")],
    as_json: JsonFlag = False,
) -> None:
    """Undo one merge: the merged profile becomes a customer of its own again."""
    settings = get_settings()
    with write(open_database(settings)) as conn:
        root_id = resolve_reference(conn, identity_rules(settings), profile)
        split = split_merge(conn, root_id, parse_id(merge_id, "--merge"), by="cli")
    _done(split, as_json, f"restored {split['restored_id']}")


@profiles_app.command("export")
def profiles_export(
    profile: Reference,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default: stdout)")
    ] = None,
) -> None:
    """Everything held about a person, as JSON."""
    settings = get_settings()
    with read(open_database(settings)) as conn:
        root_id = resolve_reference(conn, identity_rules(settings), profile)
        document = export_person(conn, root_id, settings)
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    if output is None:
        print(data.decode())
    else:
        output.write_bytes(data)
        console.print(f"wrote {output}")


@profiles_app.command("erase")
def profiles_erase(
    profile: Reference,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Erase a person from the database and the lake, and suppress their identifiers."""
    settings = get_settings()
    engine = open_database(settings)
    with read(engine) as conn:
        root_id = resolve_reference(conn, identity_rules(settings), profile)
    if not yes:
        typer.confirm(f"Erase customer {root_id} everywhere?", abort=True)
    erasure = erase_person(engine, settings, root_id)
    _done(erasure.to_dict(), as_json, f"erased {erasure.events} events of {root_id}")


def _done(result: dict, as_json: bool, text: str) -> None:
    if as_json:
        print_json(result)
    else:
        console.print(text, highlight=False)


def resolve_command(as_json: JsonFlag = False) -> None:
    """Resolve events not yet in a profile (``plait serve`` does this every second)."""
    settings = get_settings()
    engine = open_database(settings)
    report = resolve(engine, settings)
    export_identity_map(engine, settings)
    result = {
        "events": report.events,
        "profiles": report.profiles,
        "identifiers": report.identifiers,
        "merges": report.merges,
        "refusals": report.refusals,
    }
    if as_json:
        print_json(result)
    else:
        console.print(
            f"resolved {report.events:,} events: {report.profiles:,} new profiles,"
            f" {report.identifiers:,} identifiers, {report.merges:,} merges,"
            f" {report.refusals:,} refusals"
        )
