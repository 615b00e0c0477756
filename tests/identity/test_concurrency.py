"""Concurrent resolution on PostgreSQL: several processes resolve while events are still
arriving, and the graph they leave is exactly the graph one process would have built."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from plait.collect.event_store import events
from plait.collect.ingest import ingest, rules_from_settings
from plait.collect.messages import Envelope
from plait.collect.sources import add_source
from plait.core.clock import utcnow
from plait.core.db import get_engine, write
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.core.sources import find_source
from plait.demo.world import generate
from plait.identity.graph import identities, identity_merges, identity_progress, profiles
from plait.identity.identifiers import identity_rules
from plait.identity.merge_rules import GraphState
from plait.identity.resolver import RESOLVE_COLUMNS, event_identifiers, resolvable
from plait.migrations import upgrade

RESOLVER = """
import sys, time
from functools import partial
import sqlalchemy as sa
from plait.core.db import get_engine
from plait.core.settings import Settings
from plait.identity.identifiers import identity_rules
from plait.identity.resolver import resolve_pending
from plait.profiles.traits import plan_traits

settings = Settings(home=sys.argv[1], database_url=sys.argv[2])
expected = int(sys.argv[3])
engine = get_engine(settings)
hook = partial(plan_traits, settings=settings.profiles)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    resolve_pending(engine, identity_rules(settings), chunk_events=30, on_chunk=hook)
    with engine.connect() as conn:
        stored, newest = conn.execute(sa.text("SELECT count(*), max(seq) FROM events")).one()
        done = conn.execute(sa.text("SELECT max(resolved_seq) FROM identity_progress")).scalar()
    if stored == expected and done == newest:
        sys.exit(0)
sys.exit(1)
"""


@pytest.mark.slow
def test_concurrent_resolvers_build_the_same_graph_as_one(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=postgres_url)
    engine = get_engine(settings)
    upgrade(engine)
    with engine.begin() as conn:
        tables = [name for name in sa.inspect(conn).get_table_names() if name != "alembic_version"]
        conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    messages = defaultdict(list)
    for name, message in generate(customers=60, days=20, seed=11):
        messages[name].append(message)
    expected = sum(len(batch) for batch in messages.values())
    with write(engine) as conn:
        for name in messages:
            add_source(conn, settings, name)

    resolvers = [
        subprocess.Popen(
            [sys.executable, "-c", RESOLVER, str(settings.home), postgres_url, str(expected)]
        )
        for _ in range(4)
    ]
    rules = rules_from_settings(settings)
    for name, batch in messages.items():
        with write(engine) as conn:
            source = find_source(conn, name)
        for start in range(0, len(batch), 50):
            envelope = Envelope(source=source, received_at=utcnow())
            ingest(engine, batch[start : start + 50], envelope, rules)
    assert [process.wait(timeout=180) for process in resolvers] == [0, 0, 0, 0]

    with engine.connect() as conn:
        rows = resolvable(conn.execute(sa.select(*RESOLVE_COLUMNS).order_by(events.c.seq)))
        stored_profiles = conn.execute(
            sa.select(profiles.c.id, profiles.c.root_id, profiles.c.parent_id)
        ).all()
        stored_identities = conn.execute(
            sa.select(identities.c.kind, identities.c.value, identities.c.profile_id)
        ).all()
        merges = conn.execute(sa.select(sa.func.count()).select_from(identity_merges)).scalar()
        resolved = conn.execute(sa.select(identity_progress.c.resolved_seq)).scalar()
    assert len(rows) == expected
    assert resolved == rows[-1]["seq"]

    # Every profile points at a root, and its parent chain leads to that root.
    root_of = {profile_id: root for profile_id, root, _ in stored_profiles}
    parent_of = {profile_id: parent for profile_id, _, parent in stored_profiles}
    for profile_id, root in root_of.items():
        assert root_of[root] == root
        walk = profile_id
        while parent_of[walk] is not None:
            walk = parent_of[walk]
        assert walk == root

    # The same customers, identifiers and merges as one process applying every event in order.
    identity = identity_rules(settings)
    reference = GraphState(identity, {}, {}, {}, uuid7)
    reference_merges = sum(
        len(reference.apply(event_identifiers(row, identity)).merges) for row in rows
    )
    assert merges == reference_merges
    assert len(stored_identities) == len(reference.home)
    assert _customers(
        (kind, value, root_of[profile_id]) for kind, value, profile_id in stored_identities
    ) == _customers(
        (kind, value, reference.find(home)) for (kind, value), home in reference.home.items()
    )


def _customers(rows) -> set[frozenset[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    grouped: dict[UUID, set[tuple[str, str]]] = defaultdict(set)
    for kind, value, root in rows:
        grouped[root].add((kind, value))
    return {frozenset(members) for members in grouped.values()}
