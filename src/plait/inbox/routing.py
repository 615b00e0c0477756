"""Routing: each inbound message to its customer's conversation.

The message's event is resolved into the identity graph first, so the sender is the
customer whatever channel they wrote on. Then, in order: an email reply joins the thread it
answers (by the conversation token in the reply-to address, or by ``In-Reply-To`` /
``References`` — both scoped to the same customer), anything else joins the customer's open
conversation, and otherwise a new conversation starts, auto-assigned and with its SLA
deadlines set. A threaded reply to a resolved conversation reopens it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import events
from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.identity.graph import identities, profiles
from plait.inbox.assignment import pick_agent
from plait.inbox.schema import conversations, inboxes, messages
from plait.inbox.sla import deadline
from plait.profiles.pipeline import resolve

ROUTING_LOCK = 0x504C414954_03
"""PostgreSQL advisory lock held while routing, so two messages from one customer arriving
at once cannot open two conversations (SQLite's single writer already serialises)."""


def lock_routing(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ROUTING_LOCK})")


def route_pending(
    engine: Engine, settings: Settings, *, only: Sequence[UUID] | None = None, limit: int = 1000
) -> dict[UUID, UUID]:
    """Route inbound messages not yet in a conversation (just ``only``, if given); returns
    each routed message's conversation."""
    unrouted = sa.select(messages.c.id).where(
        messages.c.direction == "in", messages.c.conversation_id.is_(None)
    )
    if only is not None:
        unrouted = unrouted.where(messages.c.id.in_(list(only)))
    with read(engine) as conn:
        if conn.execute(unrouted.limit(1)).first() is None:
            return {}
    resolve(engine, settings)
    routed: dict[UUID, UUID] = {}
    with write(engine) as conn:
        lock_routing(conn)
        query = (
            sa.select(
                messages,
                events.c.identity_kind,
                events.c.identity_value,
                inboxes.c.team_id,
            )
            .join(events, events.c.id == messages.c.event_id)
            .join(inboxes, inboxes.c.id == messages.c.inbox_id)
            .where(messages.c.direction == "in", messages.c.conversation_id.is_(None))
            .order_by(messages.c.created_at, messages.c.id)
            .limit(limit)
        )
        if only is not None:
            query = query.where(messages.c.id.in_(list(only)))
        for row in conn.execute(query).mappings().all():
            home = conn.execute(
                sa.select(identities.c.profile_id).where(
                    identities.c.kind == row["identity_kind"],
                    identities.c.value == row["identity_value"],
                )
            ).scalar()
            if home is None:
                continue
            conversation = conversation_for(conn, settings, row, home)
            _attach(conn, settings, conversation, row)
            routed[row["id"]] = conversation["id"]
    return routed


def conversation_for(conn: Connection, settings: Settings, row: Any, home: UUID) -> dict[str, Any]:
    """The conversation a message (``row``, with its inbox's ``team_id``) of the customer
    ``home`` belongs in: the thread it answers, else their open one, else a new one."""
    return (
        _threaded(conn, row, home)
        or _open_conversation(conn, home)
        or _start(conn, settings, row, home)
    )


def customer_of(profile_id: Any) -> sa.ScalarSelect:
    """The root profile of ``profile_id`` (a column or a value), as a scalar subquery."""
    return sa.select(profiles.c.root_id).where(profiles.c.id == profile_id).scalar_subquery()


def customer_conversations(root_id: UUID) -> sa.Select:
    """The conversations of a customer (every profile merged into them)."""
    members = sa.select(profiles.c.id).where(profiles.c.root_id == root_id)
    return sa.select(conversations).where(conversations.c.profile_id.in_(members))


def _threaded(conn: Connection, row: Any, home: UUID) -> dict[str, Any] | None:
    root = customer_of(home)
    same_customer = conversations.c.profile_id.in_(
        sa.select(profiles.c.id).where(profiles.c.root_id == root)
    )
    if row["thread_token"]:
        found = (
            conn.execute(
                sa.select(conversations).where(
                    conversations.c.token == row["thread_token"], same_customer
                )
            )
            .mappings()
            .first()
        )
        if found is not None:
            return dict(found)
    references = [ref for ref in [row["in_reply_to"], *(row["references"] or [])] if ref]
    if references:
        found = (
            conn.execute(
                sa.select(conversations)
                .join(messages, messages.c.conversation_id == conversations.c.id)
                .where(
                    messages.c.email_message_id.in_(references),
                    sa.func.lower(messages.c.contact) == row["contact"].lower(),
                    same_customer,
                )
                .order_by(messages.c.created_at.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if found is not None:
            return dict(found)
    return None


def _open_conversation(conn: Connection, home: UUID) -> dict[str, Any] | None:
    root = conn.execute(sa.select(profiles.c.root_id).where(profiles.c.id == home)).scalar()
    found = (
        conn.execute(
            customer_conversations(root)
            .where(conversations.c.status != "resolved")
            .order_by(conversations.c.last_message_at.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(found) if found is not None else None


def _start(conn: Connection, settings: Settings, row: Any, home: UUID) -> dict[str, Any]:
    now = utcnow()
    policy, hours = settings.inbox.sla, settings.inbox.business_hours
    number = conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(conversations.c.number), 0))
    ).scalar()
    conversation = {
        "id": uuid7(),
        "number": number + 1,
        "profile_id": home,
        "inbox_id": row["inbox_id"],
        "status": "open",
        "priority": "normal",
        "assignee_id": pick_agent(conn, row["team_id"], now),
        "team_id": row["team_id"],
        "subject": row["subject"],
        "labels": [],
        "token": secrets.token_urlsafe(18),
        "created_at": row["created_at"],
        "updated_at": now,
        "last_message_at": row["created_at"],
        "waiting_since": None,
        "first_response_due": deadline(hours, row["created_at"], policy.first_response_minutes),
        "resolution_due": deadline(hours, row["created_at"], policy.resolution_minutes),
        "sla_breaches": [],
    }
    conn.execute(conversations.insert(), conversation)
    return conversation


def _attach(conn: Connection, settings: Settings, conversation: dict[str, Any], row: Any) -> None:
    at: datetime = row["created_at"]
    now = utcnow()
    values: dict[str, Any] = {
        "inbox_id": row["inbox_id"],
        "updated_at": now,
        "last_message_at": max(conversation["last_message_at"], at),
    }
    if conversation["waiting_since"] is None:
        values["waiting_since"] = at
        if conversation.get("first_response_at") is not None:
            values["next_response_due"] = deadline(
                settings.inbox.business_hours, at, settings.inbox.sla.next_response_minutes
            )
    if conversation["status"] != "open":
        values["status"] = "open"
        values["snoozed_until"] = None
    if conversation["status"] == "resolved":
        values["resolved_at"] = None
        values["resolution_due"] = deadline(
            settings.inbox.business_hours, now, settings.inbox.sla.resolution_minutes
        )
    if not conversation.get("subject") and row["subject"]:
        values["subject"] = row["subject"]
    conn.execute(
        conversations.update().where(conversations.c.id == conversation["id"]).values(**values)
    )
    conn.execute(
        messages.update()
        .where(messages.c.id == row["id"])
        .values(conversation_id=conversation["id"], updated_at=now)
    )
