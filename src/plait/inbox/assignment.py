"""Auto-assignment: round-robin among the available agents of an inbox's team, skipping
anyone already at their capacity of open conversations."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.db import dialect_insert
from plait.core.errors import InvalidInput
from plait.core.users import users
from plait.inbox.schema import agents, conversations, team_members

ACTIVE_STATUSES = ("open", "pending")
"""Statuses that count against an agent's capacity."""


def open_load() -> sa.Subquery:
    """Open conversations per assignee."""
    return (
        sa.select(conversations.c.assignee_id, sa.func.count().label("load"))
        .where(
            conversations.c.status.in_(ACTIVE_STATUSES), conversations.c.assignee_id.is_not(None)
        )
        .group_by(conversations.c.assignee_id)
        .subquery()
    )


def pick_agent(conn: Connection, team_id: UUID | None, now: datetime) -> UUID | None:
    """The next agent in the rotation (the one assigned least recently) who is available,
    enabled, in the team (any team when None) and under capacity; None if nobody is.
    Call it in the routing transaction, which serialises assignments."""
    load = open_load()
    query = (
        sa.select(agents.c.user_id)
        .join(users, users.c.id == agents.c.user_id)
        .outerjoin(load, load.c.assignee_id == agents.c.user_id)
        .where(
            agents.c.available.is_(True),
            users.c.disabled_at.is_(None),
            sa.func.coalesce(load.c.load, 0) < agents.c.capacity,
        )
        .order_by(agents.c.last_assigned_at.is_not(None), agents.c.last_assigned_at, users.c.email)
        .limit(1)
    )
    if team_id is not None:
        members = sa.select(team_members.c.user_id).where(team_members.c.team_id == team_id)
        query = query.where(agents.c.user_id.in_(members))
    chosen = conn.execute(query).scalar()
    if chosen is not None:
        conn.execute(agents.update().where(agents.c.user_id == chosen).values(last_assigned_at=now))
    return chosen


def set_availability(
    conn: Connection,
    user_id: UUID,
    *,
    available: bool | None = None,
    capacity: int | None = None,
    default_capacity: int = 10,
) -> dict[str, object]:
    """Turn an agent's auto-assignment on or off, or change their capacity."""
    if capacity is not None and not 1 <= capacity <= 1000:
        raise InvalidInput("capacity is 1 to 1000 conversations", field="capacity")
    values: dict[str, object] = {}
    if available is not None:
        values["available"] = available
    if capacity is not None:
        values["capacity"] = capacity
    conn.execute(
        dialect_insert(conn)(agents)
        .values(
            user_id=user_id,
            available=values.get("available", False),
            capacity=values.get("capacity", default_capacity),
        )
        .on_conflict_do_nothing()
    )
    if values:
        conn.execute(agents.update().where(agents.c.user_id == user_id).values(**values))
    row = conn.execute(sa.select(agents).where(agents.c.user_id == user_id)).one()
    return {"user_id": str(user_id), "available": row.available, "capacity": row.capacity}


def add_to_team(conn: Connection, team_id: UUID, user_id: UUID) -> None:
    """Make a user a member of a team (nothing if they are already)."""
    conn.execute(
        dialect_insert(conn)(team_members)
        .values(team_id=team_id, user_id=user_id)
        .on_conflict_do_nothing()
    )


def remove_from_team(conn: Connection, team_id: UUID, user_id: UUID) -> None:
    """Take a user out of a team (nothing if they are not in it)."""
    conn.execute(
        team_members.delete().where(
            team_members.c.team_id == team_id, team_members.c.user_id == user_id
        )
    )
