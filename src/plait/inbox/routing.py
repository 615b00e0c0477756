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
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import committed_seq, events
from plait.core.clock import utcnow
from plait.core.db import insert_rows, read, write
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.identity.graph import identities, profiles
from plait.inbox.assignment import Rotation
from plait.inbox.schema import conversations, inboxes, messages
from plait.inbox.sla import deadline
from plait.profiles.pipeline import SERVING_CHUNK_EVENTS, resolve_step

ROUTING_LOCK = 0x504C414954_03
"""PostgreSQL advisory lock held while routing, so two messages from one customer arriving
at once cannot open two conversations (SQLite's single writer already serialises)."""


def lock_routing(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ROUTING_LOCK})")


def route_pending(
    engine: Engine,
    settings: Settings,
    *,
    only: Sequence[UUID] | None = None,
    limit: int = 1000,
    watermark: int | None = None,
) -> dict[UUID, UUID]:
    """Route inbound messages not yet in a conversation (just ``only``, if given); returns
    each routed message's conversation. The messages' events are resolved first, the last
    of them in the one transaction that routes every message: every event up to
    ``watermark``, a :func:`committed_seq` that covers them (learnt if not given)."""
    if only is None:
        unrouted = sa.select(messages.c.id).where(
            messages.c.direction == "in", messages.c.conversation_id.is_(None)
        )
        with read(engine) as conn:
            if conn.execute(unrouted.limit(1)).first() is None:
                return {}
    elif not only:
        return {}
    if watermark is None:
        watermark = committed_seq(engine)
    while True:
        with write(engine) as conn:
            if resolve_step(conn, settings, watermark, chunk_events=SERVING_CHUNK_EVENTS):
                lock_routing(conn)
                return _route(conn, settings, only, limit)
        # a backlog: resolved a chunk per transaction, the last one in the routing one


def _route(
    conn: Connection, settings: Settings, only: Sequence[UUID] | None, limit: int
) -> dict[UUID, UUID]:
    query = unrouted_messages().where(messages.c.direction == "in").limit(limit)
    if only is not None:
        query = query.where(messages.c.id.in_(list(only)))
    rows = conn.execute(query).mappings().all()
    router = Router(conn, settings, rows)
    routed: dict[UUID, UUID] = {}
    for row in rows:
        if row["home"] is None:
            continue
        conversation = router.conversation_for(row)
        router.attach(conversation, row)
        routed[row["id"]] = conversation["id"]
    router.flush()
    return routed


def unrouted_messages() -> sa.Select:
    """Messages not yet in a conversation, oldest first, with what routing needs: their
    inbox's team and the sender's profile (``home``) and customer (``root``), if resolved."""
    return (
        sa.select(
            messages,
            inboxes.c.team_id,
            identities.c.profile_id.label("home"),
            profiles.c.root_id.label("root"),
        )
        .join(events, events.c.id == messages.c.event_id)
        .join(inboxes, inboxes.c.id == messages.c.inbox_id)
        .outerjoin(
            identities,
            sa.and_(
                identities.c.kind == events.c.identity_kind,
                identities.c.value == events.c.identity_value,
            ),
        )
        .outerjoin(profiles, profiles.c.id == identities.c.profile_id)
        .where(messages.c.conversation_id.is_(None))
        .order_by(messages.c.created_at, messages.c.id)
    )


