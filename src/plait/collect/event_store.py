"""The durable event store: every accepted event, the message ids seen within the
de-duplication window, and every rejected event with its reason and raw payload."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.core.clock import isoformat, parse_timestamp, utcnow
from plait.core.db import (
    InsertPlan,
    JSONValue,
    UTCDateTime,
    chunks,
    dialect_insert,
    insert_plan,
    metadata,
    read,
    write,
)
from plait.core.errors import InvalidInput
from plait.core.sources import sources
from plait.identity.identifiers import Identifier, suppression_key
from plait.identity.suppression import any_suppressed, suppressed_keys

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.Uuid, nullable=False, unique=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("source_id", sa.Uuid, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("event", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("user_id", sa.Text),
    sa.Column("anonymous_id", sa.Text),
    sa.Column("group_id", sa.Text),
    sa.Column("previous_id", sa.Text),
    sa.Column("channel", sa.String(100)),
    sa.Column("traffic_source", sa.Text),
    sa.Column("traffic_medium", sa.Text),
    sa.Column("traffic_campaign", sa.Text),
    sa.Column("device_type", sa.String(20)),
    sa.Column("os", sa.String(100)),
    sa.Column("browser", sa.String(100)),
    sa.Column("timestamp", UTCDateTime, nullable=False),
    sa.Column("original_timestamp", UTCDateTime),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("traits", JSONValue),
    sa.Column("properties", JSONValue),
    sa.Column("context", JSONValue),
    sa.Column("integrations", JSONValue),
    sa.Column("warnings", JSONValue),
    sa.Column("identity_kind", sa.String(50)),
    sa.Column("identity_value", sa.Text),
    sa.Index("ix_events_timestamp", "timestamp", "id"),
    sa.Index("ix_events_identity", "identity_kind", "identity_value", "timestamp"),
    sa.Index("ix_events_source_id", "source_id", "timestamp"),
    # A per-event trigger on PostgreSQL (migration 0007 says why it is SQLite's only).
    sa.ForeignKeyConstraint(["source_id"], ["sources.id"]).ddl_if(dialect="sqlite"),
    sqlite_autoincrement=True,
)
"""Events in arrival order: ``seq`` only grows, which is what lake replication follows.

