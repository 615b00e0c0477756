"""Commands for the identity graph: merge suggestions and refused merges."""

from __future__ import annotations

from typing import Annotated

import typer

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
from plait.identity.graph import list_refusals
from plait.identity.identifiers import identity_rules
from plait.identity.suggestions import decide, list_suggestions, suggest

identity_app = typer.Typer(
    help="The identity graph: resolution, merge suggestions, refusals.", no_args_is_help=True
)


@identity_app.command("suggest")
def identity_suggest(
    threshold: Annotated[float, typer.Option(min=0.01, max=0.99)] = 0.9,
    as_json: JsonFlag = False,
) -> None:
    """Find probable duplicates among customers (Splink); new pairs become suggestions."""
    with console.status("looking for probable duplicates"):
        report = suggest(open_database(), threshold=threshold)
    result = {"customers": report.customers, "pairs": report.pairs, "new": report.new}
    if as_json:
        print_json(result)
    else:
        console.print(
            f"compared {report.customers:,} named customers: {report.pairs:,} probable"
            f" duplicates, {report.new:,} new suggestions (see: plait identity suggestions)"
        )


@identity_app.command("suggestions")
def identity_suggestions(
    status: Annotated[str, typer.Option(help="pending, accepted or rejected")] = "pending",
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Merge suggestions, most probable first."""
    with read(open_database()) as conn:
        found = list_suggestions(conn, status=status, limit=limit)
    if as_json:
        print_json(found)
        return
    rows = [
        {
            "id": row["id"],
            "probability": row["probability"],
            "left": _who(row["left"]),
            "right": _who(row["right"]),
        }
        for row in found
    ]
    print_table(rows, ["id", "probability", "left", "right"])


@identity_app.command("accept")
def identity_accept(
    suggestion: str,
    force: Annotated[bool, typer.Option(help="merge even past the identifier limits")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Accept a suggestion: merge its two customers."""
    _decide(suggestion, True, force, as_json)


@identity_app.command("reject")
def identity_reject(suggestion: str, as_json: JsonFlag = False) -> None:
    """Reject a suggestion; the pair is not suggested again."""
    _decide(suggestion, False, False, as_json)


@identity_app.command("refusals")
def identity_refusals(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    cursor: Annotated[str | None, typer.Option()] = None,
    as_json: JsonFlag = False,
) -> None:
    """Merges the rules refused and identifiers they left out, newest first."""
    with read(open_database()) as conn:
        page, next_cursor = list_refusals(
            conn, limit=limit, before=parse_id(cursor, "--cursor") if cursor else None
        )
    if as_json:
        print_json({"refusals": page, "next_cursor": next_cursor})
        return
    print_table(page, ["created_at", "code", "message", "event_id"])
    if next_cursor:
        console.print(f"[dim]more: --cursor {next_cursor}[/]")


def _decide(suggestion: str, accept: bool, force: bool, as_json: bool) -> None:
    settings = get_settings()
    with write(open_database(settings)) as conn:
        result = decide(
            conn,
            identity_rules(settings),
            parse_id(suggestion, "suggestion"),
            accept,
            by="cli",
            force=force,
        )
    if as_json:
        print_json(result)
    else:
        console.print(f"suggestion {result['id']}: {result['status']}", highlight=False)


def _who(side: dict | None) -> str:
    if side is None:
        return "(erased)"
    contact = ", ".join(side["emails"] + side["phones"])
    return f"{side['name'] or '?'} {contact}".strip()
