"""Personal data rights: export everything held about a person, or erase it.

Erasure removes the customer's profiles, identifiers, events (from the database and from
the lake, whose affected day partitions are rewritten), merge history and suggestions, and
rejected events that name them; then puts their identifiers on the suppression list, so
later events carrying any of them are rejected as ``suppressed``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import EventFilter, events, rejected_events
from plait.core.db import chunks, escape_like, exclusive_job, write
from plait.core.errors import Conflict
from plait.core.lake import HISTORY_DATASET, remove_dataset, remove_rows
from plait.core.settings import Settings
from plait.identity.graph import (
    bump_version,
    identities,
    identity_merges,
    identity_refusals,
    lock_graph,
    members,
    profiles,
    root_of,
)
from plait.identity.identity_map import export_identity_map
from plait.identity.merges import merge_log
from plait.identity.suggestions import identity_suggestions
from plait.identity.suppression import suppress
from plait.profiles.customer360 import customer_events, profile_360
from plait.profiles.search import customer_identities, timeline

LAKE_LOCK_WAIT_SECONDS = 120


def export_person(conn: Connection, profile_id: UUID, settings: Settings) -> dict[str, Any]:
    """Everything held about the customer a profile belongs to, as one JSON document."""
    root_id = root_of(conn, profile_id)
    all_events: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = timeline(conn, root_id, EventFilter(), limit=1000, cursor=cursor)
        all_events.extend(page)
        if cursor is None:
            break
    return {
        "profile": profile_360(conn, root_id, settings.profiles),
        "identities": customer_identities(conn, root_id),
        "events": all_events,
        "merges": merge_log(conn, root_id),
    }


@dataclass
class Erasure:
    """What an erasure removed."""

    customer_id: str
    profiles: int = 0
    identifiers: int = 0
    events: int = 0
    lake_rows: int = 0
    rejected_events: int = 0
    suppressed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase_person(engine: Engine, settings: Settings, profile_id: UUID) -> Erasure:
    """Erase a customer everywhere Plait keeps data, then suppress their identifiers."""
    with write(engine) as conn:
        lock_graph(conn)
        root_id = root_of(conn, profile_id)
        report = Erasure(str(root_id))
        member_ids = list(conn.execute(members(root_id)).scalars())
        found = [
            (row.kind, row.value)
            for row in conn.execute(
                sa.select(identities.c.kind, identities.c.value).where(
                    identities.c.profile_id.in_(member_ids)
                )
            )
        ]
        erased = conn.execute(
            sa.select(events.c.id, events.c.timestamp).select_from(customer_events(root_id))
        ).all()
        event_ids = [row.id for row in erased]
        days = sorted({row.timestamp.astimezone(UTC).strftime("%Y-%m-%d") for row in erased})
        for chunk in chunks(event_ids, 1000):
            report.events += conn.execute(events.delete().where(events.c.id.in_(chunk))).rowcount
            conn.execute(identity_refusals.delete().where(identity_refusals.c.event_id.in_(chunk)))
        report.rejected_events = _erase_rejected(conn, [value for _, value in found])
        report.identifiers = conn.execute(
            identities.delete().where(identities.c.profile_id.in_(member_ids))
        ).rowcount
        conn.execute(
            identity_merges.delete().where(
                sa.or_(
                    identity_merges.c.into_id.in_(member_ids),
                    identity_merges.c.from_id.in_(member_ids),
                )
            )
        )
        conn.execute(
            identity_suggestions.delete().where(
                sa.or_(
                    identity_suggestions.c.left_id.in_(member_ids),
                    identity_suggestions.c.right_id.in_(member_ids),
                )
            )
        )
        report.profiles = conn.execute(
            profiles.delete().where(profiles.c.id.in_(member_ids))
        ).rowcount
        report.suppressed = suppress(conn, found, root_id)
        bump_version(conn)
    report.lake_rows = _erase_from_lake(engine, settings, [str(i) for i in event_ids], days)
    export_identity_map(engine, settings, force=True)
    return report


def _erase_rejected(conn: Connection, values: Sequence[str]) -> int:
    """Rejected events whose raw payload mentions one of the person's identifiers."""
    # Shorter values are too short to name a person; they would match unrelated payloads.
    mentions = [
        rejected_events.c.payload.like(f"%{escape_like(value)}%", escape="\\")
        for value in values
        if len(value) >= 4
    ]
    if not mentions:
        return 0
    return conn.execute(rejected_events.delete().where(sa.or_(*mentions))).rowcount


def _erase_from_lake(
    engine: Engine, settings: Settings, event_ids: list[str], days: list[str]
) -> int:
    """Rewrite the affected day partitions without the erased events, while no sync runs,
    and drop the history analytics derived from them."""
    if not event_ids:
        return 0
    deadline = time.monotonic() + LAKE_LOCK_WAIT_SECONDS
    while True:
        with exclusive_job(engine, "lake-sync") as running:
            if running:
                removed = sum(
                    remove_rows(settings.lake, f"events/date={day}", "id", event_ids)
                    for day in days
                )
                remove_dataset(settings.lake, HISTORY_DATASET)  # derived again without them
                return removed
        if time.monotonic() > deadline:
            raise Conflict("the lake stayed busy; erased from the database but not the lake")
        time.sleep(0.2)
