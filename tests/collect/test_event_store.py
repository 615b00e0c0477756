"""The event store's own write path stores exactly what the generic insert would."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from plait.collect.event_store import events, store
from plait.collect.ingest import rules_from_settings
from plait.collect.messages import Envelope, normalize
from plait.core.clock import utcnow
from plait.core.db import insert_rows, read, write
from plait.core.ids import uuid7
from plait.core.sources import find_source

AWKWARD = ["", "tab\there", "new\nline", "back\\slash", 'a "quote"', "é ü 中文 😀", "\u2028", "\\N"]


def awkward_messages() -> list[dict]:
    messages = [
        {
            "type": "track",
            "event": f"event {text}",
            "userId": text or None,
            "anonymousId": f"anon {text}",
            "properties": {
                "text": text,
                "big": 2**63,
                "negative": -(2**63),
                "tenth": 0.1,
                "tiny": 1e-7,
                "huge": 1.5e300,
                "nothing": None,
                "nested": {"list": [1, None, text]},
            },
            "context": {
                "page": {"url": f"https://shop.example/?utm_source={text}&utm_medium=cpc"},
                "userAgent": text,
            },
            "timestamp": "2026-01-02T03:04:05.123456+05:30" if index % 2 else "2026-01-02T03:04Z",
        }
        for index, text in enumerate(AWKWARD)
    ]
    messages.append({"type": "identify", "userId": "later", "timestamp": "2099-01-01T00:00:00Z"})
    messages.append({"type": "identify", "userId": "t", "traits": {"email": "A@B.example"}})
    return messages


def test_stored_events_equal_what_the_generic_insert_stores(engine, settings, source) -> None:
    """On PostgreSQL the event store sends rows as JSON for the server to parse, not through
    COPY: every column, JSON null and non-ASCII text included, must come out the same."""
    with read(engine) as conn:
        website = find_source(conn, "Website")
    envelope = Envelope(
        website,
        utcnow(),
        sent_at=utcnow() - timedelta(seconds=3),
        integrations={"All": False},
    )
    rules = rules_from_settings(settings)
    rows = [normalize(message, envelope, rules) for message in awkward_messages()]
    copies = [{**row, "id": uuid7(), "message_id": f"copy {row['message_id']}"} for row in rows]
    with write(engine) as conn:
        assert store(conn, rows, []).accepted == len(rows)
        insert_rows(conn, events, [{k: v for k, v in r.items() if k in events.c} for r in copies])
    compared = [
        column if not isinstance(column.type, sa.JSON) else sa.cast(column, sa.Text)
        for column in events.columns
        if column.name not in ("seq", "id", "message_id")
    ]
    with read(engine) as conn:
        stored = conn.execute(sa.select(*compared).order_by(events.c.seq)).all()
    assert len(stored) == 2 * len(rows)
    assert stored[: len(rows)] == stored[len(rows) :]
    assert sum("in the future" in (row.warnings or "") for row in stored) == 2
