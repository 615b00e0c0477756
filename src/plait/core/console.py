"""Terminal output shared by every area's commands: Rich tables, JSON, one-line errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any
from uuid import UUID

import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from plait.core.db import get_engine
from plait.core.errors import InvalidInput
from plait.core.settings import Settings, get_settings

console = Console()
errors = Console(stderr=True)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON (for ``--json``)."""
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())


def print_table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, title: str | None = None
) -> None:
    """Print rows as a table with the given columns."""
    table = Table(title=title, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


def open_database(settings: Settings | None = None) -> Engine:
    """The engine for the configured database, with the schema brought up to date."""
    from plait.migrations import upgrade

    engine = get_engine(settings or get_settings())
    upgrade(engine)
    return engine


JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]
"""The ``--json`` option every command that prints has."""


def parse_id(value: str, field: str = "id") -> UUID:
    """An id given on the command line; a clear error if it is not one."""
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not an id", field=field) from None
