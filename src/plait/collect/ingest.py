"""The ingestion pipeline shared by the tracking API, importers and the demo: decode a
request body, validate and enrich each message, then store the batch in one transaction.

A request is acknowledged only after its transaction has committed, so an acknowledged
event survives the server being killed."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.engine import Engine

from plait.collect.channels import ChannelRules
from plait.collect.event_store import Stored, rejection_row, store
from plait.collect.group_commit import EventWriter
from plait.collect.messages import Envelope, InvalidMessage, Rules, normalize, random_message_id
from plait.collect.sources import channel_config
from plait.core.db import write
from plait.core.errors import InvalidInput, TooLarge, UnsupportedMediaType
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.core.sources import Source
from plait.identity.identifiers import identity_rules

JSON_TYPES = ("application/json", "text/plain", "")


@dataclass
class IngestResult:
    """The outcome of one ingestion call, as the tracking API reports it."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": True,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        }


def rules_from_settings(settings: Settings) -> Rules:
    """The normalisation rules a Settings object describes."""
    try:
        channels = ChannelRules.from_config(channel_config(settings))
    except ValueError as exc:
        raise InvalidInput(f"plait.toml [channels]: {exc}", field="channels") from None
    return Rules(
        identity=identity_rules(settings),
        channels=channels,
        max_event_bytes=settings.collect.max_event_bytes,
        future_tolerance=timedelta(seconds=settings.collect.future_tolerance_seconds),
    )


def decode_body(
    body: bytes, *, content_type: str, content_encoding: str, max_bytes: int
) -> dict[str, Any]:
    """A request body as a JSON object: gzip undone (bounded), JSON or text/plain parsed."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"send JSON as application/json or text/plain, not {media_type}",
            code="unsupported_media_type",
        )
    encoding = content_encoding.strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, max_bytes)
    elif encoding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {encoding!r}; use gzip or none",
            code="unsupported_encoding",
        )
    if len(body) > max_bytes:
        raise TooLarge(f"a request may be at most {max_bytes} bytes", code="request_too_large")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json")
    return payload


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error:
        raise InvalidInput("the body is not valid gzip", code="invalid_gzip") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise TooLarge(
            f"a request may be at most {max_bytes} bytes uncompressed", code="request_too_large"
        )
    if not inflater.eof:
        raise InvalidInput("the gzip body is truncated", code="invalid_gzip")
    return data


def ingest(
    engine: Engine,
    messages: Sequence[Any],
    envelope: Envelope,
    rules: Rules,
    *,
    origin: str = "api",
    positions: Sequence[int] | None = None,
    failures: Sequence[tuple[int, InvalidMessage, Any]] = (),
    content_ids: bool = False,
    committer: EventWriter | None = None,
) -> IngestResult:
    """Validate, enrich and store messages; invalid ones are kept as rejected events.

    ``positions`` numbers the messages in reports (batch index, or a file's line numbers);
    ``failures`` are items that failed before they were messages (a line of bad JSON).
    With ``content_ids`` a message without a ``messageId``, and a rejection, get ids derived
    from their content, so ingesting the same file again stores nothing new. A server passes
    its ``committer`` so concurrent requests share commits.
    """
    make_id = content_message_id(envelope.source) if content_ids else random_message_id
    rows, row_positions, failed = [], [], list(failures)
    for index, message in enumerate(messages):
        position = positions[index] if positions is not None else index
        try:
            rows.append(normalize(message, envelope, rules, message_id=make_id))
            row_positions.append(position)
        except InvalidMessage as exc:
            failed.append((position, exc, message))
    rejected = [
        rejection_row(
            rejection_id=_content_uuid(envelope.source.id, position, payload)
            if content_ids
            else uuid7(),
            source_id=envelope.source.id,
            received_at=envelope.received_at,
            origin=origin,
            position=position,
            code=exc.code,
            message=exc.message,
            field=exc.field,
            payload=payload,
        )
        for position, exc, payload in sorted(failed, key=lambda item: item[0])
    ]
    stored = _store(engine, committer, rows, rejected)
    reports = [
        {
            "index": row["position"],
            "code": row["code"],
            "message": row["message"],
            "field": row["field"],
        }
        for row in rejected
    ]
    reports += suppression_reports(stored, row_positions)
    reports.sort(key=lambda report: report["index"])
    return IngestResult(stored.accepted, stored.duplicates, reports)


def suppression_reports(stored: Stored, positions: Sequence[int]) -> list[dict[str, Any]]:
    """Rejection reports for the events refused because they name an erased person."""
    return [
        {
            "index": positions[row],
            "code": "suppressed",
            "message": "the event carries an identifier of an erased person",
            "field": None,
        }
        for row in stored.suppressed
    ]


def content_message_id(source: Source) -> Callable[[Mapping[str, Any]], str]:
    """Message ids derived from a message's content, for sources that re-send files."""

    def message_id(message: Mapping[str, Any]) -> str:
        canonical = orjson.dumps(message, option=orjson.OPT_SORT_KEYS, default=str)
        return "content-" + hashlib.sha256(source.id.bytes + canonical).hexdigest()[:32]

    return message_id


def _content_uuid(source_id: UUID, position: int, payload: Any) -> UUID:
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str)
    digest = hashlib.sha256(source_id.bytes + str(position).encode() + canonical).digest()
    return UUID(bytes=digest[:16], version=5)


def ingest_one(
    engine: Engine,
    message: Any,
    envelope: Envelope,
    rules: Rules,
    type_: str,
    committer: EventWriter | None = None,
) -> Stored:
    """Store a single message sent to a typed endpoint; an invalid one raises and writes nothing."""
    try:
        row = normalize(message, envelope, rules, type_=type_)
    except InvalidMessage as exc:
        status = 413 if exc.code == "event_too_large" else 400
        raise InvalidInput(exc.message, code=exc.code, field=exc.field, status=status) from None
    return _store(engine, committer, [row], [])


def _store(
    engine: Engine, committer: EventWriter | None, rows: list[dict], rejected: list[dict]
) -> Stored:
    if committer is not None:
        return committer.store(rows, rejected)
    with write(engine, journal_in_memory=True) as conn:
        return store(conn, rows, rejected)
