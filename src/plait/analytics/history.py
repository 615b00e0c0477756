"""The lake's history, kept: every customer's sessions and conversions, derived from the
event lake through the identity map and written beside them (``history/``).

Deriving them means joining every touch to the map and sorting it by customer and time
(10M events: ~10 s); a report that reads them kept instead takes ~2 s. What changed since
they were written is recomputed when they are read: the customers with newer events and
the customers whose identifiers moved in the map (a merge, a split, an identifier newly
resolved) are derived again from all their events, and replace their kept rows, so a
report is always as fresh as the lake. ``keep_history`` (run by ``plait serve``'s upkeep
every ``server.history_refresh_interval_seconds``, by ``plait demo`` and by reports run with
``--refresh``) folds those changes into the files, so what a report recomputes stays small.
Kept history that no longer matches the lake (a file rewritten by an erasure, a rebuilt
lake, other session or conversion rules) is not used, and the next refresh derives it all
again."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ibis.backends import BaseBackend
from sqlalchemy.engine import Engine

from plait.analytics.conversions import conversions, is_conversion
from plait.analytics.engine import (
    anchor_customer,
    connect,
    customer_events,
    event_files,
    identity_map,
    identity_map_path,
    lake_events,
    materialize,
    release,
)
from plait.analytics.sessions import is_touch, sessions, touch_rows
from plait.core.db import exclusive_job
from plait.core.ids import uuid7
from plait.core.lake import HISTORY_DATASET, dataset_path, lake_filesystem, write_parquet
from plait.core.settings import Settings
from plait.identity.identity_map import IDENTITY_MAP_SCHEMA

STATE_PATH = f"{HISTORY_DATASET}/state.json"
FORMAT = 2
"""Bumped when what is kept changes shape; history of another format is derived again."""
Stamp = tuple[int, int]
"""A file's size and modification time (ns): it changed if either did."""


@dataclass(frozen=True)
class History:
    """Every session and conversion in the lake, each under the customer it belongs to now."""

    sessions: ibis.Table
    conversions: ibis.Table

    def before(self, until: datetime) -> History:
        """What happened before ``until`` (sessions started, conversions made)."""
        return History(
            sessions=self.sessions.filter(self.sessions.started_at < until),
            conversions=self.conversions.filter(self.conversions.converted_at < until),
        )


@dataclass(frozen=True)
class Kept:
    """What ``history/state.json`` records: the files of one generation of kept history,
    the rules it was derived under, and the lake and identity map it was derived from."""

    format: int
    generation: str
    rules: str
    max_seq: int
    """Every lake event up to this ``seq`` is in the kept history (-1: none)."""
    files: dict[str, Stamp]
    """The lake's event files it was derived from; a change to one invalidates it."""
    identity_map: Stamp | None

    def path(self, part: str) -> str:
        """Where this generation's ``sessions``, ``conversions`` or ``identity_map`` is."""
        return f"{HISTORY_DATASET}/{part}-{self.generation}.parquet"


def read_history(
    settings: Settings,
    con: BaseBackend,
    until: datetime | None = None,
    *,
    materialized: bool = False,
) -> History:
    """The lake's sessions and conversions (before ``until``, if given): the kept history
    with what changed since recomputed, or, when there is none that matches the lake,
    derived from every event. ``materialized``: computed into tables of ``con`` (for a
    caller that reads them many times)."""
    files = event_files(settings)
    kept = _usable(settings, files)
    if kept is None:
        lake = relevant_events(lake_events(con, settings, files), settings)
        if until is not None:
            lake = lake.filter(lake.timestamp < until)
        return derive(con, settings, lake, identity_map(con, settings))
    stamp = _stamp(settings, identity_map_path(settings))
    found, _ = _brought_up_to_date(con, settings, kept, files, stamp, identity_map(con, settings))
    found = found.before(until) if until is not None else found
    if not materialized:
        return found
    return History(materialize(con, found.sessions), materialize(con, found.conversions))


