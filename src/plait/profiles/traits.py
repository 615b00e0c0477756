"""Traits: what identify calls and event context say about a person, merged by event time.

Each profile keeps, per trait, the first value seen, the last one and the last non-empty
one, each with its event time (microseconds), so that events arriving out of order, a
change of strategy in ``plait.toml`` and merges of profiles all give the right answer:
``last`` (the default), ``first`` or ``non_empty`` per trait.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.db import Write, among, bound_update, chunks, in_order
from plait.core.settings import ProfileSettings
from plait.identity.graph import profiles

Record = dict[str, list[Any]]
"""One trait: ``{"last": [value, micros], "first": [...], "filled": [...]}``."""


def micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def observe(record: Record | None, value: Any, at: int) -> Record:
    """A trait record after seeing ``value`` at time ``at``."""
    if record is None:
        record = {"first": [value, at], "last": [value, at]}
        if not is_empty(value):
            record["filled"] = [value, at]
        return record
    if at < record["first"][1]:
        record["first"] = [value, at]
    if at >= record["last"][1]:
        record["last"] = [value, at]
    filled = record.get("filled")
    if not is_empty(value) and (filled is None or at >= filled[1]):
        record["filled"] = [value, at]
    return record


def combine(records: Iterable[Record]) -> Record | None:
    """One record from several (the traits of profiles merged into one customer)."""
    merged: Record | None = None
    for record in records:
        for key in ("first", "last", "filled"):
            if key not in record:
                continue
            value, at = record[key]
            if merged is None:
                merged = {}
            current = merged.get(key)
            earlier = key == "first"
            if current is None or (at < current[1] if earlier else at >= current[1]):
                merged[key] = [value, at]
    return merged


def value_of(record: Record, strategy: str) -> Any:
    """A trait's value under a strategy: ``last``, ``first`` or ``non_empty``."""
    if strategy == "first":
        return record["first"][0] if "first" in record else None
    if strategy == "non_empty":
        filled = record.get("filled")
        return filled[0] if filled else None
    return record["last"][0] if "last" in record else None


def resolve_traits(
    stored: Iterable[Mapping[str, Record] | None], settings: ProfileSettings
) -> dict[str, Any]:
    """The traits of a customer from the trait records of its profiles."""
    by_name: dict[str, list[Record]] = {}
    for traits in stored:
        for name, record in (traits or {}).items():
            by_name.setdefault(name, []).append(record)
    resolved = {}
    for name, records in sorted(by_name.items()):
        merged = combine(records)
        if merged is not None:
            strategy = settings.trait_strategies.get(name, settings.default_trait_strategy)
            resolved[name] = value_of(merged, strategy)
    return resolved


def display_name(traits: Mapping[str, Any]) -> str | None:
    """A person's name from common trait spellings."""
    name = traits.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    first = traits.get("first_name") or traits.get("firstName")
    last = traits.get("last_name") or traits.get("lastName")
    parts = [part.strip() for part in (first, last) if isinstance(part, str) and part.strip()]
    return " ".join(parts) or None


def event_traits(event: Mapping[str, Any]) -> dict[str, Any]:
    """Traits an event states: an identify's ``traits``, any event's ``context.traits``."""
    found: dict[str, Any] = {}
    context = event.get("context") or {}
    for traits in (context.get("traits"), event.get("traits")):
        if isinstance(traits, Mapping):
            found.update(traits)
    return found


def plan_traits(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    homes: Mapping[int, UUID],
    settings: ProfileSettings,
) -> Write:
    """Fold a chunk of resolved events into their home profiles (traits, first/last seen):
    the touched profiles are read and folded now, and the write is returned, to run in the
    resolving transaction (the resolver reads before it takes the writer). Profiles the chunk
    creates are not stored yet: they start empty."""
    touched: dict[UUID, list[Mapping[str, Any]]] = {}
    for row in rows:
        home = homes.get(row["seq"])
        if home is not None:
            touched.setdefault(home, []).append(row)
    if not touched:
        return in_order()
    stored = {
        row.id: row
        for chunk in chunks(touched)
        for row in conn.execute(
            sa.select(
                profiles.c.id,
                profiles.c.traits,
                profiles.c.first_seen,
                profiles.c.last_seen,
                profiles.c.name,
            ).where(among(profiles.c.id, chunk, conn.dialect.name))
        )
    }
    folded, seen_only = [], []
    for profile_id, seen in touched.items():
        current = stored.get(profile_id, _NEW_PROFILE)
        traits: dict[str, Record] = dict(current.traits or {})
        changed = False
        for row in seen:
            at = micros(row["timestamp"])
            for name, value in event_traits(row).items():
                traits[name] = observe(traits.get(name), value, at)
                changed = True
        first = min([row["timestamp"] for row in seen] + _present(current.first_seen))
        last = max([row["timestamp"] for row in seen] + _present(current.last_seen))
        if changed:
            name = display_name(resolve_traits([traits], settings))
            folded.append(
                {
                    "id": profile_id,
                    "traits": traits or None,
                    "first_seen": first,
                    "last_seen": last,
                    "name": name,
                    "search_name": name.lower() if name else None,
                }
            )
        elif (first, last) != (current.first_seen, current.last_seen):
            seen_only.append({"id": profile_id, "first_seen": first, "last_seen": last})
    # Most events state no traits: their profiles get only first/last seen written.
    dialect = conn.dialect
    return in_order(
        bound_update(dialect, profiles, folded), bound_update(dialect, profiles, seen_only)
    )


_NEW_PROFILE = SimpleNamespace(traits=None, first_seen=None, last_seen=None, name=None)


def _present(moment: datetime | None) -> list[datetime]:
    return [] if moment is None else [moment]
