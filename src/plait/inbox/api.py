"""HTTP: the inbox under ``/api/inbox`` — inboxes, conversations, replies and notes,
assignment and status, canned replies and agents' availability (token, agent or admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from plait.core.auth import Principal, require
from plait.core.clock import parse_timestamp, utcnow
from plait.core.db import read, write
from plait.core.errors import Forbidden, InvalidInput, NotFound
from plait.core.ids import uuid7
from plait.core.users import users
from plait.inbox.assignment import add_to_team, set_availability
from plait.inbox.conversations import (
    QUEUES,
    get_conversation,
    list_conversations,
    list_teams,
    update_conversation,
)
from plait.inbox.inboxes import EVENT_CHANNELS, create_inbox, ensure_team, list_inboxes
from plait.inbox.outbox import add_note, reply, retry_message
from plait.inbox.reports import GROUPS, report_json, report_period
from plait.inbox.schema import canned_replies

inbox_api = APIRouter(prefix="/api/inbox", tags=["inbox"])

Reader = Annotated[Principal, Depends(require("inbox:read"))]
Writer = Annotated[Principal, Depends(require("inbox:write"))]
Manager = Annotated[Principal, Depends(require("inbox:manage"))]


class InboxRequest(BaseModel):
    channel: str = Field(description=f"one of {', '.join(EVENT_CHANNELS)}")
    name: str = Field(min_length=1, max_length=90)
    team: str | None = Field(None, max_length=100)
    options: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)


class ConversationChange(BaseModel):
    status: Literal["open", "pending", "snoozed", "resolved"] | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    assignee_id: UUID | None = None
    unassign: bool = False
    team: str | None = Field(None, max_length=100)
    labels: list[str] | None = Field(None, max_length=20)
    snoozed_until: datetime | None = None


class MessageRequest(BaseModel):
    body: str = Field(min_length=1, max_length=100_000)
    inbox_id: UUID | None = Field(None, description="reply through another inbox (channel)")
    subject: str | None = Field(None, max_length=500)


class NoteRequest(BaseModel):
    body: str = Field(min_length=1, max_length=100_000)


class CannedReply(BaseModel):
    shortcut: str = Field(min_length=1, max_length=50, pattern=r"^[a-z0-9_-]+$")
    body: str = Field(min_length=1, max_length=10_000)


class Availability(BaseModel):
    available: bool | None = None
    capacity: int | None = Field(None, ge=1, le=1000)


class TeamMember(BaseModel):
    email: str = Field(min_length=3, max_length=320)


def author_of(principal: Principal) -> UUID | None:
    """The user behind a request (None for an API token)."""
    return principal.id if principal.kind == "user" else None


@inbox_api.post("/inboxes", status_code=201)
def post_inbox(request: Request, body: InboxRequest, _p: Manager) -> dict[str, Any]:
    """Connect a channel account; answers with the webhook URL to give the provider."""
    with write(request.app.state.engine) as conn:
        inbox = create_inbox(
            conn,
            body.channel,
            body.name,
            options=body.options,
            secrets=body.secrets,
            team=body.team,
        )
    return with_webhook_url(request, inbox)


def with_webhook_url(request: Request, inbox: dict[str, Any]) -> dict[str, Any]:
    base = request.app.state.settings.server.public_url or str(request.base_url)
    path = inbox["webhook_path"]
    return {**inbox, "webhook_url": base.rstrip("/") + path if path else None}


@inbox_api.get("/inboxes")
def get_inboxes(request: Request, _p: Reader) -> dict[str, Any]:
    with read(request.app.state.engine) as conn:
        return {"inboxes": [with_webhook_url(request, inbox) for inbox in list_inboxes(conn)]}


@inbox_api.get("/conversations")
def get_conversations(
    request: Request,
    principal: Reader,
    queue: Annotated[str, Query(description=f"one of {', '.join(QUEUES)}")] = "all",
    channel: str | None = None,
    assignee_id: UUID | None = Query(None, description="whose 'mine' queue (default: caller)"),
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: str | None = Query(None, description="cursor from the previous page"),
) -> dict[str, Any]:
    """A queue: mine, unassigned, all (not resolved), at_risk (SLA) or resolved."""
    settings = request.app.state.settings
    cursor = _cursor(before)
    with read(request.app.state.engine) as conn:
        rows = list_conversations(
            conn,
            queue,
            user_id=assignee_id or author_of(principal),
            policy=settings.inbox.sla,
            channel=channel,
            limit=limit,
            before=cursor,
        )
    after = None
    if len(rows) == limit:
        after = f"{rows[-1]['last_message_at']}|{rows[-1]['id']}"
    return {"conversations": rows, "next": after}


def _cursor(text: str | None) -> tuple[datetime, UUID] | None:
    if not text:
        return None
    try:
        moment, _, key = text.partition("|")
        return parse_timestamp(moment), UUID(key)
    except (ValueError, TypeError):
        raise InvalidInput("before is not a cursor this API gave", field="before") from None


@inbox_api.get("/conversations/{conversation_id}")
def get_one(request: Request, conversation_id: UUID, _p: Reader) -> dict[str, Any]:
    """A conversation with all its messages and notes, across channels."""
    with read(request.app.state.engine) as conn:
        return get_conversation(conn, conversation_id, request.app.state.settings.inbox.sla)


@inbox_api.patch("/conversations/{conversation_id}")
def patch_conversation(
    request: Request, conversation_id: UUID, body: ConversationChange, _p: Writer
) -> dict[str, Any]:
    """Change status, priority, assignee, team, labels or snooze."""
    app = request.app.state
    assignee: Any = "unchanged"
    if body.unassign:
        assignee = None
    elif body.assignee_id is not None:
        assignee = body.assignee_id
    update_conversation(
        app.engine,
        app.settings,
        conversation_id,
        status=body.status,
        priority=body.priority,
        assignee_id=assignee,
        team=body.team,
        labels=body.labels,
        snoozed_until=body.snoozed_until,
    )
    if body.status == "resolved":
        _after_resolve(request, conversation_id)
    return get_one(request, conversation_id, _p)


def _after_resolve(request: Request, conversation_id: UUID) -> None:
    hook = getattr(request.app.state, "on_resolved", None)
    if hook is not None:
        hook(conversation_id, str(request.base_url))


@inbox_api.post("/conversations/{conversation_id}/messages", status_code=201)
def post_message(
    request: Request, conversation_id: UUID, body: MessageRequest, principal: Writer
) -> dict[str, Any]:
    """Reply to the customer, on the conversation's channel or through ``inbox_id``."""
    app = request.app.state
    message = reply(
        app.engine,
        app.settings,
        app.rules,
        conversation_id,
        body.body,
        author_id=author_of(principal),
        inbox_id=body.inbox_id,
        subject=body.subject,
    )
    worker = getattr(app, "delivery", None)
    if worker is not None:
        worker.wake()
    return message


