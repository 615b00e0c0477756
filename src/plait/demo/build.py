"""Building the demo world into a Plait instance: sources, the synthetic events sent
through the real ingestion pipeline, and the demo's dashboard admin."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from plait.collect.ingest import IngestResult, ingest, rules_from_settings
from plait.collect.messages import Envelope
from plait.collect.sources import add_source
from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.errors import NotFound
from plait.core.secrets import new_secret
from plait.core.settings import Settings
from plait.core.sources import Source, find_source
from plait.core.users import create_user, set_password
from plait.demo.world import DEMO_SOURCES, generate

CHUNK = 2000


@dataclass
class DemoReport:
    """What building the demo did."""

    result: IngestResult = field(default_factory=IngestResult)
    write_keys: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.result.accepted,
            "duplicates": self.result.duplicates,
            "rejected": len(self.result.rejected),
            "new_write_keys": self.write_keys,
        }


def build_demo(
    engine: Engine,
    settings: Settings,
    *,
    customers: int = 1000,
    days: int = 90,
    seed: int = 7,
    end: datetime | None = None,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> DemoReport:
    """Generate the demo world and ingest it; running it again stores nothing new."""
    report = DemoReport()
    sources = _ensure_sources(engine, settings, report)
    rules = rules_from_settings(settings)
    buffers: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}

    def flush(name: str) -> None:
        batch = buffers[name]
        if batch:
            envelope = Envelope(source=sources[name], received_at=utcnow())
            report.result.add(ingest(engine, batch, envelope, rules, origin="demo"))
            on_progress(len(batch))
            buffers[name] = []

    for name, message in generate(customers=customers, days=days, seed=seed, end=end):
        buffers[name].append(message)
        if len(buffers[name]) >= CHUNK:
            flush(name)
    for name in sources:
        flush(name)
    return report


def _ensure_sources(engine: Engine, settings: Settings, report: DemoReport) -> dict[str, Source]:
    found: dict[str, Source] = {}
    for demo_source in DEMO_SOURCES:
        with write(engine) as conn:
            try:
                found[demo_source.name] = find_source(conn, demo_source.name)
                continue
            except NotFound:
                created = add_source(conn, settings, demo_source.name, demo_source.channel)
        report.write_keys[demo_source.name] = created["write_key"]
        with read(engine) as conn:
            found[demo_source.name] = find_source(conn, demo_source.name)
    return found


DEMO_ADMIN_EMAIL = "admin@plait.example"


def reset_demo_admin(engine: Engine) -> tuple[str, str]:
    """The demo's dashboard admin, with a fresh random password (printed by ``plait demo``)."""
    password = new_secret(16)
    with write(engine) as conn:
        try:
            set_password(conn, DEMO_ADMIN_EMAIL, password)
        except NotFound:
            create_user(conn, DEMO_ADMIN_EMAIL, "admin", password)
    return DEMO_ADMIN_EMAIL, password
