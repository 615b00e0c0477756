"""Bulk import of events from files — JSON Lines (Segment-shaped messages), CSV and
Parquet — through the same validation, enrichment and de-duplication as the API.

Rows without a ``messageId`` get one derived from their content, so importing a file
twice stores nothing new. Bad rows are reported with their line numbers (Parquet: row
numbers) and kept as rejected events; the good ones are imported."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import Engine

from plait.collect.ingest import IngestResult, ingest, rules_from_settings
from plait.collect.messages import Envelope, InvalidMessage, check_type
from plait.core.clock import utcnow
from plait.core.db import read
from plait.core.errors import InvalidInput, NotFound
from plait.core.settings import Settings
from plait.core.sources import find_source

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TOP_LEVEL_FIELDS = {
    "type": "type",
    "event": "event",
    "name": "name",
    "userid": "userId",
    "user_id": "userId",
    "anonymousid": "anonymousId",
    "anonymous_id": "anonymousId",
    "groupid": "groupId",
    "group_id": "groupId",
    "previousid": "previousId",
    "previous_id": "previousId",
    "messageid": "messageId",
    "message_id": "messageId",
    "timestamp": "timestamp",
    "originaltimestamp": "originalTimestamp",
    "sentat": "sentAt",
}
NESTED_ROOTS = ("properties", "traits", "context", "integrations")
_NUMBER = re.compile(r"-?(0|[1-9]\d{0,14})(\.\d+)?")
CHUNK_ROWS = 1000

Row = tuple[int, Any, InvalidMessage | None]


def import_file(
    engine: Engine,
    settings: Settings,
    path: Path,
    *,
    source_name: str,
    format_: str | None = None,
    mapping: Sequence[str] = (),
    default_type: str | None = None,
    progress: bool = False,
) -> IngestResult:
    """Import ``path`` into the source named ``source_name``; returns what was stored."""
    if not path.is_file():
        raise NotFound(f"no file at {path}", field="file")
    kind = format_ or FORMATS.get(path.suffix.lower())
    if kind not in ("jsonl", "csv", "parquet"):
        raise InvalidInput(
            f"cannot tell the format of {path.name}; pass --format jsonl, csv or parquet",
            field="format",
        )
    check_type(default_type, "--type")
    with read(engine) as conn:
        source = find_source(conn, source_name)
    columns = parse_mapping(mapping)
    rules = rules_from_settings(settings)
    if kind == "jsonl":
        rows = _jsonl_rows(path)
    elif kind == "csv":
        rows = _tabular_rows(_csv_records(path), columns, default_type)
    else:
        rows = _tabular_rows(_parquet_records(path), columns, default_type)

    result = IngestResult()
    origin = f"import:{path.name}"
    with _progress(progress, path, kind) as bar:
        for chunk in _chunks(rows, CHUNK_ROWS):
            good = [(position, message) for position, message, error in chunk if error is None]
            failures = [(position, error, raw) for position, raw, error in chunk if error]
            envelope = Envelope(source=source, received_at=utcnow())
            result.add(
                ingest(
                    engine,
                    [message for _, message in good],
                    envelope,
                    rules,
                    origin=origin,
                    positions=[position for position, _ in good],
                    failures=failures,
                    content_ids=True,
                )
            )
            bar(len(chunk))
    return result


def parse_mapping(mapping: Sequence[str]) -> dict[str, str]:
    """``["userId=customer", ...]`` as ``{column: field}``; fields may be dotted paths."""
    columns: dict[str, str] = {}
    for item in mapping:
        target, sep, column = item.partition("=")
        target, column = target.strip(), column.strip()
        if not sep or not target or not column:
            raise InvalidInput(f"--map takes FIELD=COLUMN, not {item!r}", field="map")
        root = target.split(".", 1)[0]
        if root not in NESTED_ROOTS and target not in TOP_LEVEL_FIELDS.values():
            raise InvalidInput(
                f"--map {item!r}: {target!r} is not a message field (userId, event, timestamp, …)"
                " nor under properties., traits., context.",
                field="map",
            )
        columns[column] = target
    return columns


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line), None
            except orjson.JSONDecodeError as exc:
                text = line.decode("utf-8", "replace").rstrip("\n")
                yield number, text, InvalidMessage("invalid_json", f"not valid JSON: {exc}")


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            return
        for record in reader:
            yield reader.line_num, record


def _parquet_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
        for record in batch.to_pylist():
            number += 1
            yield number, record


def _tabular_rows(
    records: Iterator[tuple[int, dict[str, Any]]], columns: dict[str, str], default_type: str | None
) -> Iterator[Row]:
    for position, record in records:
        try:
            yield position, to_message(record, columns, default_type), None
        except InvalidMessage as exc:
            yield position, record, exc


def to_message(record: dict[str, Any], columns: dict[str, str], default_type: str | None) -> dict:
    """One table row as a Segment message: mapped, known and dotted columns where they name,
    every other non-empty column into ``properties`` (``traits`` for identify/group)."""
    message: dict[str, Any] = {}
    leftovers: dict[str, Any] = {}
    for column, value in record.items():
        if column is None:
            raise InvalidMessage("invalid_row", "the row has more cells than the header")
        if value is None or value == "":
            continue
        target = columns.get(column) or TOP_LEVEL_FIELDS.get(column.lower().replace(" ", ""))
        if target is None and column.split(".", 1)[0] in NESTED_ROOTS:
            target = column
        if target is None:
            leftovers[column] = _cell(value)
        elif "." in target:
            _put(message, target.split("."), _cell(value))
        else:
            message[target] = value if not isinstance(value, str) else value.strip()
    message.setdefault("type", default_type or ("track" if "event" in message else None))
    if leftovers:
        bucket = "traits" if message.get("type") in ("identify", "group") else "properties"
        message.setdefault(bucket, {}).update(leftovers)
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        if key in message and not isinstance(message[key], str):
            message[key] = message[key].isoformat()
    return message


def _cell(value: Any) -> Any:
    """A CSV cell as the JSON value it spells (number, object, array), else the text."""
    if not isinstance(value, str):
        return value.isoformat() if hasattr(value, "isoformat") else value
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    if text[:1] in ("{", "[") or text in ("true", "false"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    return text


def _put(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        node = target.setdefault(key, {})
        if not isinstance(node, dict):
            raise InvalidMessage("invalid_row", f"{'.'.join(path)} clashes with another column")
        target = node
    target[path[-1]] = value


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def _progress(enabled: bool, path: Path, kind: str) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar over a file's rows, or a no-op for ``--json``."""
    if not enabled:
        yield lambda _n: None
        return
    if kind == "parquet":
        total = pq.ParquetFile(path).metadata.num_rows
    else:
        with path.open("rb") as handle:
            total = sum(1 for _ in handle) - (kind == "csv")
    columns = (
        TextColumn("importing {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} rows"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(path.name, total=max(total, 0))
        yield lambda n: bar.advance(task, n)