@inbox_api.post("/conversations/{conversation_id}/notes", status_code=201)
def post_note(
    request: Request, conversation_id: UUID, body: NoteRequest, principal: Writer
) -> dict[str, Any]:
    """An internal note, visible to agents only."""
    return add_note(
        request.app.state.engine, conversation_id, body.body, author_id=author_of(principal)
    )


@inbox_api.post("/messages/{message_id}/retry")
def post_retry(request: Request, message_id: UUID, _p: Writer) -> dict[str, Any]:
    """Send a failed message again."""
    retry_message(request.app.state.engine, message_id)
    worker = getattr(request.app.state, "delivery", None)
    if worker is not None:
        worker.wake()
    return {"retrying": str(message_id)}


@inbox_api.get("/reports")
def get_reports(
    request: Request,
    _p: Reader,
    since: str | None = Query(None, description="first day, YYYY-MM-DD (default: 30 days ago)"),
    until: str | None = Query(None, description="last day, inclusive (default: today)"),
    by: str = Query("channel", description=f"one of {', '.join(GROUPS)}"),
    tz: str = Query("UTC", description="time zone the days are in"),
) -> dict[str, Any]:
    """Volume, first response and resolution times (raw and business hours), SLA hit rate
    and CSAT per channel, agent or team, with totals; times in seconds."""
    span = report_period(since, until, tz)
    with read(request.app.state.engine) as conn:
        return report_json(conn, span, by)


@inbox_api.get("/canned-replies")
def get_canned(request: Request, _p: Reader) -> dict[str, Any]:
    with read(request.app.state.engine) as conn:
        rows = conn.execute(sa.select(canned_replies).order_by(canned_replies.c.shortcut))
        return {
            "canned_replies": [
                {"id": str(row.id), "shortcut": row.shortcut, "body": row.body} for row in rows
            ]
        }


@inbox_api.post("/canned-replies", status_code=201)
def post_canned(request: Request, body: CannedReply, _p: Writer) -> dict[str, Any]:
    with write(request.app.state.engine) as conn:
        taken = conn.execute(
            sa.select(canned_replies.c.id).where(canned_replies.c.shortcut == body.shortcut)
        ).first()
        if taken:
            raise InvalidInput(f"the shortcut {body.shortcut!r} is taken", field="shortcut")
        row = {"id": uuid7(), "shortcut": body.shortcut, "body": body.body, "created_at": utcnow()}
        conn.execute(canned_replies.insert(), row)
    return {"id": str(row["id"]), "shortcut": body.shortcut, "body": body.body}


@inbox_api.delete("/canned-replies/{reply_id}")
def delete_canned(request: Request, reply_id: UUID, _p: Writer) -> dict[str, Any]:
    with write(request.app.state.engine) as conn:
        done = conn.execute(canned_replies.delete().where(canned_replies.c.id == reply_id))
    if done.rowcount == 0:
        raise NotFound("no such canned reply")
    return {"deleted": str(reply_id)}


@inbox_api.put("/agents/{user_id}")
def put_agent(
    request: Request, user_id: UUID, body: Availability, principal: Writer
) -> dict[str, Any]:
    """Turn auto-assignment on or off for an agent (themselves, or anyone for an admin)."""
    if author_of(principal) != user_id and not principal.can("inbox:manage"):
        raise Forbidden("agents may change only their own availability")
    with write(request.app.state.engine) as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.id == user_id)).first() is None:
            raise NotFound("no such user", field="user_id")
        return set_availability(
            conn,
            user_id,
            available=body.available,
            capacity=body.capacity,
            default_capacity=request.app.state.settings.inbox.agent_capacity,
        )


@inbox_api.get("/teams")
def get_teams(request: Request, _p: Reader) -> dict[str, Any]:
    with read(request.app.state.engine) as conn:
        return {"teams": list_teams(conn)}


@inbox_api.post("/teams/{name}/members", status_code=201)
def post_member(request: Request, name: str, body: TeamMember, _p: Manager) -> dict[str, Any]:
    """Add a user to a team (created if new)."""
    with write(request.app.state.engine) as conn:
        user = conn.execute(
            sa.select(users.c.id).where(users.c.email == body.email.strip().lower())
        ).scalar()
        if user is None:
            raise NotFound(f"no user {body.email!r}", field="email")
        team_id = ensure_team(conn, name)
        add_to_team(conn, team_id, user)
    return {"team": name, "user_id": str(user)}
