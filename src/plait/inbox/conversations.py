"""Conversations as agents work them: queues, one conversation with its messages across
channels, and changes of status, priority, assignee, team and labels."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.core.clock import isoformat, utcnow
from plait.core.db import write
from plait.core.errors import InvalidInput, NotFound
from plait.core.settings import SlaPolicy
from plait.core.users import users
from plait.identity.graph import profiles
from plait.inbox.inboxes import ensure_team
from plait.inbox.schema import conversations, inboxes, messages, teams
from plait.inbox.sla import business_seconds

STATUSES = ("open", "pending", "snoozed", "resolved")
PRIORITIES = ("low", "normal", "high", "urgent")
QUEUES = ("mine", "unassigned", "all", "at_risk", "resolved")
MAX_LABELS = 20
CLOCKS = ("first_response", "next_response", "resolution")


def sla_targets(policy: SlaPolicy) -> dict[str, float]:
    return {
        "first_response": policy.first_response_minutes,
        "next_response": policy.next_response_minutes,
        "resolution": policy.resolution_minutes,
    }


def at_risk(policy: SlaPolicy, now: datetime) -> sa.ColumnElement[bool]:
    """Conversations with a running deadline inside its warning window (or past it)."""
    return sa.and_(conversations.c.status != "resolved", deadline_near(policy, now))


def deadline_near(policy: SlaPolicy, now: datetime) -> sa.ColumnElement[bool]:
    """A running deadline inside its warning window (or past it), whatever the status."""
    conditions = []
    for clock, minutes in sla_targets(policy).items():
        if minutes > 0:
            margin = timedelta(minutes=minutes * (1 - policy.warn_fraction))
            conditions.append(conversations.c[f"{clock}_due"] <= now + margin)
    return sa.or_(sa.false(), *conditions)


def sla_flags(row: Any, policy: SlaPolicy, now: datetime) -> dict[str, str]:
    """Each running or missed clock: ``breached``, ``at_risk`` or ``ok``."""
    flags = {name.removesuffix("_due"): "breached" for name in row["sla_breaches"] or []}
    for clock, minutes in sla_targets(policy).items():
        due = row[f"{clock}_due"]
        if due is None or clock in flags:
            continue
        margin = timedelta(minutes=minutes * (1 - policy.warn_fraction))
        flags[clock] = "breached" if due <= now else "at_risk" if due <= now + margin else "ok"
    return flags


def conversation_rows() -> sa.Select:
    """Conversations with their customer, inbox and assignee, newest activity first. The
    inbox's columns are looked up per row rather than joined: with three inboxes, a join
    tempts SQLite's planner (on sampled statistics) to start from them and sort every
    conversation, where walking the recency index stops after one page."""
    customer = profiles.alias("customer")

    def of_inbox(column: sa.Column) -> sa.ScalarSelect:
        return sa.select(column).where(inboxes.c.id == conversations.c.inbox_id).scalar_subquery()

    return (
        sa.select(
            conversations,
            customer.c.id.label("customer_id"),
            customer.c.name.label("customer_name"),
            of_inbox(inboxes.c.channel).label("channel"),
            of_inbox(inboxes.c.name).label("inbox_name"),
            users.c.email.label("assignee_email"),
        )
        .join(profiles, profiles.c.id == conversations.c.profile_id)
        .join(customer, customer.c.id == profiles.c.root_id)
        .outerjoin(users, users.c.id == conversations.c.assignee_id)
        .order_by(conversations.c.last_message_at.desc(), conversations.c.id.desc())
    )


def queue_query(
    queue: str,
    *,
    user_id: UUID | None,
    policy: SlaPolicy,
    now: datetime,
    channel: str | None = None,
    inbox_id: UUID | None = None,
    team_id: UUID | None = None,
    label: str | None = None,
) -> sa.Select:
    """The conversations of a queue, newest activity first (with the customer's name)."""
    if queue not in QUEUES:
        raise InvalidInput(f"queue is one of {', '.join(QUEUES)}", field="queue")
    query = conversation_rows()
    if queue == "resolved":
        query = query.where(conversations.c.status == "resolved")
    else:
        query = query.where(conversations.c.status != "resolved")
    if queue == "mine":
        query = query.where(conversations.c.assignee_id == user_id)
    elif queue == "unassigned":
        query = query.where(conversations.c.assignee_id.is_(None))
    elif queue == "at_risk":
        query = query.where(at_risk(policy, now))
    if channel:
        query = query.where(
            conversations.c.inbox_id.in_(
                sa.select(inboxes.c.id).where(inboxes.c.channel == channel)
            )
        )
    if inbox_id:
        query = query.where(conversations.c.inbox_id == inbox_id)
    if team_id:
        query = query.where(conversations.c.team_id == team_id)
    if label:
        query = query.where(conversations.c.labels.contains(label))
    return query


def queue_counts(
    conn: Connection, *, user_id: UUID | None, policy: SlaPolicy, now: datetime
) -> dict[str, Any]:
    """How many conversations each queue holds, and the open ones per inbox channel: one
    pass over the partial index of open conversations (grouped by inbox) and an index count
    of resolved ones."""
    open_ = conversations.c.status != sa.literal_column("'resolved'")  # the index's own words
    by_inbox = conn.execute(
        sa.select(
            conversations.c.inbox_id,
            sa.func.count().label("all"),
            sa.func.count().filter(conversations.c.assignee_id == user_id).label("mine"),
            sa.func.count().filter(conversations.c.assignee_id.is_(None)).label("unassigned"),
            sa.func.count().filter(deadline_near(policy, now)).label("at_risk"),
        )
        .where(open_)
        .group_by(conversations.c.inbox_id)
    ).all()
    channel_of = dict(conn.execute(sa.select(inboxes.c.id, inboxes.c.channel)).all())
    resolved = conn.execute(
        sa.select(sa.func.count()).where(conversations.c.status == "resolved")
    ).scalar_one()
    counts: dict[str, Any] = {
        queue: sum(getattr(row, queue) for row in by_inbox)
        for queue in ("mine", "unassigned", "all", "at_risk")
    }
    channels: dict[str, int] = {}
    for row in by_inbox:
        channel = channel_of[row.inbox_id]
        channels[channel] = channels.get(channel, 0) + row.all
    return {**counts, "resolved": resolved, "channels": dict(sorted(channels.items()))}


def list_conversations(
    conn: Connection,
    queue: str,
    *,
    user_id: UUID | None,
    policy: SlaPolicy,
    channel: str | None = None,
    limit: int = 50,
    before: tuple[datetime, UUID] | None = None,
) -> list[dict[str, Any]]:
    """A page of a queue, each with its last message's preview and SLA flags."""
    now = utcnow()
    query = queue_query(queue, user_id=user_id, policy=policy, now=now, channel=channel)
    if before is not None:
        moment, last_id = before
        query = query.where(
            conversations.c.last_message_at <= moment,  # an index range: the OR alone is not
            sa.or_(
                conversations.c.last_message_at < moment,
                sa.and_(conversations.c.last_message_at == moment, conversations.c.id < last_id),
            ),
        )
    rows = conn.execute(query.limit(limit)).mappings().all()
    previews = _previews(conn, [row["id"] for row in rows])
    return [
        {**conversation_dict(row, policy, now), "preview": previews.get(row["id"])} for row in rows
    ]


def _previews(conn: Connection, ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    if not ids:
        return {}
    latest = (
        sa.select(
            messages.c.conversation_id,
            messages.c.body,
            messages.c.direction,
            messages.c.channel,
            messages.c.contact,
            sa.func.row_number()
            .over(
                partition_by=messages.c.conversation_id,
                order_by=(messages.c.created_at.desc(), messages.c.id.desc()),
            )
            .label("rank"),
        )
        .where(messages.c.conversation_id.in_(ids), messages.c.direction != "note")
        .subquery()
    )
    rows = conn.execute(sa.select(latest).where(latest.c.rank == 1))
    return {
        row.conversation_id: {
            "body": " ".join(row.body.split())[:140],
            "direction": row.direction,
            "channel": row.channel,
            "contact": row.contact,
        }
        for row in rows
    }


def conversation_dict(row: Any, policy: SlaPolicy, now: datetime) -> dict[str, Any]:
    """A conversation as the API shows it."""
    return {
        "id": str(row["id"]),
        "number": row["number"],
        "status": row["status"],
        "priority": row["priority"],
        "subject": row["subject"],
        "labels": list(row["labels"] or []),
        "channel": row.get("channel"),
        "inbox_id": str(row["inbox_id"]),
        "inbox": row.get("inbox_name"),
        "customer_id": str(row["customer_id"]) if row.get("customer_id") else None,
        "customer_name": row.get("customer_name"),
        "assignee_id": str(row["assignee_id"]) if row["assignee_id"] else None,
        "assignee": row.get("assignee_email"),
        "team_id": str(row["team_id"]) if row["team_id"] else None,
        "created_at": isoformat(row["created_at"]),
        "last_message_at": isoformat(row["last_message_at"]),
        "waiting_since": isoformat(row["waiting_since"]),
        "first_response_at": isoformat(row["first_response_at"]),
        "resolved_at": isoformat(row["resolved_at"]),
        "snoozed_until": isoformat(row["snoozed_until"]),
        "sla": sla_flags(row, policy, now),
        "due": {clock: isoformat(row[f"{clock}_due"]) for clock in CLOCKS},
        "csat": row["csat_score"],
    }


def get_conversation(conn: Connection, conversation_id: UUID, policy: SlaPolicy) -> dict[str, Any]:
    """One conversation with every message and note, oldest first."""
    now = utcnow()
    query = conversation_rows().where(conversations.c.id == conversation_id)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound("no such conversation", field="conversation_id")
    rows = conn.execute(
        sa.select(messages, users.c.email.label("author"))
        .outerjoin(users, users.c.id == messages.c.author_id)
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.created_at, messages.c.id)
    ).mappings()
    return {
        **conversation_dict(row, policy, now),
        "messages": [{**message_dict(m), "author": m["author"]} for m in rows],
    }


def update_conversation(
    engine: Engine,
    settings: Any,
    conversation_id: UUID,
    *,
    status: str | None = None,
    priority: str | None = None,
    assignee_id: UUID | str | None = "unchanged",
    team: str | None = None,
    labels: list[str] | None = None,
    snoozed_until: datetime | None = None,
) -> None:
    """Change a conversation; resolving it records resolution times and SLA breaches."""
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if priority is not None:
        if priority not in PRIORITIES:
            raise InvalidInput(f"priority is one of {', '.join(PRIORITIES)}", field="priority")
        values["priority"] = priority
    if labels is not None:
        values["labels"] = _check_labels(labels)
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status is one of {', '.join(STATUSES)}", field="status")
    if status == "snoozed":
        if snoozed_until is None or snoozed_until <= now:
            raise InvalidInput("snoozing needs a time in the future", field="snoozed_until")
        values["snoozed_until"] = snoozed_until
    with write(engine) as conn:
        row = (
            conn.execute(sa.select(conversations).where(conversations.c.id == conversation_id))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound("no such conversation", field="conversation_id")
        if assignee_id != "unchanged":
            values["assignee_id"] = _check_assignee(conn, assignee_id)
        if team is not None:
            values["team_id"] = ensure_team(conn, team) if team else None
        if status is not None and status != row["status"]:
            values.update(_status_change(row, status, settings, now))
        conn.execute(
            conversations.update().where(conversations.c.id == conversation_id).values(**values)
        )


def _status_change(row: Any, status: str, settings: Any, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status}
    if status != "snoozed":
        values["snoozed_until"] = None
    if status == "resolved":
        breaches = list(row["sla_breaches"] or [])
        for clock in CLOCKS:
            due = row[f"{clock}_due"]
            if due is not None and due < now and f"{clock}_due" not in breaches:
                breaches.append(f"{clock}_due")
        values.update(
            resolved_at=now,
            waiting_since=None,
            first_response_due=None,
            next_response_due=None,
            resolution_due=None,
            sla_breaches=breaches,
            resolution_seconds=(now - row["created_at"]).total_seconds(),
            resolution_business_seconds=business_seconds(
                settings.inbox.business_hours, row["created_at"], now
            ),
        )
    elif row["status"] == "resolved":
        values["resolved_at"] = None
    return values


def _check_labels(labels: list[str]) -> list[str]:
    cleaned = sorted({label.strip().lower() for label in labels if label.strip()})
    if len(cleaned) > MAX_LABELS:
        raise InvalidInput(f"at most {MAX_LABELS} labels", field="labels")
    for label in cleaned:
        if len(label) > 50 or any(ord(char) < 32 for char in label):
            raise InvalidInput(
                f"label {label!r} is not 1 to 50 printable characters", field="labels"
            )
    return cleaned


def _check_assignee(conn: Connection, assignee_id: Any) -> UUID | None:
    if assignee_id is None:
        return None
    found = conn.execute(
        sa.select(users.c.id, users.c.role).where(
            users.c.id == assignee_id, users.c.disabled_at.is_(None)
        )
    ).first()
    if found is None or found.role not in ("agent", "admin"):
        raise InvalidInput("assign to an enabled agent or admin", field="assignee_id")
    return found.id


def list_teams(conn: Connection) -> list[dict[str, Any]]:
    return [
        {"id": str(row.id), "name": row.name}
        for row in conn.execute(sa.select(teams).order_by(teams.c.name))
    ]


def message_dict(row: Any) -> dict[str, Any]:
    """A message as the API shows it."""
    return {
        "id": str(row["id"]),
        "conversation_id": str(row["conversation_id"]) if row.get("conversation_id") else None,
        "inbox_id": str(row["inbox_id"]),
        "direction": row["direction"],
        "channel": row["channel"],
        "contact": row.get("contact"),
        "author_id": str(row["author_id"]) if row.get("author_id") else None,
        "sender_name": row.get("sender_name"),
        "subject": row.get("subject"),
        "body": row["body"],
        "attachments": row.get("attachments") or [],
        "status": row["status"],
        "error": row.get("error"),
        "created_at": isoformat(row["created_at"]),
    }


def wake_snoozed(engine: Engine) -> int:
    """Reopen snoozed conversations whose time has come; returns how many."""
    now = utcnow()
    with write(engine) as conn:
        done = conn.execute(
            conversations.update()
            .where(conversations.c.status == "snoozed", conversations.c.snoozed_until <= now)
            .values(status="open", snoozed_until=None, updated_at=now)
        )
    return done.rowcount
