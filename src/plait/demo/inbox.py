"""The demo's inbox: a web chat and a WhatsApp inbox holding the demo world's recent chats
and WhatsApp messages as conversations, so the agent workspace has something to show.

The messages are linked to the events the world already produced (no new events), routed
like live ones, and conversations quiet for three days are resolved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import events
from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.inbox.inboxes import create_inbox, get_inbox, inbox_of
from plait.inbox.routing import route_pending
from plait.inbox.schema import conversations, inboxes, messages
from plait.inbox.sla import business_seconds

DEMO_INBOXES = {"Live Chat": ("web_chat", "Website chat"), "WhatsApp": ("whatsapp", "WhatsApp")}
MESSAGE_EVENTS = ("Chat Message Received", "Chat Message Sent", "Message Received", "Message Sent")
RECENT_DAYS = 30
QUIET_DAYS = 3


def seed_demo_inbox(engine: Engine, settings: Settings) -> int:
    """Turn the last days' demo chats and WhatsApp messages into conversations (once);
    returns how many messages were added."""
    with write(engine) as conn:
        by_channel = {channel: _inbox(conn, *spec) for channel, spec in DEMO_INBOXES.items()}
        added = _add_messages(conn, by_channel)
    if added:
        route_pending(engine, settings, limit=1_000_000)
        with write(engine) as conn:
            _attach_replies(conn)
            _resolve_quiet(conn, settings)
    return added


def _inbox(conn: Connection, channel: str, name: str) -> Any:
    found = conn.execute(sa.select(inboxes).where(inboxes.c.name == name)).first()
    if found is not None:
        return inbox_of(found)
    created = create_inbox(conn, channel, name, team="Support")
    return get_inbox(conn, created["id"])


def _add_messages(conn: Connection, by_channel: dict[str, Any]) -> int:
    since = utcnow() - timedelta(days=RECENT_DAYS)
    rows = conn.execute(
        sa.select(
            events.c.id,
            events.c.event,
            events.c.channel,
            events.c.timestamp,
            events.c.anonymous_id,
            events.c.properties,
            events.c.context,
        )
        .where(
            events.c.type == "track",
            events.c.event.in_(MESSAGE_EVENTS),
            events.c.channel.in_(list(by_channel)),
            events.c.timestamp >= since,
        )
        .order_by(events.c.timestamp)
    ).all()
    now = utcnow()
    new = [
        {
            "id": uuid7(),
            "inbox_id": by_channel[row.channel].id,
            "direction": "in" if row.event.endswith("Received") else "out",
            "channel": by_channel[row.channel].channel,
            "contact": _contact(row),
            "body": str((row.properties or {}).get("text") or row.event),
            "provider_id": f"demo-{row.id}",
            "status": "received" if row.event.endswith("Received") else "read",
            "event_id": row.id,
            "created_at": row.timestamp,
            "updated_at": now,
        }
        for row in rows
    ]
    known = set(
        conn.execute(
            sa.select(messages.c.provider_id).where(messages.c.provider_id.like("demo-%"))
        ).scalars()
    )
    new = [row for row in new if row["provider_id"] not in known]
    if new:
        conn.execute(messages.insert(), new)
    return len(new)


def _contact(row: Any) -> str:
    for item in (row.context or {}).get("externalIds") or []:
        if item.get("type") == "whatsapp_id":
            return str(item["id"])
    return row.anonymous_id


def _attach_replies(conn: Connection) -> None:
    """Each demo reply joins the conversation of the customer message it answers."""
    replies = conn.execute(
        sa.select(messages.c.id, messages.c.contact, messages.c.created_at).where(
            messages.c.direction == "out", messages.c.conversation_id.is_(None)
        )
    ).all()
    for reply in replies:
        answered = conn.execute(
            sa.select(messages.c.conversation_id)
            .where(
                messages.c.direction == "in",
                messages.c.contact == reply.contact,
                messages.c.created_at <= reply.created_at,
                messages.c.conversation_id.is_not(None),
            )
            .order_by(messages.c.created_at.desc())
            .limit(1)
        ).scalar()
        if answered is None:
            conn.execute(messages.delete().where(messages.c.id == reply.id))
            continue
        conn.execute(
            messages.update().where(messages.c.id == reply.id).values(conversation_id=answered)
        )
        _answered_at(conn, answered, reply.created_at)


def _answered_at(conn: Connection, conversation_id: UUID, at: Any) -> None:
    row = (
        conn.execute(sa.select(conversations).where(conversations.c.id == conversation_id))
        .mappings()
        .one()
    )
    values: dict[str, Any] = {"waiting_since": None, "next_response_due": None}
    if row["first_response_at"] is None:
        values.update(
            first_response_at=at,
            first_response_due=None,
            first_response_seconds=(at - row["created_at"]).total_seconds(),
        )
    conn.execute(
        conversations.update().where(conversations.c.id == conversation_id).values(**values)
    )


def _resolve_quiet(conn: Connection, settings: Settings) -> None:
    quiet = utcnow() - timedelta(days=QUIET_DAYS)
    rows = conn.execute(
        sa.select(
            conversations.c.id, conversations.c.created_at, conversations.c.last_message_at
        ).where(conversations.c.status != "resolved", conversations.c.last_message_at < quiet)
    ).all()
    for row in rows:
        resolved = row.last_message_at + timedelta(minutes=30)
        conn.execute(
            conversations.update()
            .where(conversations.c.id == row.id)
            .values(
                status="resolved",
                resolved_at=resolved,
                waiting_since=None,
                first_response_due=None,
                next_response_due=None,
                resolution_due=None,
                resolution_seconds=(resolved - row.created_at).total_seconds(),
                resolution_business_seconds=business_seconds(
                    settings.inbox.business_hours, row.created_at, resolved
                ),
            )
        )


def demo_inbox_summary(engine: Engine) -> dict[str, int]:
    """How many demo conversations are open and resolved."""
    with read(engine) as conn:
        rows = conn.execute(
            sa.select(conversations.c.status, sa.func.count()).group_by(conversations.c.status)
        ).all()
    return {str(status): int(count) for status, count in rows}
