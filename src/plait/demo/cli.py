"""``plait demo``: build the synthetic world, then serve it."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plait.core.auth import create_token
from plait.core.clock import utcnow
from plait.core.console import console, open_database, print_json, print_table
from plait.core.db import analyze, write
from plait.core.settings import get_settings


def demo_command(
    customers: Annotated[int, typer.Option(min=1, help="synthetic customers")] = 1000,
    days: Annotated[int, typer.Option(min=1, max=3650, help="days of history")] = 90,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same world")] = 7,
    serve: Annotated[bool, typer.Option(help="start the server afterwards")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
) -> None:
    """Build a realistic omnichannel demo world, then start the server."""
    from plait.analytics import channel_report, period
    from plait.analytics.history import keep_history
    from plait.collect.replication import sync_lake
    from plait.demo.build import build_demo, reset_demo_admin
    from plait.demo.inbox import demo_inbox_summary, seed_demo_inbox
    from plait.identity.graph import customer_count
    from plait.identity.identity_map import export_identity_map
    from plait.identity.suggestions import suggest
    from plait.profiles.pipeline import resolve

    settings = get_settings()
    engine = open_database(settings)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=as_json) as progress:
        task = progress.add_task("building demo world", total=None)
        report = build_demo(
            engine,
            settings,
            customers=customers,
            days=days,
            seed=seed,
            on_progress=lambda n: progress.advance(task, n),
        )
        task = progress.add_task("resolving identities", total=report.result.accepted)
        resolved = resolve(engine, settings, on_progress=lambda n: progress.advance(task, n))
    lake = sync_lake(engine, settings)
    export_identity_map(engine, settings)
    keep_history(engine, settings)
    suggested = suggest(engine)
    seed_demo_inbox(engine, settings)
    analyze(engine)
    with write(engine) as conn:
        token = create_token(conn, "admin", "demo admin")
        customers_now = customer_count(conn)
    admin_email, admin_password = reset_demo_admin(engine)
    url = f"http://{settings.server.host}:{settings.server.port}"
    today = utcnow().date()
    span = period(today - timedelta(days=days), today)
    channels = channel_report(settings, span, "last_touch")
    channels = channels[["channel", "sessions", "contacts", "qualified", "sales", "revenue"]]
    summary = {
        **report.to_dict(),
        "customers": customers_now,
        "merges": resolved.merges,
        "lake_rows": lake.rows,
        "url": url,
        "admin_token": token["token"],
        "suggestions": suggested.new,
        "conversations": demo_inbox_summary(engine),
        "dashboard": {"url": f"{url}/", "email": admin_email, "password": admin_password},
        "channels": channels.to_dict(orient="records"),
    }
    if as_json:
        print_json(summary)
    else:
        console.print(
            f"Stored [bold]{report.result.accepted:,}[/] events"
            f" ({report.result.duplicates:,} already present) from {customers:,} customers"
            f" over {days} days; {lake.rows:,} replicated to the lake;"
            f" {customers_now:,} customer profiles ({resolved.merges:,} new merges)."
        )
        for name, key in report.write_keys.items():
            console.print(f"  source {name}: write key {key}", highlight=False)
        console.print(f"Admin API token: [bold]{token['token']}[/]", highlight=False)
        console.print(
            f"Try: curl -H 'Authorization: Bearer {token['token']}' {url}/api/events",
            highlight=False,
            soft_wrap=True,
        )
        shown = channels.head(8).round(1)
        whole = [c for c in shown.columns[1:] if (shown[c] % 1 == 0).all()]
        shown[whole] = shown[whole].astype("int64")
        print_table(
            shown.to_dict(orient="records"),
            list(channels.columns),
            title=f"Channels, last touch, {span.first} to {span.last}",
        )
        console.print(
            f"More: plait report channels --from {span.first} --to {span.last} --model markov",
            highlight=False,
        )
        console.print(
            f"Dashboard: [bold]{url}/[/] — sign in as [bold]{admin_email}[/]"
            f" with password [bold]{admin_password}[/]",
            highlight=False,
            soft_wrap=True,
        )
    if serve:
        from plait.server_runner import run_server

        run_server(settings)
