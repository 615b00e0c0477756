"""``plait report``: the channel report, attribution, paths, transitions and funnel from the
command line, as a table, CSV, JSON or Parquet."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from plait import analytics
from plait.analytics.catalog import BACKENDS, MODELS, PATH_MODELS, check_models
from plait.analytics.options import with_options
from plait.analytics.period import Period, period
from plait.core.console import console, open_database, print_json, print_table
from plait.core.errors import InvalidInput
from plait.core.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

report_app = typer.Typer(help="Analytics: channels, attribution, journeys.", no_args_is_help=True)

FORMATS = ("table", "csv", "json", "parquet")
From = Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD")]
To = Annotated[str, typer.Option("--to", help="last day (inclusive), YYYY-MM-DD")]
OptionalFrom = Annotated[str | None, typer.Option("--from", help="first day, YYYY-MM-DD")]
OptionalTo = Annotated[str | None, typer.Option("--to", help="last day (inclusive)")]
Tz = Annotated[str, typer.Option("--tz", help="time zone the days are in")]
Kind = Annotated[str, typer.Option("--kind", help="conversion: contact, qualified or sale")]
Format = Annotated[str, typer.Option("--format", help="table, csv, json or parquet")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="write to this file")]
Backend = Annotated[str, typer.Option("--backend", help="duckdb or pyspark")]
Lookback = Annotated[
    float | None, typer.Option("--lookback-days", help="credit touches this many days back")
]
Repeats = Annotated[
    bool | None,
    typer.Option(
        "--collapse-repeats/--keep-repeats", help="merge consecutive same-channel touches"
    ),
]
MarkovOrder = Annotated[int | None, typer.Option("--markov-order", help="1, 2 or 3")]
HalfLife = Annotated[float | None, typer.Option("--half-life-days", help="time decay")]
Refresh = Annotated[
    bool, typer.Option("--refresh/--no-refresh", help="bring the lake up to date first")
]


@report_app.command("channels")
def report_channels(
    first: From,
    last: To,
    model: Annotated[str, typer.Option("--model", help=", ".join(MODELS))] = "last_touch",
    tz: Tz = "UTC",
    output_format: Format = "table",
    output: Output = None,
    backend: Backend = "duckdb",
    refresh: Refresh = True,
    lookback_days: Lookback = None,
    collapse_repeats: Repeats = None,
    markov_order: MarkovOrder = None,
    half_life_days: HalfLife = None,
) -> None:
    """Sessions, contacts, qualified leads, sales and revenue per channel under a model."""
    check_models([model])
    settings, span = _prepare(
        first, last, tz, output_format, output, backend, refresh,
        lookback_days=lookback_days, collapse_repeats=collapse_repeats,
        markov_order=markov_order, half_life_days=half_life_days,
    )  # fmt: skip
    table = analytics.channel_report(
        settings, span, model, con=analytics.connect(settings, backend)
    )
    _emit(table, output_format, output, title=f"Channels, {model}, {span.first}..{span.last}")


@report_app.command("attribution")
def report_attribution(
    first: From,
    last: To,
    models: Annotated[
        str, typer.Option("--models", help="comma-separated models (default: all)")
    ] = ",".join(MODELS),
    kind: Kind = "sale",
    tz: Tz = "UTC",
    output_format: Format = "table",
    output: Output = None,
    backend: Backend = "duckdb",
    refresh: Refresh = True,
    lookback_days: Lookback = None,
    collapse_repeats: Repeats = None,
    markov_order: MarkovOrder = None,
    half_life_days: HalfLife = None,
) -> None:
    """Conversions of one kind credited per channel under several models side by side."""
    chosen = [model.strip() for model in models.split(",") if model.strip()]
    check_models(chosen)
    settings, span = _prepare(
        first, last, tz, output_format, output, backend, refresh,
        lookback_days=lookback_days, collapse_repeats=collapse_repeats,
        markov_order=markov_order, half_life_days=half_life_days,
    )  # fmt: skip
    table = analytics.attribution(
        settings, span, chosen, kind, con=analytics.connect(settings, backend)
    )
    _emit(table, output_format, output, title=f"Attribution of {kind}s")


@report_app.command("paths")
def report_paths(
    file: Annotated[
        Path | None, typer.Argument(help="path data (CSV/Parquet) to attribute instead")
    ] = None,
    first: OptionalFrom = None,
    last: OptionalTo = None,
    kind: Kind = "sale",
    outcome: Annotated[str, typer.Option(help="conversion or drop-off")] = "conversion",
    limit: Annotated[int, typer.Option(help="how many paths")] = 20,
    models: Annotated[
        str, typer.Option("--models", help="with FILE: comma-separated models")
    ] = ",".join(PATH_MODELS),
    path_column: Annotated[str, typer.Option("--path-column")] = "path",
    conversions: Annotated[str, typer.Option("--conversions")] = "total_conversions",
    value: Annotated[str, typer.Option("--value")] = "total_conversion_value",
    nulls: Annotated[str, typer.Option("--nulls")] = "total_null",
    sep: Annotated[str, typer.Option("--sep")] = ">",
    collapse_repeats: Annotated[bool, typer.Option("--collapse-repeats")] = False,
    tz: Tz = "UTC",
    output_format: Format = "table",
    output: Output = None,
    backend: Backend = "duckdb",
    refresh: Refresh = True,
) -> None:
    """Top paths before conversion or drop-off; with FILE, attribute aggregated path data
    (ChannelAttribution's format) under each model instead."""
    if file is not None:
        _check_output(output_format, output)
        settings = get_settings()
        chosen = [model.strip() for model in models.split(",") if model.strip()]
        table = analytics.attribute_paths(
            analytics.read_paths(file),
            chosen,
            path=path_column,
            conversions=conversions,
            value=value,
            nulls=nulls,
            sep=sep,
            collapse_repeats=collapse_repeats,
            settings=settings,
            con=analytics.connect(settings, backend),
        )
        _emit(table, output_format, output, title=f"Attribution of {file.name}")
        return
    if first is None or last is None:
        raise InvalidInput("give --from and --to (or a path data FILE)", field="from")
    settings, span = _prepare(first, last, tz, output_format, output, backend, refresh)
    table = analytics.paths(
        settings, span, kind, outcome=outcome, limit=limit, con=analytics.connect(settings, backend)
    )
    _emit(table, output_format, output, title=f"Top paths to {outcome} ({kind})")


@report_app.command("transitions")
def report_transitions(
    first: From,
    last: To,
    kind: Kind = "sale",
    tz: Tz = "UTC",
    output_format: Format = "table",
    output: Output = None,
    backend: Backend = "duckdb",
    refresh: Refresh = True,
) -> None:
    """The channel transition matrix: start → channel → … → conversion / drop-off."""
    settings, span = _prepare(first, last, tz, output_format, output, backend, refresh)
    table = analytics.transitions(settings, span, kind, con=analytics.connect(settings, backend))
    _emit(table, output_format, output, title=f"Transitions towards {kind}")


@report_app.command("funnel")
def report_funnel(
    first: From,
    last: To,
    tz: Tz = "UTC",
    output_format: Format = "table",
    output: Output = None,
    backend: Backend = "duckdb",
    refresh: Refresh = True,
) -> None:
    """Session → contact → qualified → sale per starting channel, with drop-off."""
    settings, span = _prepare(first, last, tz, output_format, output, backend, refresh)
    table = analytics.funnel(settings, span, con=analytics.connect(settings, backend))
    _emit(table, output_format, output, title="Funnel of new customers by starting channel")


def _prepare(
    first: str,
    last: str,
    tz: str,
    output_format: str,
    output: Path | None,
    backend: str,
    refresh: bool,
    **options: object,
) -> tuple[Settings, Period]:
    """Validate everything before any work, then bring the lake up to date."""
    span = period(first, last, tz)
    _check_output(output_format, output)
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown backend {backend!r}; use duckdb or pyspark", field="backend")
    settings = with_options(get_settings(), **options)
    if refresh:
        from plait.analytics.history import keep_history
        from plait.upkeep import upkeep_once

        engine = open_database(settings)
        upkeep_once(engine, settings)
        keep_history(engine, settings)
    return settings, span


def _check_output(output_format: str, output: Path | None) -> None:
    if output_format not in FORMATS:
        raise InvalidInput(
            f"unknown format {output_format!r}; use {', '.join(FORMATS)}", field="format"
        )
    if output_format == "parquet" and output is None:
        raise InvalidInput("--format parquet needs --output FILE", field="output")


def _emit(table: pd.DataFrame, output_format: str, output: Path | None, *, title: str) -> None:
    if output_format == "parquet":
        assert output is not None
        table.to_parquet(output, index=False)
        console.print(f"wrote {len(table)} rows to {output}")
    elif output_format == "csv":
        table.to_csv(output or sys.stdout, index=False)
    elif output_format == "json":
        records = table.to_dict(orient="records")
        if output is None:
            print_json(records)
        else:
            table.to_json(output, orient="records", indent=2)
    else:
        rows = [
            {column: _cell(value) for column, value in row.items()}
            for row in table.to_dict(orient="records")
        ]
        print_table(rows, list(table.columns), title=title)


def _cell(value: object) -> object:
    return round(value, 2) if isinstance(value, float) else value
