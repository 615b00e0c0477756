"""Resolution: new events into the identity graph, in order, a chunk at a time.

Events are read in arrival order (``events.seq``) after the last resolved one. For each chunk
the part of the graph its identifiers touch is loaded set-wise, the merge rules are applied
to the events one by one in memory (:class:`GraphState`), and the new profiles, identifiers,
merges and refusals are written set-wise, in the transaction that advances the progress
mark. The reading and deciding happen before that transaction, which only writes, unless
the graph changed in between (:func:`_resolve_next`). Graph changes hold a lock
(:func:`lock_graph`), so any number of servers and workers can resolve at once without
corrupting the graph; each event is resolved exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import committed_seq, events
from plait.core.clock import utcnow
from plait.core.db import (
    Write,
    among,
    bound_insert,
    bound_update,
    chunks,
    in_order,
    read,
    write,
)
from plait.core.garbage import collector_paused
from plait.core.ids import uuid7
from plait.identity.graph import (
    bump_version,
    identifier_filter,
    identities,
    identity_merges,
    identity_progress,
    identity_refusals,
    lock_graph,
    profiles,
    progress,
)
from plait.identity.identifiers import Identifier, IdentityRules, identifiers_of
from plait.identity.merge_rules import GraphState, Merge, Outcome

RESOLVE_COLUMNS = (
    events.c.seq,
    events.c.id,
    events.c.type,
    events.c.event,
    events.c.channel,
    events.c.timestamp,
    events.c.user_id,
    events.c.anonymous_id,
    events.c.previous_id,
    events.c.traits,
    events.c.identity_kind,
    events.c.identity_value,
    events.c.context["traits"].label("context_traits"),
    events.c.context["externalIds"].label("context_external_ids"),
    events.c.context[("device", "id")].label("context_device_id"),
)
"""What resolving reads of an event: of its ``context`` only the parts that carry identifiers
and traits (the rest, page, user agent and campaign, is most of its bytes). Those parts come
last (:func:`resolvable` relies on it)."""

BACKLOG_CHUNK_EVENTS = 20_000
"""Events per write transaction when resolving a backlog (``plait profiles resolve``, the
demo, imports). Bigger chunks do less in all: a customer's events in one chunk update their
profile once and load their part of the graph once. At 1M events on PostgreSQL: 17,650
events/s with 5,000, 18,986 with 10,000, 21,678-22,031 with 20,000, 22,500 with 50,000. The
server resolves in much smaller chunks (``profiles.pipeline.SERVING_CHUNK_EVENTS``)."""

ChunkHook = Callable[[Connection, Sequence[Mapping[str, Any]], Mapping[int, UUID]], Write]
"""Called with the chunk's events and each event's home profile (by ``seq``), on the
connection the chunk was read with; it reads what it needs and returns what to write in the
resolving transaction. How the profiles area keeps traits and first/last seen current."""


@dataclass
class ResolveReport:
    events: int = 0
    profiles: int = 0
    identifiers: int = 0
    merges: int = 0
    refusals: int = 0

    def add(self, other: ResolveReport) -> None:
        for name in ("events", "profiles", "identifiers", "merges", "refusals"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def resolve_pending(
    engine: Engine,
    rules: IdentityRules,
    *,
    chunk_events: int = BACKLOG_CHUNK_EVENTS,
    on_chunk: ChunkHook | None = None,
    max_events: int | None = None,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> ResolveReport:
    """Resolve every event committed so far (or ``max_events`` of them)."""
    report = ResolveReport()
    watermark = committed_seq(engine)
    while max_events is None or report.events < max_events:
        size = chunk_events if max_events is None else min(chunk_events, max_events - report.events)
        done, taken = _resolve_next(engine, rules, watermark, size, on_chunk)
        if not taken:
            break
        report.add(done)
        on_progress(taken)
        if taken < size:  # the rest of the way to the watermark is done
            break
    return report


def resolve_chunk(
    conn: Connection,
    rules: IdentityRules,
    watermark: int,
    size: int,
    on_chunk: ChunkHook | None = None,
) -> tuple[ResolveReport, int]:
    """Resolve, in ``conn``'s write transaction, up to ``size`` of the events after the last
    resolved one and at or below ``watermark`` (a :func:`committed_seq`); returns what was
    done and how many events were read (fewer than ``size``: caught up with ``watermark``)."""
    with collector_paused():
        return _resolve_chunk(conn, rules, watermark, size, on_chunk)


def _resolve_next(
    engine: Engine, rules: IdentityRules, watermark: int, size: int, on_chunk: ChunkHook | None
) -> tuple[ResolveReport, int]:
    """Resolve the next chunk, reading and deciding before taking the writer.

    The chunk is planned in a read transaction, then written in a short write transaction
    if the graph is still as it was read: every change to it bumps its version, so an equal
    version (and resolved mark) means nothing the plan read has moved. Otherwise the chunk is
    resolved again, all of it under the lock. On SQLite, where ingestion shares the one
    writer, this keeps the writer for the writing alone (about a third of the work).
    """
    with collector_paused():
        with read(engine) as conn:
            plan = _plan_chunk(conn, rules, watermark, size, on_chunk)
        if plan is None:
            return ResolveReport(), 0
        with write(engine) as conn:
            lock_graph(conn)
            mark = progress(conn)
            if (mark["resolved_seq"], mark["version"]) != (plan.start, plan.version):
                return _resolve_chunk(conn, rules, watermark, size, on_chunk)
            return _write_chunk(conn, plan), len(plan.rows)


@dataclass
class _ChunkPlan:
    start: int
    version: int
    rows: list[dict[str, Any]]
    changes: _Changes
    hook_write: Write | None


def _plan_chunk(
    conn: Connection,
    rules: IdentityRules,
    watermark: int,
    size: int,
    on_chunk: ChunkHook | None,
) -> _ChunkPlan | None:
    """What resolving the next chunk would write, read from ``conn``; None when there is
    nothing to resolve. The version is read first: anything committed after it changes it."""
    mark = conn.execute(
        sa.select(identity_progress.c.resolved_seq, identity_progress.c.version).where(
            identity_progress.c.id == 1
        )
    ).first()
    start, version = mark if mark is not None else (0, 0)
    rows = _chunk_rows(conn, start, watermark, size)
    if not rows:
        return None
    changes = plan_events(conn, rules, rows)
    hook_write = on_chunk(conn, rows, changes.homes) if on_chunk is not None else None
    return _ChunkPlan(start, version, rows, changes, hook_write)


def _write_chunk(conn: Connection, plan: _ChunkPlan) -> ResolveReport:
    plan.changes.write(conn)
    if plan.hook_write is not None:
        plan.hook_write(conn)
    bump_version(conn, resolved_seq=plan.rows[-1]["seq"])
    return plan.changes.report


def _chunk_rows(conn: Connection, start: int, watermark: int, size: int) -> list[dict[str, Any]]:
    if start >= watermark:
        return []
    return resolvable(
        conn.execute(
            sa.select(*RESOLVE_COLUMNS)
            .where(events.c.seq > start, events.c.seq <= watermark)
            .order_by(events.c.seq)
            .limit(size)
        )
    )


def _resolve_chunk(
    conn: Connection,
    rules: IdentityRules,
    watermark: int,
    size: int,
    on_chunk: ChunkHook | None,
) -> tuple[ResolveReport, int]:
    lock_graph(conn)
    start = progress(conn)["resolved_seq"]
    rows = _chunk_rows(conn, start, watermark, size)
    if not rows:
        return ResolveReport(), 0
    done, homes = resolve_events(conn, rules, rows)
    if on_chunk is not None:
        on_chunk(conn, rows, homes)(conn)
    bump_version(conn, resolved_seq=rows[-1]["seq"])
    return done, len(rows)


def resolvable(result: sa.Result[Any]) -> list[dict[str, Any]]:
    """A query's rows of ``RESOLVE_COLUMNS`` as events with the ``context`` they were read
    with (fetched at once and zipped with the column names: a row mapping per row costs more
    than the resolving it is for)."""
    keys = list(result.keys())[:-3]  # the last three are the parts of the context
    found = []
    for values in result.all():
        event = dict(zip(keys, values, strict=False))
        event["context"] = {
            "traits": values[-3],
            "externalIds": values[-2],
            "device": {"id": values[-1]},
        }
        found.append(event)
    return found


def event_identifiers(event: Mapping[str, Any], rules: IdentityRules) -> list[Identifier]:
    """An event's identifiers, strongest first, its stored anchor always leading."""
    anchor = (event["identity_kind"], event["identity_value"])
    if anchor[0] is None:
        return identifiers_of(event, rules)
    if _ids_only(event):  # most events: the anchor, normalised at ingestion, and one more id
        found = [anchor]
        for kind in ("user_id", "anonymous_id"):
            normal = rules.normalize(kind, event.get(kind)) if kind != anchor[0] else None
            if normal is not None and (kind, normal) != anchor:
                found.append((kind, normal))
        return found
    found = identifiers_of(event, rules)
    return [anchor, *(identifier for identifier in found if identifier != anchor)]