``identity_kind``/``identity_value`` is the event's anchor, its strongest identifier: the
event belongs to whichever profile that identifier belongs to (``plait.identity``)."""

ANCHORED_ON_ANONYMOUS_ID = sa.text("'anonymous_id'")
"""The anchor kind as a literal, not a parameter: a query's condition then names the partial
index's predicate word for word, which a prepared statement's generic plan needs to use it."""

NOT_ANCHORED_ON_ANONYMOUS_ID = sa.or_(
    events.c.identity_kind.is_distinct_from(ANCHORED_ON_ANONYMOUS_ID),
    events.c.identity_value.is_distinct_from(events.c.anonymous_id),
)
"""Events a look-up by anonymous id cannot find through ``ix_events_identity``."""

sa.Index(
    "ix_events_anonymous_id_unanchored",
    events.c.anonymous_id,
    events.c.timestamp,
    sqlite_where=NOT_ANCHORED_ON_ANONYMOUS_ID,
    postgresql_where=NOT_ANCHORED_ON_ANONYMOUS_ID,
)
"""Anonymous ids of the events anchored on something else (a user id, an email): the rest are
in ``ix_events_identity`` already. Each entry is a page the writer changes at random, and
SQLite's one writer is the ingest bound; an anonymous visitor's events no longer add one
(in the ingest bench, 60 % of events; migration 0008)."""

INGEST_LOCK = 0x504C414954_01
"""PostgreSQL advisory lock: event writers hold it shared, lake replication briefly
exclusive, to learn a ``seq`` below which every transaction has finished."""

seen_messages = sa.Table(
    "seen_messages",
    metadata,
    sa.Column("source_id", sa.Uuid, primary_key=True),
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("received_at", UTCDateTime, nullable=False, index=True),
    sqlite_with_rowid=False,
)

rejected_events = sa.Table(
    "rejected_events",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("source_id", sa.Uuid, sa.ForeignKey("sources.id"), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("origin", sa.String(300), nullable=False),
    sa.Column("position", sa.Integer),
    sa.Column("code", sa.String(50), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("field", sa.String(200)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_rejected_events_received_at", "received_at", "id"),
)

MAX_PAYLOAD_KEPT = 256 * 1024


@dataclass(frozen=True)
class Stored:
    """What a write did: events newly stored and duplicates acknowledged but not stored."""

    accepted: int
    duplicates: int
    suppressed: tuple[int, ...] = ()


EVENT_COLUMNS = tuple(column.name for column in events.columns if column.name != "seq")


@dataclass(frozen=True)
class Batch:
    """One request's events and rejections, ready to store.

    ``params`` and ``seen_params`` (SQLite), or ``encoded`` (PostgreSQL), are its rows
    already prepared for the driver (:meth:`bound`), so a caller can do that work on its own
    thread before queueing for a shared commit. A :meth:`lean` batch has only those (and each
    row's ``identifiers``), to travel to a writer process cheaply.
    """

    rows: Sequence[dict[str, Any]]
    rejected: Sequence[dict[str, Any]] = ()
    params: Sequence[tuple[Any, ...]] | None = None
    seen_params: Sequence[tuple[Any, ...]] | None = None
    encoded: Sequence[bytes] | None = None
    identifiers: Sequence[Sequence[Identifier]] | None = None

    @classmethod
    def bound(
        cls, dialect: sa.Dialect, rows: Sequence[dict[str, Any]], rejected: Sequence[dict]
    ) -> Batch:
        """A batch whose rows are already prepared for the driver: each row as a JSON array for
        PostgreSQL, which parses them in its own process (:func:`_insert_encoded`); bound
        parameter tuples for SQLite."""
        if dialect.name == "postgresql":
            return cls(rows, rejected, encoded=[_encoded(row) for row in rows])
        return cls(
            rows,
            rejected,
            _events_plan(dialect).bind(rows),
            _seen_plan(dialect).bind(rows),
            identifiers=[row["identifiers"] for row in rows],
        )

    def lean(self) -> Batch:
        """This SQLite-bound batch without its rows, which cost ten times more to pickle than
        the bound tuples (bench/README.md): :func:`store_groups` reads what it needs from those."""
        if self.params is None:
            raise ValueError("only a batch bound for SQLite can do without its rows")
        return replace(self, rows=())

    def __len__(self) -> int:
        return len(self.params) if self.params is not None else len(self.rows)

    @property
    def prepared(self) -> bool:
        return self.params is not None or self.encoded is not None

    def keys(self) -> list[tuple[Any, Any]]:
        """Each event's de-duplication key (source id, message id), as the claims use it."""
        if self.seen_params is not None:
            return [params[:2] for params in self.seen_params]
        return [(row["source_id"], row["message_id"]) for row in self.rows]

    def identifiers_at(self, position: int) -> Sequence[Identifier]:
        if self.identifiers is not None:
            return self.identifiers[position]
        return self.rows[position]["identifiers"]

    def row_at(self, dialect: sa.Dialect, position: int) -> dict[str, Any]:
        """Event ``position`` as a row of Python values, read back from its bound tuple in a
        :meth:`lean` batch."""
        if self.rows:
            return self.rows[position]
        return _events_plan(dialect).unbind(self.params[position])


def _encoded(row: dict[str, Any]) -> bytes:
    """A row as a JSON array of its :data:`EVENT_COLUMNS` values, by position: PostgreSQL 15
    parses an object's keys character by character and sorts them, which made an object per
    row cost it 12 µs more per event (bench/README.md)."""
    return orjson.dumps(_column_values(row))


_column_values = itemgetter(*EVENT_COLUMNS)


SEEN_COLUMNS = ("source_id", "message_id", "received_at")


def _events_plan(dialect: sa.Dialect) -> InsertPlan:
    return insert_plan(dialect, events, EVENT_COLUMNS)


def _seen_plan(dialect: sa.Dialect) -> InsertPlan:
    return insert_plan(dialect, seen_messages, SEEN_COLUMNS)


def store(conn: Connection, rows: Sequence[dict[str, Any]], rejected: Sequence[dict]) -> Stored:
    """Store new events (skipping message ids already seen) and rejections, set-wise."""
    return store_groups(conn, [Batch(rows, rejected)])[0]


def store_groups(conn: Connection, batches: Sequence[Batch]) -> list[Stored]:
    """Store several requests' events in one transaction, reporting each request's outcome.

    A message id seen twice — in the database, or in two requests of the group — is stored
    once and counted as accepted by the first request that carried it.
    """
    dialect = conn.dialect
    batches = [
        batch if batch.prepared else Batch.bound(dialect, batch.rows, batch.rejected)
        for batch in batches
    ]
    suppressed = _suppressed_rows(conn, batches)
    owner: dict[tuple[Any, Any], tuple[int, int]] = {}
    for index, batch in enumerate(batches):
        for position, key in enumerate(batch.keys()):
            if (index, position) not in suppressed:
                owner.setdefault(key, (index, position))
    accepted = [0] * len(batches)
    if owner:
        claimed = _claim_message_ids(conn, batches, owner)
        for index, _position in claimed:
            accepted[index] += 1
        if dialect.name == "postgresql":
            _insert_encoded(conn, [batches[i].encoded[p] for i, p in claimed])
        else:
            _events_plan(dialect).execute(conn, [batches[i].params[p] for i, p in claimed])
    rejected_rows = [row for batch in batches for row in batch.rejected]
    rejected_rows += [suppressed_row(batches[i].row_at(dialect, p)) for i, p in sorted(suppressed)]
    if rejected_rows:
        conn.execute(dialect_insert(conn)(rejected_events).on_conflict_do_nothing(), rejected_rows)
    return [
        Stored(
            accepted=accepted[index],
            duplicates=len(batch) - accepted[index] - len(mine),
            suppressed=tuple(mine),
        )
        for index, batch in enumerate(batches)
        for mine in [sorted(p for i, p in suppressed if i == index)]
    ]


def _insert_encoded(conn: Connection, encoded: Sequence[bytes]) -> None:
    """Insert rows given as JSON arrays (:func:`_encoded`) in one statement: PostgreSQL parses
    them into ``events`` rows in its own process, off the server's GIL. Against binding values
    and formatting them for COPY, the server spends about 20 µs less CPU per event."""
    if encoded:
        conn.exec_driver_sql(_INSERT_ENCODED, ((b"[" + b",".join(encoded) + b"]").decode(),))


def _from_json_array(position: int, column: sa.Column) -> str:
    """The SQL that reads ``column`` from element ``position`` of a row array ``r``: JSON as
    it is, the rest as text, cast where the column's type needs more than the assignment cast
    from text. ``None`` is SQL NULL in every column, as when it is bound."""
    if isinstance(column.type, sa.JSON):
        return f"NULLIF(r->{position}, 'null')"
    if isinstance(column.type, sa.Uuid):
        return f"(r->>{position})::uuid"
    if isinstance(column.type, UTCDateTime):
        return f"(r->>{position})::timestamptz"
    return f"r->>{position}"


_INSERT_ENCODED = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) SELECT "
    + ", ".join(_from_json_array(i, events.c[name]) for i, name in enumerate(EVENT_COLUMNS))
    + " FROM jsonb_array_elements(%s::jsonb) AS r"
)


