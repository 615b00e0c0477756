"""The agent workspace: queues with counts, one conversation across channels with the
customer 360 beside it, replies, notes and changes, and live updates over Server-Sent Events.

Every action goes through the inbox's own API functions (``plait.inbox.api``), called with
the dashboard's signed-in user instead of a token, so the pages and the API cannot drift.
Forms work without JavaScript (post, then 303 back); ``inbox.js`` sends the same forms with
``fetch`` and refreshes the parts of the page that changed.
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Connection

from plait.collect.event_store import events
from plait.core.clock import isoformat, parse_timestamp, utcnow
from plait.core.db import read
from plait.core.errors import InvalidInput, NotFound, PlaitError
from plait.core.users import users
from plait.identity.identifiers import identity_rules
from plait.inbox.api import (
    Availability,
    ConversationChange,
    MessageRequest,
    NoteRequest,
    patch_conversation,
    post_message,
    post_note,
    post_retry,
    put_agent,
)
from plait.inbox.connectors.phone import CallLog, check_call, log_calls
from plait.inbox.conversations import (
    PRIORITIES,
    QUEUES,
    get_conversation,
    list_conversations,
    queue_counts,
)
from plait.inbox.inboxes import CONTACT_KINDS, EVENT_CHANNELS, get_inbox, inbox_of
from plait.inbox.outbox import UNSENDABLE, recipient
from plait.inbox.routing import customer_conversations
from plait.inbox.schema import agents, canned_replies, conversations, inboxes, messages
from plait.profiles.customer360 import profile_360
from plait.profiles.customer_list import order_currency
from plait.web.access import editor, viewer
from plait.web.customers import STAGE_LABELS
from plait.web.sessions import SignedIn
from plait.web.templating import channel_icon, render, templates

router = APIRouter(include_in_schema=False)

Reader = Annotated[SignedIn, Depends(viewer("inbox:read"))]
Writer = Annotated[SignedIn, Depends(editor("inbox:write"))]

PAGE = 50
OTHER_CONVERSATIONS = 5
POLL_SECONDS = 1.0
STREAM_SECONDS = 25.0
"""A live stream ends after this long and the browser reconnects from its last event id,
so no stream outlives a server's shutdown by much."""
PING_SECONDS = 10.0
SETTLE = timedelta(seconds=5)
"""A change committed late may carry an ``updated_at`` older than ones already seen
(PostgreSQL), so the stream looks this far behind its cursor too."""
MAX_CHANGES = 200

QUEUE_LABELS = {
    "mine": "Mine",
    "unassigned": "Unassigned",
    "all": "All open",
    "at_risk": "SLA at risk",
    "resolved": "Resolved",
}
QUEUE_ICONS = {"mine": "👤", "unassigned": "📥", "all": "🗂️", "at_risk": "⏰", "resolved": "✅"}
CHANNEL_LABELS = {
    "email": "Email",
    "web_chat": "Web chat",
    "sms": "SMS",
    "whatsapp": "WhatsApp",
    "messenger": "Messenger",
    "instagram": "Instagram",
    "telegram": "Telegram",
    "phone": "Phone",
    "api": "API",
    "note": "Internal note",
}
STATUS_LABELS = {"open": "Open", "pending": "Pending", "snoozed": "Snoozed", "resolved": "Resolved"}
PRIORITY_LABELS = {"low": "Low", "normal": "Normal", "high": "High", "urgent": "Urgent"}
PRIORITY_ICONS = {"low": "▽", "normal": "", "high": "🔺", "urgent": "🔥"}
DELIVERY = {
    "queued": ("⏳", "Sending"),
    "sent": ("✓", "Sent"),
    "delivered": ("✓✓", "Delivered"),
    "read": ("👁️", "Read"),
    "failed": ("⚠️", "Failed"),
}
CLOCK_LABELS = {
    "first_response": "first response",
    "next_response": "next response",
    "resolution": "resolution",
}
CALL_DIRECTIONS = {"inbound": "Customer called", "outbound": "We called"}
MAX_CALL_MINUTES = 7 * 24 * 60
CALL_NOTICES = {
    "duplicate": "This call was logged before; nothing new was stored.",
    "elsewhere": "The call was logged here: a call joins the open conversation of the "
    "customer with that number, or starts one.",
}
QUIET_OUTCOMES = {"answered", "completed"}


# --- pages -----------------------------------------------------------------------------


@router.get("/inbox")
def inbox_page(
    request: Request,
    person: Reader,
    queue: str | None = None,
    channel: str | None = None,
    before: str | None = None,
) -> Response:
    """The workspace: the queues and a queue's conversations."""
    return _workspace(request, person, None, queue, channel, before)


