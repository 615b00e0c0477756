"""The resolver reads and decides before it takes the writer, and writes its plan only if the
graph did not change meanwhile; otherwise it resolves the chunk again under the lock. On
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.db import Write, write
from plait.core.settings import Settings
from plait.identity.graph import identities, identity_progress, profiles
from plait.identity.identifiers import identity_rules
from plait.identity.merges import merge_customers
from plait.identity.resolver import resolve_pending
from plait.profiles.pipeline import resolve
from plait.profiles.traits import plan_traits


def identify(user_id: str, anonymous_id: str, at: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user_id,
        "anonymousId": anonymous_id,
        "timestamp": at,
        "traits": traits,
    }


class Hook:
    """The profiles hook, counting its calls and running ``meanwhile`` once, between the
    planning of the first chunk and its write."""

    def __init__(self, settings: Settings, meanwhile: Any = None) -> None:
        self.settings, self.meanwhile, self.calls = settings, meanwhile, 0

    def __call__(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]], homes: Mapping[int, UUID]
    ) -> Write:
        self.calls += 1
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return plan_traits(conn, rows, homes, self.settings.profiles)


def graph(engine: sa.Engine) -> tuple[list[tuple[str, str]], int, int]:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(identities.c.kind, identities.c.value).order_by("kind", "value")
        ).all()
        customers = conn.execute(
            sa.select(sa.func.count(sa.distinct(profiles.c.root_id)))
        ).scalar_one()
        resolved = conn.execute(sa.select(identity_progress.c.resolved_seq)).scalar_one()
    return [tuple(row) for row in found], customers, resolved


def test_a_plan_is_written_when_nothing_changed_meanwhile(
    send_events, engine: sa.Engine, settings: Settings
) -> None:
    send_events(
        identify("cus_1", "anon-1", "2026-03-01T10:00:00Z", plan="free"),
        identify("cus_2", "anon-2", "2026-03-01T11:00:00Z", plan="pro"),
    )
    hook = Hook(settings)
    report = resolve_pending(engine, identity_rules(settings), on_chunk=hook)
    assert (report.events, report.profiles, hook.calls) == (2, 2, 1)
    identifiers, customers, _ = graph(engine)
    assert customers == 2
    assert ("user_id", "cus_1") in identifiers
    assert ("anonymous_id", "anon-2") in identifiers
    with engine.connect() as conn:
        traits = conn.execute(sa.select(profiles.c.traits).where(profiles.c.traits.is_not(None)))
        assert sorted(row[0]["plan"]["last"][0] for row in traits) == ["free", "pro"]


def test_a_chunk_another_resolver_wrote_meanwhile_is_not_written_twice(
    send_events, engine: sa.Engine, settings: Settings
) -> None:
    send_events(
        identify("cus_1", "anon-1", "2026-03-01T10:00:00Z", plan="free"),
        identify("cus_1", "anon-9", "2026-03-01T12:00:00Z"),
    )
    hook = Hook(settings, meanwhile=lambda: resolve(engine, settings))
    report = resolve_pending(engine, identity_rules(settings), on_chunk=hook)

    # The stale plan would have added the same identifiers and profiles again.
    assert report.events == 0
    assert hook.calls == 1
    identifiers, customers, resolved = graph(engine)
    assert identifiers == [
        ("anonymous_id", "anon-1"),
        ("anonymous_id", "anon-9"),
        ("user_id", "cus_1"),
    ]
    assert customers == 1
    with engine.connect() as conn:
        assert resolved == conn.execute(sa.text("SELECT max(seq) FROM events")).scalar_one()


def test_a_merge_meanwhile_sends_the_chunk_back_under_the_lock(
    send_events, engine: sa.Engine, settings: Settings
) -> None:
    send_events(
        {"type": "page", "anonymousId": "anon-1", "timestamp": "2026-03-01T10:00:00Z"},
        {"type": "page", "anonymousId": "anon-2", "timestamp": "2026-03-01T11:00:00Z"},
    )
    resolve(engine, settings)
    with engine.connect() as conn:
        two = [row[0] for row in conn.execute(sa.select(profiles.c.id))]
    send_events(
        identify("cus_1", "anon-1", "2026-03-02T10:00:00Z", plan="pro"),
        identify("cus_1", "anon-3", "2026-03-02T10:01:00Z"),
    )

    def merge() -> None:
        with write(engine) as conn:
            merge_customers(conn, identity_rules(settings), two)

    hook = Hook(settings, meanwhile=merge)
    report = resolve_pending(engine, identity_rules(settings), on_chunk=hook)
    assert (report.events, hook.calls) == (2, 2)  # planned, then resolved again under the lock
    identifiers, customers, _ = graph(engine)
    assert customers == 1
    assert identifiers == [
        ("anonymous_id", "anon-1"),
        ("anonymous_id", "anon-2"),
        ("anonymous_id", "anon-3"),
        ("user_id", "cus_1"),
    ]
