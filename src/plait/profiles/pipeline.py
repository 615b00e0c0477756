"""Keeping profiles current: resolve new events into the identity graph and fold their
traits into profiles, in one transaction per chunk."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sqlalchemy.engine import Engine

from plait.core.settings import Settings
from plait.identity.identifiers import identity_rules
from plait.identity.resolver import ResolveReport, resolve_pending
from plait.profiles.traits import apply_traits


def resolve(
    engine: Engine,
    settings: Settings,
    *,
    max_events: int | None = None,
    chunk_events: int = 5000,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> ResolveReport:
    """Resolve every event not yet in a profile; safe to call from any process at any time.
    Each chunk of ``chunk_events`` is one write transaction."""
    return resolve_pending(
        engine,
        identity_rules(settings),
        chunk_events=chunk_events,
        on_chunk=partial(apply_traits, settings=settings.profiles),
        max_events=max_events,
        on_progress=on_progress,
    )