def _ids_only(event: Mapping[str, Any]) -> bool:
    """Whether ``userId`` and ``anonymousId`` are all the identifiers the event can carry:
    no traits, external ids or device id, and not an alias."""
    if event.get("type") == "alias" or event.get("traits"):
        return False
    context = event.get("context") or {}
    device = context.get("device")
    return not (
        context.get("traits")
        or context.get("externalIds")
        or (isinstance(device, Mapping) and device.get("id") is not None)
    )


def resolve_events(
    conn: Connection, rules: IdentityRules, rows: Sequence[Mapping[str, Any]]
) -> tuple[ResolveReport, dict[int, UUID]]:
    """Apply events to the graph; returns what changed and each event's home profile."""
    changes = plan_events(conn, rules, rows)
    changes.write(conn)
    return changes.report, changes.homes


@dataclass
class _Changes:
    """What applying a chunk of events to the graph decided, bound and not yet written."""

    write: Write
    homes: dict[int, UUID]
    report: ResolveReport


def plan_events(
    conn: Connection, rules: IdentityRules, rows: Sequence[Mapping[str, Any]]
) -> _Changes:
    """Load the graph around the events' identifiers and apply the events to it in memory."""
    per_event = [event_identifiers(row, rules) for row in rows]
    wanted = {identifier for found in per_event for identifier in found}
    state = load_state(conn, rules, wanted)
    existing = set(state.parent)
    now = utcnow()
    homes: dict[int, UUID] = {}
    links: list[dict[str, Any]] = []
    created: list[UUID] = []
    merges: list[tuple[Merge, UUID | None]] = []
    refusals: list[dict[str, Any]] = []
    for row, found in zip(rows, per_event, strict=True):
        outcome = state.apply(found)
        if outcome.home is None:
            continue
        homes[row["seq"]] = outcome.home
        _collect(outcome, row, now, links, created, merges, refusals)
    report = ResolveReport(len(rows), len(created), len(links), len(merges), len(refusals))
    write, _merge_ids = bound_changes(
        conn.dialect, state, existing, now, created, links, merges, refusals
    )
    return _Changes(write, homes, report)