def refresh_history(settings: Settings, con: BaseBackend | None = None) -> bool:
    """Bring the kept history up to date with the lake and identity map (derive it all the
    first time, or when what is kept no longer matches); returns whether it wrote. Run by
    one process at a time (callers hold the ``history`` job)."""
    files = event_files(settings)
    kept = _usable(settings, files)
    stamp = _stamp(settings, identity_map_path(settings))
    if kept is not None and set(files) <= set(kept.files) and stamp == kept.identity_map:
        return False
    con = con or connect(settings)
    mapping = _read_map(settings)
    identities = ibis.memtable(mapping)
    lake = lake_events(con, settings, files)
    changed = True
    if kept is None:
        found = derive(con, settings, relevant_events(lake, settings), identities)
    else:
        found, changed = _brought_up_to_date(con, settings, kept, files, stamp, identities)
    new = Kept(
        format=FORMAT,
        generation=uuid7().hex if changed else kept.generation,  # type: ignore[union-attr]
        rules=rules_of(settings),
        max_seq=int(con.execute(lake.seq.max()) or -1) if files else -1,
        files=files,
        identity_map=stamp,
    )
    if not changed:  # newer events that are no touches, or a map that moved no one
        _write_state(settings, new)
        return True
    write_parquet(con.to_pyarrow(found.sessions), settings.lake, new.path("sessions"))
    write_parquet(con.to_pyarrow(found.conversions), settings.lake, new.path("conversions"))
    write_parquet(mapping, settings.lake, new.path("identity_map"))
    _write_state(settings, new)
    _remove_generations(settings, keep={new.generation, kept.generation if kept else ""})
    return True


def keep_history(engine: Engine, settings: Settings) -> bool:
    """``refresh_history`` unless another process is running it; returns whether it wrote."""
    with exclusive_job(engine, "history") as mine:
        return mine and refresh_history(settings)


def derive(
    con: BaseBackend, settings: Settings, events: ibis.Table, identities: ibis.Table
) -> History:
    """The sessions and conversions of lake ``events`` (touches and conversions) under the
    customers ``identities`` map them to, computed into tables of ``con``."""
    rules = settings.analytics
    mapped = materialize(con, customer_events(events, identities))
    found = History(
        sessions=materialize(con, sessions(touch_rows(mapped, rules), rules)),
        conversions=materialize(
            con, conversions(mapped.filter(is_conversion(mapped, settings)), settings)
        ),
    )
    release(con, mapped)
    return found


SHAPING = (
    "session_timeout_minutes",
    "split_sessions_on_campaign",
    "touch_types",
    "touch_events",
    "touch_channels",
    "contact_events",
    "contact_on_identify",
    "qualified_stages",
    "currency",
    "exchange_rates",
)
"""The analytics settings sessions and conversions depend on (the models' do not)."""


def rules_of(settings: Settings) -> str:
    """The settings history is derived under, as text: kept history derived under others
    is not used."""
    shaping = settings.analytics.model_dump(mode="json", include=set(SHAPING))
    profiles = settings.profiles
    parts = [shaping, sorted(profiles.qualified_events), sorted(profiles.order_events)]
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))


def _brought_up_to_date(
    con: BaseBackend,
    settings: Settings,
    kept: Kept,
    files: dict[str, Stamp],
    map_stamp: Stamp | None,
    identities: ibis.Table,
) -> tuple[History, bool]:
    """The kept history with the customers whose history changed since derived again:
    those with events after ``kept.max_seq``, and those who gained or lost an identifier in
    the map (both the customer it belonged to and the one it belongs to now); and whether
    any had."""
    stored = History(
        sessions=_read_kept(con, settings, kept.path("sessions")),
        conversions=_read_kept(con, settings, kept.path("conversions")),
    )
    lake = relevant_events(lake_events(con, settings, files), settings)
    newer = lake.filter(lake.seq > kept.max_seq)
    touched = [customer_events(newer, identities).select("customer_id")]
    moved = None
    if map_stamp != kept.identity_map:
        moved = materialize(
            con, _moved(_read_kept(con, settings, kept.path("identity_map")), identities)
        )
        touched += [
            moved.select(customer_id=moved.before_customer),
            moved.select(customer_id=moved.now_customer),
        ]
    changed = materialize(con, ibis.union(*touched, distinct=True))
    if con.execute(changed.count()) == 0:
        for table in (changed, moved):
            if table is not None:
                release(con, table)
        return stored, False
    theirs = identities.semi_join(changed, identities.customer_id == changed.customer_id)
    anchors = theirs.select("kind", "value")
    if moved is not None:
        anchors = ibis.union(anchors, moved.select("kind", "value"), distinct=True)
    earlier = lake.filter(lake.seq <= kept.max_seq)
    earlier = earlier.semi_join(
        anchors, [earlier.identity_kind == anchors.kind, earlier.identity_value == anchors.value]
    )
    again = derive(con, settings, ibis.union(earlier, newer), identities)
    found = History(
        sessions=_replace(stored.sessions, again.sessions, changed),
        conversions=_replace(stored.conversions, again.conversions, changed),
    )
    return found, True