class Router:
    """Routing state for one transaction's messages (rows of :func:`unrouted_messages`).

    Each customer's open conversation is read once for the whole group, the conversation
    numbers and the assignment rotation are loaded once, and the messages' and
    conversations' updates are written together by :meth:`flush` — so routing a group costs
    a few statements, not a few per message.
    """

    def __init__(self, conn: Connection, settings: Settings, rows: Sequence[Any]) -> None:
        self.conn = conn
        self.settings = settings
        self.now = utcnow()
        self._open = _open_conversations(conn, {row["root"] for row in rows if row["root"]})
        self._known: dict[UUID, dict[str, Any]] = {c["id"]: c for c in self._open.values()}
        self._new: dict[UUID, dict[str, Any]] = {}
        self._changed: dict[UUID, dict[str, Any]] = {}
        self._placed: list[dict[str, Any]] = []
        self._number: int | None = None
        self._rotation: Rotation | None = None

    def conversation_for(self, row: Any) -> dict[str, Any]:
        """The conversation a message belongs in: the thread it answers, else the customer's
        open one, else a new one."""
        found = self._threaded(row) if row["thread_token"] or _references(row) else None
        return found or self._open.get(row["root"]) or self._start(row)

    def attach(self, conversation: dict[str, Any], row: Any) -> None:
        """Put an inbound message in ``conversation``: it waits for an answer, and a
        pending, snoozed or resolved conversation opens again."""
        settings, at = self.settings, row["created_at"]
        values: dict[str, Any] = {
            "inbox_id": row["inbox_id"],
            "updated_at": self.now,
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
                settings.inbox.business_hours, self.now, settings.inbox.sla.resolution_minutes
            )
        if not conversation.get("subject") and row["subject"]:
            values["subject"] = row["subject"]
        conversation.update(values)
        if conversation["id"] not in self._new:
            self._changed.setdefault(conversation["id"], {}).update(values)
        self._placed.append({"message": row["id"], "conversation": conversation["id"]})
        current = self._open.get(row["root"])
        if current is None or conversation["last_message_at"] >= current["last_message_at"]:
            self._open[row["root"]] = conversation

    def flush(self) -> None:
        """Write the new conversations, the others' changes, the messages' placement and
        the rotation, each as one statement (per set of changed columns)."""
        if self._new:
            insert_rows(self.conn, conversations, list(self._new.values()))
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for conversation_id, values in self._changed.items():
            params = {f"new_{name}": value for name, value in values.items()}
            by_columns.setdefault(tuple(sorted(values)), []).append(
                {"key": conversation_id, **params}
            )
        for columns, rows in by_columns.items():
            self.conn.execute(
                conversations.update()
                .where(conversations.c.id == sa.bindparam("key"))
                .values({name: sa.bindparam(f"new_{name}") for name in columns}),
                rows,
            )
        if self._placed:
            self.conn.execute(
                messages.update()
                .where(messages.c.id == sa.bindparam("message"))
                .values(conversation_id=sa.bindparam("conversation"), updated_at=self.now),
                self._placed,
            )
        if self._rotation is not None:
            self._rotation.save()
        self._new, self._changed, self._placed = {}, {}, []

    def _threaded(self, row: Any) -> dict[str, Any] | None:
        self.flush()  # a reply may answer a message placed earlier in this group
        found = _threaded(self.conn, row, row["root"])
        if found is None:
            return None
        return self._known.setdefault(found["id"], found)

    def _start(self, row: Any) -> dict[str, Any]:
        policy, hours = self.settings.inbox.sla, self.settings.inbox.business_hours
        if self._number is None:
            self._number = self.conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(conversations.c.number), 0))
            ).scalar_one()
        if self._rotation is None:
            self._rotation = Rotation(self.conn, self.now)
        self._number += 1
        conversation = {
            "id": uuid7(),
            "number": self._number,
            "profile_id": row["home"],
            "inbox_id": row["inbox_id"],
            "status": "open",
            "priority": "normal",
            "assignee_id": self._rotation.pick(row["team_id"]),
            "team_id": row["team_id"],
            "subject": row["subject"],
            "labels": [],
            "token": secrets.token_urlsafe(18),
            "created_at": row["created_at"],
            "updated_at": self.now,
            "last_message_at": row["created_at"],
            "waiting_since": None,
            "first_response_at": None,
            "first_response_due": deadline(hours, row["created_at"], policy.first_response_minutes),
            "resolution_due": deadline(hours, row["created_at"], policy.resolution_minutes),
            "sla_breaches": [],
        }
        self._new[conversation["id"]] = conversation
        self._known[conversation["id"]] = conversation
        self._open[row["root"]] = conversation
        return conversation


def _references(row: Any) -> list[str]:
    return [ref for ref in [row["in_reply_to"], *(row["references"] or [])] if ref]


def _open_conversations(conn: Connection, roots: set[UUID]) -> dict[UUID, dict[str, Any]]:
    """Each customer's most recent conversation that is not resolved."""
    if not roots:
        return {}
    rows = conn.execute(
        sa.select(conversations, profiles.c.root_id.label("root"))
        .join(profiles, profiles.c.id == conversations.c.profile_id)
        .where(profiles.c.root_id.in_(list(roots)), conversations.c.status != "resolved")
        .order_by(conversations.c.last_message_at.desc())
    ).mappings()
    found: dict[UUID, dict[str, Any]] = {}
    for row in rows:
        conversation = dict(row)
        found.setdefault(conversation.pop("root"), conversation)
    return found


def customer_of(profile_id: Any) -> sa.ScalarSelect:
    """The root profile of ``profile_id`` (a column or a value), as a scalar subquery."""
    return sa.select(profiles.c.root_id).where(profiles.c.id == profile_id).scalar_subquery()


def customer_conversations(root_id: UUID) -> sa.Select:
    """The conversations of a customer (every profile merged into them)."""
    members = sa.select(profiles.c.id).where(profiles.c.root_id == root_id)
    return sa.select(conversations).where(conversations.c.profile_id.in_(members))


def _threaded(conn: Connection, row: Any, root: UUID) -> dict[str, Any] | None:
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
    references = _references(row)
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