@router.get("/inbox/queue")
def queue_part(
    request: Request,
    person: Reader,
    queue: str | None = None,
    channel: str | None = None,
    selected: str | None = None,
) -> JSONResponse:
    """The queue navigation and list as HTML, for the live workspace to swap in."""
    chosen = _uuid(selected, "selected") if selected else None
    with read(request.app.state.engine) as conn:
        context = _queue_context(request, conn, person, queue, channel, None, chosen)
    return _parts(person, context, queues="inbox_queues.html", list="inbox_list.html")


@router.get("/inbox/events")
async def inbox_events(request: Request, _person: Reader, since: str | None = None) -> Response:
    """Server-Sent Events: ``change`` with the ids of conversations changed since the cursor
    (the event id; a reconnecting browser sends it back as ``Last-Event-ID``). It polls
    ``conversations.updated_at``, so it sees changes made by every server process."""
    start = _moment(request.headers.get("last-event-id") or since, "since") or utcnow()
    return StreamingResponse(
        _stream(request, Watch(start)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/inbox/{conversation_id:uuid}")
def conversation_page(
    request: Request,
    conversation_id: UUID,
    person: Reader,
    queue: str | None = None,
    channel: str | None = None,
    before: str | None = None,
    call: str | None = None,
) -> Response:
    """The workspace with one conversation open beside its customer (``call``: what became
    of a call just logged from the page, when it is worth saying)."""
    extra = {"call_notice": CALL_NOTICES.get(call or "")}
    return _workspace(request, person, conversation_id, queue, channel, before, extra)


@router.get("/inbox/{conversation_id:uuid}/parts")
def conversation_parts(
    request: Request,
    conversation_id: UUID,
    person: Reader,
    queue: str | None = None,
    channel: str | None = None,
) -> JSONResponse:
    """The conversation's header, thread and customer panel as HTML, for live refreshes."""
    with read(request.app.state.engine) as conn:
        context = _conversation_context(request, conn, person, conversation_id)
    back = _back_query(queue if queue in QUEUES else None, channel)
    return _parts(
        person,
        {**context, "back": back},
        head="inbox_head.html",
        thread="inbox_thread.html",
        customer="inbox_customer.html",
    )


# --- actions ---------------------------------------------------------------------------


@router.post("/inbox/{conversation_id:uuid}/reply")
def reply_form(
    request: Request,
    conversation_id: UUID,
    person: Writer,
    body: Annotated[str, Form(max_length=100_000)] = "",
    mode: Annotated[str, Form(max_length=10)] = "reply",
    inbox_id: Annotated[str, Form(max_length=100)] = "",
    queue: Annotated[str, Form(max_length=20)] = "",
    channel: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Send a reply (through the chosen inbox: its channel) or add an internal note."""
    if mode == "note":
        post_note(request, conversation_id, api_model(NoteRequest, body=body), person.principal)
    elif mode == "reply":
        request_body = api_model(MessageRequest, body=body, inbox_id=inbox_id or None)
        post_message(request, conversation_id, request_body, person.principal)
    else:
        raise InvalidInput("mode is reply or note", field="mode")
    return _back(conversation_id, queue, channel)


@router.post("/inbox/{conversation_id:uuid}/update")
def update_form(
    request: Request,
    conversation_id: UUID,
    person: Writer,
    status: Annotated[str, Form(max_length=20)] = "",
    snooze_until: Annotated[str, Form(max_length=40)] = "",
    tz_offset: Annotated[str, Form(max_length=10)] = "0",
    priority: Annotated[str, Form(max_length=20)] = "",
    assignee: Annotated[str, Form(max_length=100)] = "",
    labels: Annotated[str, Form(max_length=2000)] = "",
    set_labels: Annotated[str, Form(max_length=1)] = "",
    queue: Annotated[str, Form(max_length=20)] = "",
    channel: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Change the status (resolve, pending, snooze until, reopen), priority, assignee or
    labels: whichever fields the submitted form carries."""
    change: dict[str, Any] = {}
    if status:
        change["status"] = status
        if status == "snoozed":
            change["snoozed_until"] = _local_time(snooze_until, tz_offset)
    if priority:
        change["priority"] = priority
    if assignee == "me":
        change["assignee_id"] = person.principal.id
    elif assignee == "none":
        change["unassign"] = True
    elif assignee:
        change["assignee_id"] = _uuid(assignee, "assignee")
    if set_labels:
        change["labels"] = [label for label in labels.split(",") if label.strip()]
    if not change:
        raise InvalidInput("nothing to change", field="status")
    patch_conversation(
        request, conversation_id, api_model(ConversationChange, **change), person.principal
    )
    return _back(conversation_id, queue, channel)


@router.post("/inbox/{conversation_id:uuid}/calls")
def call_form(
    request: Request,
    conversation_id: UUID,
    person: Writer,
    inbox_id: Annotated[str, Form(max_length=100)] = "",
    direction: Annotated[str, Form(max_length=20)] = "",
    phone: Annotated[str, Form(max_length=200)] = "",
    started_at: Annotated[str, Form(max_length=40)] = "",
    tz_offset: Annotated[str, Form(max_length=10)] = "0",
    duration: Annotated[str, Form(max_length=20)] = "",
    notes: Annotated[str, Form(max_length=100_000)] = "",
    queue: Annotated[str, Form(max_length=20)] = "",
    channel: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Log a phone call with the customer, the signed-in agent as its author, checked and
    stored by the phone connector exactly as ``POST /api/inbox/inboxes/{id}/calls`` does.
    The call joins the conversation of the customer with that number (this one, when it is
    open); bad input shows the form again with the error, and nothing is stored."""
    app = request.app.state
    with read(app.engine) as conn:
        exists = conn.execute(
            sa.select(conversations.c.id).where(conversations.c.id == conversation_id)
        ).first()
    if exists is None:
        raise NotFound("no such conversation", field="conversation_id")
    try:
        if not notes.strip():
            raise InvalidInput("write what the call was about", field="notes")
        with read(app.engine) as conn:
            inbox = get_inbox(conn, inbox_id)
        if inbox.channel != "phone":
            raise NotFound("no such inbox", field="inbox_id")
        log = api_model(
            CallLog,
            phone=phone.strip(),
            direction=direction,
            started_at=_local_time(
                started_at, tz_offset, "started_at", "give the date and time the call started"
            ),
            duration_seconds=_call_seconds(duration),
            notes=notes,
            agent=person.principal.name,
        )
        call = check_call(log, identity_rules(app.settings))
    except PlaitError as exc:
        form = {
            "inbox_id": inbox_id,
            "direction": direction,
            "phone": phone,
            "started_at": started_at,
            "tz_offset": tz_offset,
            "duration": duration,
            "notes": notes,
            "error": exc.message,
            "field": exc.field,
        }
        return _workspace(
            request,
            person,
            conversation_id,
            queue if queue in QUEUES else None,
            channel if channel in EVENT_CHANNELS else None,
            None,
            {"call_form": form},
            status=exc.status,
        )
    received = log_calls(app.engine, app.settings, app.rules, inbox, [call])[0]
    landed = received.conversation_id or conversation_id
    notice = "duplicate" if received.duplicate else "elsewhere" if landed != conversation_id else ""
    return _back(landed, queue, channel, call=notice)


@router.post("/inbox/{conversation_id:uuid}/messages/{message_id:uuid}/retry")
def retry_form(
    request: Request,
    conversation_id: UUID,
    message_id: UUID,
    person: Writer,
    queue: Annotated[str, Form(max_length=20)] = "",
    channel: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Send a failed message again."""
    with read(request.app.state.engine) as conn:
        owner = conn.execute(
            sa.select(messages.c.conversation_id).where(messages.c.id == message_id)
        ).scalar()
    if owner != conversation_id:
        raise NotFound("no such message in this conversation", field="message_id")
    post_retry(request, message_id, person.principal)
    return _back(conversation_id, queue, channel)


@router.post("/inbox/availability")
def availability_form(
    request: Request,
    person: Writer,
    available: Annotated[str, Form(max_length=1)] = "",
    back: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Turn the signed-in agent's auto-assignment on (1) or off (0)."""
    if available not in ("0", "1"):
        raise InvalidInput("available is 1 or 0", field="available")
    change = api_model(Availability, available=available == "1")
    put_agent(request, person.principal.id, change, person.principal)
    target = back if back.startswith("/inbox") and "//" not in back else "/inbox"
    return RedirectResponse(target, status_code=303)


# --- the workspace's content -----------------------------------------------------------


def _workspace(
    request: Request,
    person: SignedIn,
    conversation_id: UUID | None,
    queue: str | None,
    channel: str | None,
    before: str | None,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    """Everything the workspace shows, read in one transaction (``extra``: more context,
    such as a form shown again with its error)."""
    since = utcnow()  # live updates start from before the reads: nothing falls in between
    cursor = _cursor(before)
    me = person.principal.id
    with read(request.app.state.engine) as conn:
        context = _queue_context(request, conn, person, queue, channel, cursor, conversation_id)
        if conversation_id is not None:
            context.update(_conversation_context(request, conn, person, conversation_id))
            context["canned"] = _canned(conn)
            if person.principal.can("inbox:write"):
                context["call"] = _call_context(request, conn, context, (extra or {}))
        context["available"] = conn.execute(
            sa.select(agents.c.available).where(agents.c.user_id == me)
        ).scalar()
        context["has_inboxes"] = conn.execute(sa.select(inboxes.c.id).limit(1)).first() is not None
    back = _back_query(context["queue"], context["channel"])
    kept = [(key, value) for key, value in request.query_params.multi_items() if key != "call"]
    here = request.url.path + (f"?{urlencode(kept)}" if kept else "")
    if request.method != "GET":  # a form shown again: the page it was on
        here = f"/inbox/{conversation_id}" + (f"?{urlencode(back)}" if back else "")
    context.update(
        title=context["conversation"]["title"] if conversation_id else "Inbox",
        since=since.isoformat(),
        here=here,
        back=back,
        can_manage=person.principal.can("inbox:manage"),
        can_write=person.principal.can("inbox:write"),
        call_notice=(extra or {}).get("call_notice"),
    )
    return render(request, "inbox.html", context, status)


def _queue_context(
    request: Request,
    conn: Connection,
    person: SignedIn,
    queue: str | None,
    channel: str | None,
    before: tuple[datetime, UUID] | None,
    selected: UUID | None,
) -> dict[str, Any]:
    """The queues with their counts and the chosen queue's page of conversations."""
    policy = request.app.state.settings.inbox.sla
    now = utcnow()
    me = person.principal.id
    counts = queue_counts(conn, user_id=me, policy=policy, now=now)
    if queue in (None, ""):
        queue = "mine" if counts["mine"] else "all"
    elif queue not in QUEUES:
        raise InvalidInput(f"queue is one of {', '.join(QUEUES)}", field="queue")
    if channel in (None, ""):
        channel = None
    elif channel not in EVENT_CHANNELS:
        raise InvalidInput(f"channel is one of {', '.join(EVENT_CHANNELS)}", field="channel")
    rows = list_conversations(
        conn, queue, user_id=me, policy=policy, channel=channel, limit=PAGE + 1, before=before
    )
    shown = rows[:PAGE]
    query = _back_query(queue, channel)
    items = [_item_view(row, me, now, query, selected) for row in shown]
    older = None
    if len(rows) > PAGE:
        last = shown[-1]
        cursor = f"{last['last_message_at']}|{last['id']}"
        older = "/inbox?" + urlencode({**query, "before": cursor})
    return {
        "queue": queue,
        "channel": channel,
        "queue_label": QUEUE_LABELS[queue] + (f" · {CHANNEL_LABELS[channel]}" if channel else ""),
        "queues": [
            {
                "key": key,
                "label": label,
                "icon": QUEUE_ICONS[key],
                "count": counts[key],
                "url": "/inbox?" + urlencode(_back_query(key, None)),
                "current": key == queue and channel is None,
            }
            for key, label in QUEUE_LABELS.items()
        ],
        "channels": [
            {
                "key": key,
                "label": CHANNEL_LABELS[key],
                "icon": inbox_icon(key),
                "count": count,
                "url": "/inbox?" + urlencode(_back_query("all", key)),
                "current": key == channel,
            }
            for key, count in sorted(counts["channels"].items())
        ],
        "items": items,
        "older_url": older,
        "selected": str(selected) if selected else None,
    }


def _item_view(
    row: dict[str, Any],
    me: UUID,
    now: datetime,
    query: dict[str, str],
    selected: UUID | None,
) -> dict[str, Any]:
    preview = row["preview"] or {}
    waiting = _moment(row["waiting_since"], "waiting_since")
    last = _moment(row["last_message_at"], "last_message_at")
    return {
        "id": row["id"],
        "number": row["number"],
        "url": f"/inbox/{row['id']}?{urlencode(query)}",
        "name": _display_name(row["customer_name"], preview.get("contact"), row["customer_id"]),
        "channel": row["channel"],
        "channel_label": CHANNEL_LABELS.get(row["channel"], row["channel"]),
        "icon": inbox_icon(row["channel"]),
        "preview": preview.get("body") or row["subject"] or "",
        "outbound": preview.get("direction") == "out",
        "waiting": f"waiting {_span(now - waiting)}" if waiting else None,
        "last": _span(now - last) + " ago" if last else None,
        "last_iso": row["last_message_at"],
        "sla": _sla_view(row, now),
        "assignee": _assignee(row, me),
        "status": row["status"],
        "status_label": STATUS_LABELS.get(row["status"], row["status"]),
        "priority": row["priority"],
        "priority_label": PRIORITY_LABELS.get(row["priority"], row["priority"]),
        "priority_icon": PRIORITY_ICONS.get(row["priority"], ""),
        "selected": selected is not None and row["id"] == str(selected),
    }


def _conversation_context(
    request: Request, conn: Connection, person: SignedIn, conversation_id: UUID
) -> dict[str, Any]:
    """One conversation: its thread, the ways to reply, and its customer's 360."""
    settings = request.app.state.settings
    now = utcnow()
    detail = get_conversation(conn, conversation_id, settings.inbox.sla)
    customer_id = UUID(detail["customer_id"])
    profile = profile_360(conn, customer_id, settings.profiles)
    inbound = [m for m in detail["messages"] if m["direction"] == "in"]
    contact = inbound[-1]["contact"] if inbound else None
    name = _display_name(profile["name"], contact, detail["customer_id"])
    routes = _reply_routes(conn, profile, UUID(detail["inbox_id"]))
    calls = _calls(conn, [m["id"] for m in detail["messages"] if m["channel"] == "phone"])
    snooze = (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    view = {
        **detail,
        "title": f"{name} · #{detail['number']}",
        "name": name,
        "channel_label": CHANNEL_LABELS.get(detail["channel"], detail["channel"]),
        "icon": inbox_icon(detail["channel"]),
        "status_label": STATUS_LABELS.get(detail["status"], detail["status"]),
        "priority_label": PRIORITY_LABELS.get(detail["priority"], detail["priority"]),
        "priority_icon": PRIORITY_ICONS.get(detail["priority"], ""),
        "assignee_label": _assignee(detail, person.principal.id),
        "mine": detail["assignee_id"] == str(person.principal.id),
        "sla": _sla_view(detail, now),
        "snoozed_text": _when(detail["snoozed_until"]),
        "snooze_default": snooze.strftime("%Y-%m-%dT%H:%M"),
    }
    return {
        "conversation": view,
        "days": _days([_message_view(m, name, calls.get(m["id"])) for m in detail["messages"]]),
        "customer": _customer_view(conn, settings, profile, name, now),
        "others": _other_conversations(conn, customer_id, conversation_id),
        "routes": routes,
        "agents": _agents(conn),
        "priorities": [(key, PRIORITY_LABELS[key]) for key in PRIORITIES],
    }


def _message_view(
    message: dict[str, Any], customer: str, call: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A message as the thread shows it; ``call``: its ``Call Completed`` event's properties,
    if it is a logged call (then it says "Call, 5 min" rather than how it was delivered)."""
    direction = message["direction"]
    kind = {"in": "inbound", "out": "outbound"}.get(direction, "note")
    moment = parse_timestamp(message["created_at"])
    who = (message["sender_name"] or customer) if kind == "inbound" else message["author"]
    icon, label = DELIVERY.get(message["status"], ("", message["status"].capitalize()))
    is_call = call is not None and kind != "note"
    if is_call and kind == "outbound" and not who:
        who = (call or {}).get("agent")
    return {
        **message,
        "kind": kind,
        "who": who,
        "channel_label": CHANNEL_LABELS.get(message["channel"], message["channel"]),
        "icon": "📝" if kind == "note" else inbox_icon(message["channel"]),
        "time": f"{moment:%H:%M}",
        "day": f"{moment:%A} {moment.day} {moment:%B %Y}",
        "delivery": {"icon": icon, "label": label} if kind == "outbound" and not is_call else None,
        "call": _call_label(call or {}) if is_call else None,
    }


def _calls(conn: Connection, message_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The properties of the ``Call Completed`` events of these (phone) messages."""
    if not message_ids:
        return {}
    rows = conn.execute(
        sa.select(messages.c.id, events.c.properties)
        .join(events, events.c.id == messages.c.event_id)
        .where(messages.c.id.in_([UUID(key) for key in message_ids]))
    )
    return {str(row.id): dict(row.properties or {}) for row in rows}


def _call_label(properties: dict[str, Any]) -> str:
    """A call in words: "Call, 5 min", "Call, 40 s, voicemail"."""
    parts = ["Call"]
    seconds = properties.get("duration_seconds")
    if isinstance(seconds, int | float) and seconds > 0:
        parts.append(_length(int(seconds)))
    outcome = properties.get("outcome")
    if isinstance(outcome, str) and outcome.strip().lower() not in QUIET_OUTCOMES:
        parts.append(outcome.strip())
    return ", ".join(parts)


def _length(seconds: int) -> str:
    """A call's length: 40 s, 5 min, 1 h 20 min."""
    if seconds < 60:
        return f"{seconds} s"
    minutes = (seconds + 30) // 60
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _call_context(
    request: Request, conn: Connection, context: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """The "Log a call" form: the phone inboxes a call can be logged on, the customer's
    numbers (the one this conversation came from first) and the form's values: the ones
    just submitted when it is shown again with an error."""
    conversation = context["conversation"]
    rows = conn.execute(
        sa.select(inboxes.c.id, inboxes.c.name)
        .where(inboxes.c.channel == "phone", inboxes.c.disabled_at.is_(None))
        .order_by(inboxes.c.name)
    ).all()
    phone_inboxes = [{"id": str(row.id), "name": row.name} for row in rows]
    rules = identity_rules(request.app.state.settings)
    phones: list[str] = []
    inbound = [m for m in conversation["messages"] if m["direction"] == "in" and m["contact"]]
    if inbound:
        last = inbound[-1]
        kind = CONTACT_KINDS.get(last["channel"])
        contact = "+" + last["contact"].lstrip("+") if kind == "wa_id" else last["contact"]
        number = rules.normalize("phone", contact) if kind in ("phone", "wa_id") else None
        phones += [number] if number else []
    phones += [number for number in context["customer"]["phones"] if number not in phones]
    own = conversation["inbox_id"]
    chosen = own if any(i["id"] == own for i in phone_inboxes) else None
    form = {
        "inbox_id": chosen or (phone_inboxes[0]["id"] if phone_inboxes else ""),
        "direction": "outbound",
        "phone": phones[0] if phones else "",
        "started_at": f"{utcnow():%Y-%m-%dT%H:%M}",
        "tz_offset": "0",
        "duration": "",
        "notes": "",
        "error": None,
        "field": None,
        "default_time": True,
    }
    submitted = extra.get("call_form")
    if submitted:
        form.update(submitted, default_time=False)
    return {
        "inboxes": phone_inboxes,
        "phones": phones,
        "directions": list(CALL_DIRECTIONS.items()),
        "form": form,
        "max_minutes": MAX_CALL_MINUTES,
    }


def _days(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive messages of the same day under one heading."""
    days: list[dict[str, Any]] = []
    for item in items:
        if not days or days[-1]["day"] != item["day"]:
            days.append({"day": item["day"], "messages": []})
        days[-1]["messages"].append(item)
    return days


def _customer_view(
    conn: Connection,
    settings: Any,
    profile: dict[str, Any],
    name: str,
    now: datetime,
) -> dict[str, Any]:
    """The 360 beside the thread, from ``profile_360``: contact, orders, stage, journey."""
    contact = profile["last_contact"]
    if contact is not None:
        moment = _moment(contact["time"], "time")
        contact = {
            **contact,
            "icon": channel_icon(contact["channel"]),
            "ago": _span(now - moment) + " ago" if moment else None,
            "arrow": {"inbound": "↙", "outbound": "↗"}.get(contact["direction"] or "", ""),
        }
    return {
        "id": profile["id"],
        "name": name,
        "emails": profile["identifiers"].get("email", []),
        "phones": profile["identifiers"].get("phone", []),
        "stage": profile["lifecycle_stage"],
        "stage_label": STAGE_LABELS.get(profile["lifecycle_stage"], profile["lifecycle_stage"]),
        "orders": profile["orders"],
        "revenue": profile["lifetime_revenue"],
        "currency": order_currency(conn, UUID(profile["id"]), settings.profiles),
        "first_touch": profile["first_touch_channel"],
        "last_touch": profile["last_touch_channel"],
        "contact": contact,
        "first_seen": _when(profile["first_seen"]),
    }


def _other_conversations(
    conn: Connection, customer_id: UUID, conversation_id: UUID
) -> list[dict[str, Any]]:
    """The customer's other conversations, open ones first, then the most recent."""
    rows = conn.execute(
        customer_conversations(customer_id)
        .add_columns(inboxes.c.channel, inboxes.c.name.label("inbox_name"))
        .join(inboxes, inboxes.c.id == conversations.c.inbox_id)
        .where(conversations.c.id != conversation_id)
        .order_by(
            (conversations.c.status == "resolved").asc(), conversations.c.last_message_at.desc()
        )
        .limit(OTHER_CONVERSATIONS)
    ).mappings()
    return [
        {
            "id": str(row["id"]),
            "number": row["number"],
            "open": row["status"] != "resolved",
            "status_label": STATUS_LABELS.get(row["status"], row["status"]),
            "channel_label": CHANNEL_LABELS.get(row["channel"], row["channel"]),
            "icon": inbox_icon(row["channel"]),
            "inbox": row["inbox_name"],
            "subject": row["subject"],
            "when": _when(isoformat(row["last_message_at"])),
        }
        for row in rows
    ]


def _reply_routes(conn: Connection, profile: dict[str, Any], current: UUID) -> list[dict[str, Any]]:
    """The inboxes that can reach the customer, the conversation's own first: of those whose
    channel the customer has an address kind for or has written through, the ones
    ``outbox.recipient`` finds an address on."""
    customer_id = UUID(profile["id"])
    used = set(
        conn.execute(
            sa.select(messages.c.inbox_id)
            .where(
                messages.c.conversation_id.in_(
                    customer_conversations(customer_id).with_only_columns(conversations.c.id)
                )
            )
            .distinct()
        ).scalars()
    )
    rows = conn.execute(
        sa.select(inboxes).where(inboxes.c.disabled_at.is_(None)).order_by(inboxes.c.name)
    ).all()
    routes = []
    for row in rows:
        inbox = inbox_of(row)
        known = inbox.id in used or CONTACT_KINDS.get(inbox.channel) in profile["identifiers"]
        if not known or inbox.channel in UNSENDABLE:
            continue
        try:
            address = recipient(conn, {"profile_id": customer_id}, inbox)
        except InvalidInput:
            continue
        routes.append(
            {
                "id": str(inbox.id),
                "label": f"{CHANNEL_LABELS.get(inbox.channel, inbox.channel)} · {inbox.name}",
                "channel": inbox.channel,
                "icon": inbox_icon(inbox.channel),
                "address": address,
                "current": inbox.id == current,
            }
        )
    return sorted(routes, key=lambda route: not route["current"])


def _agents(conn: Connection) -> list[dict[str, Any]]:
    """Who conversations can be assigned to: enabled agents and admins."""
    rows = conn.execute(
        sa.select(users.c.id, users.c.email, users.c.role, agents.c.available)
        .outerjoin(agents, agents.c.user_id == users.c.id)
        .where(users.c.role.in_(("agent", "admin")), users.c.disabled_at.is_(None))
        .order_by(users.c.email)
    )
    return [
        {"id": str(row.id), "email": row.email, "role": row.role, "available": bool(row.available)}
        for row in rows
    ]


def _canned(conn: Connection) -> list[dict[str, str]]:
    rows = conn.execute(
        sa.select(canned_replies.c.shortcut, canned_replies.c.body).order_by(
            canned_replies.c.shortcut
        )
    )
    return [{"shortcut": row.shortcut, "body": row.body} for row in rows]


def _display_name(name: str | None, contact: str | None, customer_id: str | None) -> str:
    """The customer's name, else their address on the conversation's channel."""
    if name or contact:
        return str(name or contact)
    return "Customer …" + (customer_id or "").replace("-", "")[-6:]


def _assignee(row: dict[str, Any], me: UUID) -> str | None:
    if not row["assignee_id"]:
        return None
    return "You" if row["assignee_id"] == str(me) else row["assignee"]


def _sla_view(row: dict[str, Any], now: datetime) -> dict[str, str] | None:
    """The worst SLA flag, in words: which clock is breached, or which is at risk and when
    it runs out."""
    flags = row["sla"]
    breached = [clock for clock in CLOCK_LABELS if flags.get(clock) == "breached"]
    if breached:
        return {
            "state": "breached",
            "icon": "⛔",
            "label": "SLA breached",
            "detail": f"{CLOCK_LABELS[breached[0]]} overdue",
        }
    risky = [clock for clock in CLOCK_LABELS if flags.get(clock) == "at_risk"]
    if risky:
        due = _moment(row["due"].get(risky[0]), "due")
        left = f" due in {_span(due - now)}" if due and due > now else " due now"
        return {
            "state": "at_risk",
            "icon": "⚠️",
            "label": "SLA at risk",
            "detail": CLOCK_LABELS[risky[0]] + left,
        }
    return None


# --- live updates ----------------------------------------------------------------------


@dataclass
class Watch:
    """A live stream's position: the newest ``updated_at`` seen, and what was reported in
    the settle window behind it (so late commits are caught without repeats)."""

    cursor: datetime
    seen: dict[UUID, datetime] = field(default_factory=dict)


def changed_conversations(conn: Connection, watch: Watch) -> list[str]:
    """Conversations changed since ``watch.cursor`` (and not yet reported); moves it on."""
    rows = conn.execute(
        sa.select(conversations.c.id, conversations.c.updated_at)
        .where(conversations.c.updated_at > watch.cursor - SETTLE)
        .order_by(conversations.c.updated_at)
        .limit(MAX_CHANGES)
    ).all()
    changed = []
    for key, updated in rows:
        if watch.seen.get(key) != updated:
            changed.append(str(key))
            watch.seen[key] = updated
        watch.cursor = max(watch.cursor, updated)
    horizon = watch.cursor - SETTLE
    watch.seen = {key: moment for key, moment in watch.seen.items() if moment > horizon}
    return changed


async def _stream(request: Request, watch: Watch) -> AsyncIterator[str]:
    engine = request.app.state.engine

    def poll() -> list[str]:
        with read(engine) as conn:
            return changed_conversations(conn, watch)

    yield f"retry: 1000\nid: {watch.cursor.isoformat()}\n\n"
    started = last_sent = time.monotonic()
    while time.monotonic() - started < STREAM_SECONDS and not _server_stopping():
        if await request.is_disconnected():
            return
        changed = await run_in_threadpool(poll)
        if changed:
            yield _event("change", {"ids": changed}, watch.cursor)
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= PING_SECONDS:
            yield _event("ping", {}, watch.cursor)
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)
    yield _event("ping", {}, watch.cursor)


def _event(name: str, data: dict[str, Any], cursor: datetime) -> str:
    return f"event: {name}\nid: {cursor.isoformat()}\ndata: {orjson.dumps(data).decode()}\n\n"


def _server_stopping() -> bool:
    """Whether uvicorn is shutting down (it waits for open responses, and a live stream would
    keep it waiting): its signal handler is bound to the server, which says so."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))


# --- small helpers ---------------------------------------------------------------------


def _parts(person: SignedIn, context: dict[str, Any], **names: str) -> JSONResponse:
    """Page fragments rendered by the templates the page itself includes."""
    base = {"csrf_token": person.csrf_token, "viewer": person.principal, **context}
    base.setdefault("can_write", person.principal.can("inbox:write"))
    body = {key: templates.env.get_template(name).render(base) for key, name in names.items()}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def api_model(model: type[BaseModel], **values: Any) -> Any:
    """The API's request model for a form's values; a clear 400 if they do not fit it."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first.get("loc", ())) or None
        message = first.get("msg", "invalid input")
        raise InvalidInput(f"{name}: {message}" if name else message, field=name) from None


def _back(conversation_id: UUID, queue: str, channel: str, call: str = "") -> RedirectResponse:
    """Back to the conversation (in its queue); ``call``: a notice about a logged call."""
    params = _back_query(queue if queue in QUEUES else None, channel or None)
    query = urlencode({**params, "call": call} if call else params)
    url = f"/inbox/{conversation_id}" + (f"?{query}" if query else "")
    return RedirectResponse(url, status_code=303)


def _back_query(queue: str | None, channel: str | None) -> dict[str, str]:
    query = {}
    if queue:
        query["queue"] = queue
    if channel and channel in EVENT_CHANNELS:
        query["channel"] = channel
    return query


def _local_time(
    value: str,
    offset: str,
    name: str = "snooze_until",
    message: str = "snooze until a date and time",
) -> datetime:
    """A ``datetime-local`` form value in the browser's time zone (``offset``: minutes
    behind UTC, as ``Date.getTimezoneOffset`` gives; 0 without JavaScript) as UTC."""
    problem = InvalidInput(message, field=name)
    try:
        minutes = int(offset or "0")
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise problem from None
    if not -900 <= minutes <= 900 or moment.tzinfo is not None:
        raise problem
    try:
        return moment.replace(tzinfo=UTC) + timedelta(minutes=minutes)
    except OverflowError:
        raise problem from None


def _call_seconds(text: str) -> int:
    """A call's length given in minutes (blank: not known) as seconds."""
    text = text.strip().replace(",", ".")
    if not text:
        return 0
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not (math.isfinite(minutes) and 0 <= minutes <= MAX_CALL_MINUTES):
        raise InvalidInput(
            f"the duration is a number of minutes, 0 to {MAX_CALL_MINUTES}", field="duration"
        )
    return round(minutes * 60)


def _cursor(text: str | None) -> tuple[datetime, UUID] | None:
    if not text:
        return None
    moment, _, key = text.partition("|")
    try:
        return parse_timestamp(moment), UUID(key)
    except (ValueError, TypeError):
        raise InvalidInput("before is not a cursor this page gave", field="before") from None


def _moment(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise InvalidInput(f"{name} is not a timestamp", field=name) from None


def _uuid(value: str, name: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(f"{name} must be an id, not {value[:60]!r}", field=name) from None


def inbox_icon(channel: str) -> str:
    if channel == "api":
        return "🔌"
    return channel_icon(EVENT_CHANNELS.get(channel))


def _span(delta: timedelta) -> str:
    """A duration the way a queue shows it: 40 s, 12 min, 3 h, 2 d."""
    seconds = max(delta.total_seconds(), 0)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _when(iso: str | None) -> str | None:
    moment = _moment(iso, "time") if iso else None
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC" if moment else None