def _replace(stored: ibis.Table, again: ibis.Table, changed: ibis.Table) -> ibis.Table:
    """``stored`` without the ``changed`` customers' rows, plus their rows derived again."""
    unchanged = stored.anti_join(changed, stored.customer_id == changed.customer_id)
    return ibis.union(unchanged.select(*again.columns).cast(again.schema()), again)


def _moved(before: ibis.Table, now: ibis.Table) -> ibis.Table:
    """The identifiers whose customer differs between two identity maps: ``kind``,
    ``value``, ``before_customer``, ``now_customer`` (an identifier in one map only stands
    for itself in the other, as an unresolved event's anchor does)."""
    old = before.select(old_kind="kind", old_value="value", old_customer="customer_id")
    new = now.select(new_kind="kind", new_value="value", new_customer="customer_id")
    joined = old.outer_join(new, [old.old_kind == new.new_kind, old.old_value == new.new_value])
    kind = ibis.coalesce(joined.old_kind, joined.new_kind)
    value = ibis.coalesce(joined.old_value, joined.new_value)
    pairs = joined.select(
        kind=kind,
        value=value,
        before_customer=ibis.coalesce(joined.old_customer, anchor_customer(kind, value)),
        now_customer=ibis.coalesce(joined.new_customer, anchor_customer(kind, value)),
    )
    return pairs.filter(pairs.before_customer != pairs.now_customer)


def relevant_events(lake: ibis.Table, settings: Settings) -> ibis.Table:
    """The lake's touches and conversions: the only events history is made of."""
    return lake.filter(is_touch(lake, settings.analytics) | is_conversion(lake, settings))


def _read_map(settings: Settings) -> pa.Table:
    path = identity_map_path(settings)
    filesystem, _ = lake_filesystem(settings.lake)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return IDENTITY_MAP_SCHEMA.empty_table()
    return pq.read_table(path, filesystem=filesystem).select(IDENTITY_MAP_SCHEMA.names)


def _read_kept(con: BaseBackend, settings: Settings, relative: str) -> ibis.Table:
    return con.read_parquet(dataset_path(settings.lake, relative))


def _usable(settings: Settings, files: dict[str, Stamp]) -> Kept | None:
    """The kept history's state, if it can be read against the lake as it is now: same
    format and rules, and every file it was derived from unchanged."""
    filesystem, _ = lake_filesystem(settings.lake)
    try:
        with filesystem.open_input_stream(dataset_path(settings.lake, STATE_PATH)) as stream:
            recorded: dict[str, Any] = json.loads(stream.read())
    except (FileNotFoundError, ValueError):
        return None
    if recorded.get("format") != FORMAT or recorded.get("rules") != rules_of(settings):
        return None
    kept = Kept(
        format=FORMAT,
        generation=recorded["generation"],
        rules=recorded["rules"],
        max_seq=recorded["max_seq"],
        files={name: tuple(stamp) for name, stamp in recorded["files"].items()},  # type: ignore[misc]
        identity_map=tuple(recorded["identity_map"]) if recorded["identity_map"] else None,  # type: ignore[arg-type]
    )
    if any(files.get(name) != stamp for name, stamp in kept.files.items()):
        return None
    return kept


def _write_state(settings: Settings, kept: Kept) -> None:
    """Record ``kept`` as the history to read, atomically (written aside, then renamed)."""
    filesystem, _ = lake_filesystem(settings.lake)
    final = dataset_path(settings.lake, STATE_PATH)
    aside = f"{final}.{kept.generation}.tmp"
    with filesystem.open_output_stream(aside) as stream:
        stream.write(json.dumps(asdict(kept)).encode())
    filesystem.move(aside, final)


def _remove_generations(settings: Settings, keep: set[str]) -> None:
    """Delete kept files of other generations than ``keep`` (the one just written, and the
    one before it, which a report that started earlier may still be reading)."""
    filesystem, _ = lake_filesystem(settings.lake)
    selector = pafs.FileSelector(dataset_path(settings.lake, HISTORY_DATASET), allow_not_found=True)
    for info in filesystem.get_file_info(selector):
        name = info.base_name
        if not name.endswith(".parquet"):
            continue
        generation = name.removesuffix(".parquet").rsplit("-", 1)[-1]
        if generation not in keep:
            filesystem.delete_file(info.path)


def _stamp(settings: Settings, path: str) -> Stamp | None:
    filesystem, _ = lake_filesystem(settings.lake)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        return None
    return info.size, info.mtime_ns
