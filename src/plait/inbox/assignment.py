"""Auto-assignment: round-robin among the available agents of an inbox's team, skipping
anyone already at their capacity of open conversations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.db import dialect_insert
from plait.core.errors import InvalidInput
from plait.core.users import users
from plait.inbox.schema import agents, conversations, team_members

ACTIVE_STATUSES = ("open", "pending")
"""Statuses that count against an agent's capacity."""


def pick_agent(conn: Connection, team_id: UUID | None, now: datetime) -> UUID | None:
    """The next agent in the rotation for one new conversation (see :class:`Rotation`)."""
    rotation = Rotation(conn, now)
    chosen = rotation.pick(team_id)
    rotation.save()
    return chosen


class Rotation:
    """The assignment rotation, read once for a routing transaction.

    :meth:`pick` gives the next agent in the rotation (the one assigned least recently) who
    is available, enabled, in the team (any team when None) and under capacity, or None if
    nobody is; :meth:`save` records who was assigned. Use it inside the routing transaction,
    which serialises assignments. Each pick is stamped a microsecond after the previous one,
    so agents assigned in the same transaction keep their order in the rotation.
    """

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self._next_stamp = now
        self._assigned: dict[UUID, datetime] = {}
        load = (
            sa.select(sa.func.count())
            .where(
                conversations.c.assignee_id == agents.c.user_id,
                conversations.c.status.in_(ACTIVE_STATUSES),
            )
            .scalar_subquery()
        )
        candidates = (  # one row per agent and team (team None if in none)
            sa.select(
                agents.c.user_id,
                agents.c.capacity,
                agents.c.last_assigned_at,
                users.c.email,
                load.label("load"),
                team_members.c.team_id,
            )
            .join(users, users.c.id == agents.c.user_id)
            .outerjoin(team_members, team_members.c.user_id == agents.c.user_id)
            .where(agents.c.available.is_(True), users.c.disabled_at.is_(None))
        )
        self._agents: dict[UUID, dict[str, Any]] = {}
        for row in conn.execute(candidates):
            agent = self._agents.get(row.user_id)
            if agent is None:
                agent = self._agents[row.user_id] = {**row._asdict(), "teams": set()}
                del agent["team_id"]
            if row.team_id is not None:
                agent["teams"].add(row.team_id)

    def pick(self, team_id: UUID | None) -> UUID | None:
        """The next agent for a new conversation of ``team_id``'s inbox, counted as assigned."""
        ready = [
            agent
            for agent in self._agents.values()
            if agent["load"] < agent["capacity"] and (team_id is None or team_id in agent["teams"])
        ]
        if not ready:
            return None
        chosen = min(ready, key=_rotation_order)
        stamp, self._next_stamp = self._next_stamp, self._next_stamp + timedelta(microseconds=1)
        chosen["load"] += 1
        chosen["last_assigned_at"] = stamp
        self._assigned[chosen["user_id"]] = stamp
        return chosen["user_id"]

    def save(self) -> None:
        """Record the assignments made since the last save."""
        if self._assigned:
            self.conn.execute(
                agents.update()
                .where(agents.c.user_id == sa.bindparam("agent"))
                .values(last_assigned_at=sa.bindparam("stamp")),
                [{"agent": user_id, "stamp": at} for user_id, at in self._assigned.items()],
            )
            self._assigned = {}


def _rotation_order(agent: dict[str, Any]) -> tuple[bool, datetime, str]:
    last = agent["last_assigned_at"]
    return (last is not None, last or datetime.min.replace(tzinfo=UTC), agent["email"])


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