def _suppressed_rows(conn: Connection, batches: Sequence[Batch]) -> set[tuple[int, int]]:
    """(batch, position) of rows carrying an identifier on the suppression list (a row's
    ``identifiers``, from :func:`~plait.collect.messages.normalize`). With nobody erased, as
    is usual, one cheap query answers for the whole group."""
    if not any(len(batch) for batch in batches) or not any_suppressed(conn):
        return set()
    keys_of = {
        (index, position): {
            suppression_key(identifier) for identifier in batch.identifiers_at(position)
        }
        for index, batch in enumerate(batches)
        for position in range(len(batch))
    }
    hits = suppressed_keys(conn, set().union(*keys_of.values()))
    return {place for place, keys in keys_of.items() if not hits.isdisjoint(keys)}


def suppressed_row(row: dict[str, Any]) -> dict[str, Any]:
    """The rejection kept for an event of an erased person: what it was, not who."""
    return rejection_row(
        rejection_id=row["id"],
        source_id=row["source_id"],
        received_at=row["received_at"],
        origin="suppressed",
        position=None,
        code="suppressed",
        message="the event carries an identifier of an erased person (suppression list)",
        field=None,
        payload={
            "type": row["type"],
            "event": row["event"],
            "messageId": row["message_id"],
            "timestamp": isoformat(row["timestamp"]),
        },
    )