def _collect(
    outcome: Outcome,
    row: Mapping[str, Any],
    now: Any,
    links: list[dict[str, Any]],
    created: list[UUID],
    merges: list[tuple[Merge, UUID | None]],
    refusals: list[dict[str, Any]],
) -> None:
    created.extend(outcome.created)
    links.extend(
        {
            "kind": kind,
            "value": value,
            "profile_id": profile_id,
            "first_seen": row["timestamp"],
            "event_id": row["id"],
        }
        for (kind, value), profile_id in outcome.links
    )
    merges.extend((merge, row["id"]) for merge in outcome.merges)
    refusals.extend(
        {
            "id": uuid7(),
            "event_id": row["id"],
            "code": refusal.code,
            "message": refusal.message,
            "identifiers": [list(identifier) for identifier in refusal.identifiers],
            "profile_ids": [str(profile_id) for profile_id in refusal.profile_ids],
            "created_at": now,
        }
        for refusal in outcome.refusals
    )


def load_state(conn: Connection, rules: IdentityRules, wanted: Iterable[Identifier]) -> GraphState:
    """The graph around ``wanted``: their homes, those homes' roots and the roots' counts."""
    home: dict[Identifier, UUID] = {}
    roots: dict[UUID, UUID] = {}
    for pairs in chunks(wanted):
        query = (
            sa.select(
                identities.c.kind, identities.c.value, identities.c.profile_id, profiles.c.root_id
            )
            .join(profiles, profiles.c.id == identities.c.profile_id)
            .where(identifier_filter(pairs, conn.dialect.name))
        )
        for kind, value, profile_id, root_id in conn.execute(query):
            home[(kind, value)] = profile_id
            roots[profile_id] = root_id
            roots[root_id] = root_id
    return GraphState(rules, home, roots, root_counts(conn, rules, set(roots.values())), uuid7)