def _claim_message_ids(
    conn: Connection, batches: Sequence[Batch], owner: dict[tuple[UUID, str], tuple[int, int]]
) -> list[tuple[int, int]]:
    """Record message ids as seen; returns (batch, position) of those not seen before."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({INGEST_LOCK})")
        # One prepared statement with one JSON parameter, whatever the group's size: orjson
        # writes it far faster than the driver adapts three arrays of Python values. Claims
        # go in key order, so concurrent writers claiming the same ids cannot deadlock.
        claims = orjson.dumps(
            [
                (source_id, message_id, batches[i].rows[p]["received_at"])
                for (source_id, message_id), (i, p) in sorted(owner.items())
            ]
        )
        claimed = conn.exec_driver_sql(
            "INSERT INTO seen_messages (source_id, message_id, received_at) "
            "SELECT (c->>0)::uuid, c->>1, (c->>2)::timestamptz "
            "FROM jsonb_array_elements(%s::text::jsonb) AS c "
            "ON CONFLICT DO NOTHING RETURNING source_id, message_id",
            (claims.decode(),),
        )
        return [owner[(source_id, message_id)] for source_id, message_id in claimed]
    # SQLite has one writer, so looking the ids up and then inserting the new ones is as good
    # as one statement. It answers in one step when nothing is a duplicate (the usual case),
    # where RETURNING hands back each claimed row in a step of its own, each letting go of
    # the GIL and queueing to take it back behind the request threads.
    places = list(owner.values())
    bound = [batches[index].seen_params[position] for index, position in places]
    seen = _seen_among(conn, bound)
    fresh = [k for k, params in enumerate(bound) if (params[0], params[1]) not in seen]
    _seen_plan(conn.dialect).execute(conn, [bound[k] for k in fresh])
    return [places[k] for k in fresh]


def _seen_among(conn: Connection, bound: Sequence[tuple[Any, ...]]) -> set[tuple[Any, Any]]:
    """Which of these (SQLite-bound) claims' keys ``seen_messages`` already holds."""
    seen: set[tuple[Any, Any]] = set()
    for chunk in chunks(bound, 10_000):
        pairs = ", ".join(["(?, ?)"] * len(chunk))
        found = conn.exec_driver_sql(
            f"SELECT s.source_id, s.message_id FROM (VALUES {pairs}) AS v "
            "JOIN seen_messages AS s ON s.source_id = v.column1 AND s.message_id = v.column2",
            tuple(value for params in chunk for value in params[:2]),
        )
        seen.update((source_id, message_id) for source_id, message_id in found)
    return seen