def root_counts(
    conn: Connection, rules: IdentityRules, root_ids: Iterable[UUID]
) -> dict[UUID, dict[str, int]]:
    """How many identifiers of each limited kind each customer holds."""
    counts: dict[UUID, dict[str, int]] = {}
    limited = sorted(rules.limits)
    if not limited:
        return counts
    for chunk in chunks(root_ids):
        query = (
            sa.select(profiles.c.root_id, identities.c.kind, sa.func.count())
            .join(profiles, profiles.c.id == identities.c.profile_id)
            .where(
                among(profiles.c.root_id, chunk, conn.dialect.name),
                # Not an index condition: the walk must go root_id -> profile_id, not
                # through every e-mail and phone of the graph by kind.
                identities.c.kind.concat("").in_(limited),
            )
            .group_by(profiles.c.root_id, identities.c.kind)
        )
        for root_id, kind, count in conn.execute(query):
            counts.setdefault(root_id, {})[kind] = count
    return counts


def bound_changes(
    dialect: sa.Dialect,
    state: GraphState,
    existing: set[UUID],
    now: Any,
    created: Sequence[UUID],
    links: Sequence[dict[str, Any]],
    merges: Sequence[tuple[Merge, UUID | None]],
    refusals: Sequence[dict[str, Any]],
    *,
    reason: str = "event",
    created_by: str | None = None,
) -> tuple[Write, list[UUID]]:
    """What :class:`GraphState` decided, bound for the driver now (outside the writer): the
    write to run in the transaction that changes the graph, and the new merges' ids."""
    merge_rows = [
        {
            "id": uuid7(),
            "into_id": merge.into_id,
            "from_id": merge.from_id,
            "reason": reason,
            "event_id": event_id,
            "identifiers": [list(identifier) for identifier in merge.identifiers],
            "created_at": now,
            "created_by": created_by,
        }
        for merge, event_id in merges
    ]
    parents = {row["from_id"]: (row["into_id"], row["id"]) for row in merge_rows}
    new_profiles = [
        {
            "id": profile_id,
            "root_id": state.find(profile_id),
            "parent_id": parents.get(profile_id, (None, None))[0],
            "merge_id": parents.get(profile_id, (None, None))[1],
            "created_at": now,
        }
        for profile_id in created
    ]
    moved = [from_id for from_id in parents if from_id in existing]
    write = in_order(
        bound_insert(dialect, profiles, new_profiles),
        bound_insert(dialect, identities, links),
        bound_insert(dialect, identity_merges, merge_rows),
        bound_update(
            dialect,
            profiles,
            [
                {"id": from_id, "parent_id": parents[from_id][0], "merge_id": parents[from_id][1]}
                for from_id in moved
            ],
        ),
        partial(_move_roots, moves=[(from_id, state.find(from_id)) for from_id in moved]),
        bound_insert(dialect, identity_refusals, refusals),
    )
    return write, [row["id"] for row in merge_rows]


def _move_roots(conn: Connection, moves: Sequence[tuple[UUID, UUID]]) -> None:
    """Profiles under a merged root now belong to the root it was merged into."""
    if moves:
        conn.execute(
            profiles.update()
            .where(profiles.c.root_id == sa.bindparam("b_old"))
            .values(root_id=sa.bindparam("b_new")),
            [{"b_old": old, "b_new": new} for old, new in moves],
        )