def rejection_row(
    *,
    rejection_id: UUID,
    source_id: UUID,
    received_at: datetime,
    origin: str,
    position: int | None,
    code: str,
    message: str,
    field: str | None,
    payload: Any,
) -> dict[str, Any]:
    """A ``rejected_events`` row; the raw payload is kept (as JSON text, truncated if huge)."""
    text = payload if isinstance(payload, str) else orjson.dumps(payload, default=str).decode()
    return {
        "id": rejection_id,
        "source_id": source_id,
        "received_at": received_at,
        "origin": origin[:300],
        "position": position,
        "code": code,
        "message": message,
        "field": field,
        "payload": text[:MAX_PAYLOAD_KEPT],
    }


def committed_seq(engine: Engine) -> int:
    """A ``seq`` at or below which no event can still appear (every writer has finished).

    SQLite has one writer at a time, so what is committed is final; on PostgreSQL writers
    hold :data:`INGEST_LOCK` shared, and taking it exclusively for an instant waits them out.
    """
    if engine.dialect.name != "postgresql":
        with read(engine) as conn:
            return newest_seq(conn)
    with write(engine) as conn:
        hold_writers(conn)
        return newest_seq(conn)


def hold_writers(conn: Connection) -> None:
    """Make ``conn``'s write transaction the only event writer until it ends: on PostgreSQL
    it takes :data:`INGEST_LOCK` exclusively (waiting for the writers before it); SQLite's
    one writer already is. What :func:`newest_seq` then gives is a :func:`committed_seq`
    once the transaction commits."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({INGEST_LOCK})")


def newest_seq(conn: Connection) -> int:
    """The highest ``seq`` ``conn`` sees."""
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.seq), 0))).scalar_one()


def prune_seen(conn: Connection, before: datetime) -> int:
    """Forget message ids received before ``before`` (the end of the de-duplication window)."""
    return conn.execute(seen_messages.delete().where(seen_messages.c.received_at < before)).rowcount


@dataclass(frozen=True)
class EventFilter:
    """Filters for reading events back; every field is optional."""

    source: str | None = None
    type: str | None = None
    event: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    channel: str | None = None


def list_events(
    conn: Connection,
    filters: EventFilter,
    *,
    limit: int = 50,
    cursor: str | None = None,
    scope: sa.FromClause = events,
) -> tuple[list[dict[str, Any]], str | None]:
    """Events newest first, keyset-paginated; returns the page and the next page's cursor.

    ``scope`` narrows the events read, e.g. to one customer's (a join of ``events``).
    """
    query = sa.select(events, sources.c.name.label("source")).select_from(
        scope.join(sources, sources.c.id == events.c.source_id)
    )
    for column, value in (
        (sources.c.name, filters.source),
        (events.c.type, filters.type),
        (events.c.event, filters.event),
        (events.c.channel, filters.channel),
        (events.c.user_id, filters.user_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.user_id is not None:  # a user id is always its event's anchor: use that index
        query = query.where(
            events.c.identity_kind == "user_id", events.c.identity_value == filters.user_id
        )
    if filters.anonymous_id is not None:
        query = query.where(_with_anonymous_id(filters.anonymous_id))
    if filters.since is not None:
        query = query.where(events.c.timestamp >= filters.since)
    if filters.until is not None:
        query = query.where(events.c.timestamp < filters.until)
    query = _after_cursor(query, events.c.timestamp, events.c.id, cursor)
    query = query.order_by(events.c.timestamp.desc(), events.c.id.desc()).limit(limit + 1)
    rows = [row._mapping for row in conn.execute(query)]
    page = [event_dict(row) for row in rows[:limit]]
    more = len(rows) > limit
    return page, _cursor(rows[limit - 1]["timestamp"], rows[limit - 1]["id"]) if more else None


def _with_anonymous_id(anonymous_id: str) -> sa.ColumnElement[bool]:
    """Events with ``anonymousId`` ``anonymous_id``, as two index reads: those anchored on it
    (``ix_events_identity``) and the rest (``ix_events_anonymous_id_unanchored``)."""
    same = events.c.anonymous_id == anonymous_id
    anchored = sa.and_(
        events.c.identity_kind == ANCHORED_ON_ANONYMOUS_ID,
        events.c.identity_value == anonymous_id,
        same,
    )
    return sa.or_(anchored, sa.and_(same, NOT_ANCHORED_ON_ANONYMOUS_ID))


def list_rejected(
    conn: Connection, *, source: str | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Rejected events newest first, with reason and raw payload."""
    query = sa.select(rejected_events, sources.c.name.label("source")).join(sources)
    if source is not None:
        query = query.where(sources.c.name == source)
    query = _after_cursor(query, rejected_events.c.received_at, rejected_events.c.id, cursor)
    query = query.order_by(rejected_events.c.received_at.desc(), rejected_events.c.id.desc())
    rows = [row._mapping for row in conn.execute(query.limit(limit + 1))]
    page = [
        {
            "id": str(row["id"]),
            "source": row["source"],
            "received_at": isoformat(row["received_at"]),
            "origin": row["origin"],
            "position": row["position"],
            "code": row["code"],
            "message": row["message"],
            "field": row["field"],
            "payload": row["payload"],
        }
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return page, _cursor(rows[limit - 1]["received_at"], rows[limit - 1]["id"]) if more else None


def event_dict(row: Any) -> dict[str, Any]:
    """An event as the API shows it: Segment's field names plus Plait's enrichment."""
    return {
        "id": str(row["id"]),
        "messageId": row["message_id"],
        "source": row["source"],
        "type": row["type"],
        "event": row["event"],
        "name": row["name"],
        "userId": row["user_id"],
        "anonymousId": row["anonymous_id"],
        "groupId": row["group_id"],
        "previousId": row["previous_id"],
        "channel": row["channel"],
        "traffic": {
            "source": row["traffic_source"],
            "medium": row["traffic_medium"],
            "campaign": row["traffic_campaign"],
        },
        "device": {"type": row["device_type"], "os": row["os"], "browser": row["browser"]},
        "timestamp": isoformat(row["timestamp"]),
        "originalTimestamp": isoformat(row["original_timestamp"]),
        "sentAt": isoformat(row["sent_at"]),
        "receivedAt": isoformat(row["received_at"]),
        "traits": row["traits"],
        "properties": row["properties"],
        "context": row["context"],
        "integrations": row["integrations"],
        "warnings": row["warnings"],
    }


def _cursor(moment: datetime, row_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{moment.isoformat()}|{row_id}".encode()).decode()


def _after_cursor(query: sa.Select, time_col: Any, id_col: Any, cursor: str | None) -> sa.Select:
    if not cursor:
        return query
    try:
        moment_text, _, id_text = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        moment, row_id = parse_timestamp(moment_text), UUID(id_text)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the cursor is not one this API gave out", field="cursor") from None
    return query.where(sa.or_(time_col < moment, sa.and_(time_col == moment, id_col < row_id)))


def events_after(
    conn: Connection, source_id: UUID, after: int | None, limit: int, *, settle: timedelta
) -> tuple[list[Any], int]:
    """A source's events in arrival order (``seq``), newest first, above ``after``; and a
    cursor that stays behind events too recent to be sure nothing arrives before them."""
    query = (
        sa.select(events, sources.c.name.label("source"))
        .join(sources, sources.c.id == events.c.source_id)
        .where(events.c.source_id == source_id)
    )
    if after is not None:
        query = query.where(events.c.seq > after)
    found = [row._mapping for row in conn.execute(query.order_by(events.c.seq.desc()).limit(limit))]
    settled_before = utcnow() - settle
    settled = [row["seq"] for row in found if row["received_at"] <= settled_before]
    if settled:
        cursor = max(settled)
    elif found:
        cursor = max(after or 0, min(row["seq"] for row in found) - 1)
    else:
        cursor = after or 0
    return found, cursor
