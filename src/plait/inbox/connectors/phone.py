"""Phone: calls logged by agents, or imported from a telephony system's export, on a ``phone``
inbox. Each call is a message in the customer's conversation (``in`` for a call they made,
``out`` for one the team made; its body is the call's summary and notes) and a
``Call Completed`` event on the Phone channel: a contact on the customer's timeline and a touch
for attribution. The caller is found by phone number (E.164, or national in
``identity.default_region``), so a customer who texted and then called is one customer.

An inbound call joins or opens the customer's conversation like any inbound message (the
customer waits for the follow-up). An outbound call joins their open conversation, else starts
one, and answers them (it stops the response clocks, as a reply does).

A call is stored once: by its ``call_id`` (the telephony system's id) or, without one, by its
number, direction and start time. Nothing can be *sent* through a phone inbox: a reply through
one is refused (``outbox.UNSENDABLE``).

``POST /api/inbox/inboxes/{inbox_id}/calls`` logs one call (JSON); ``…/calls:import`` imports
a CSV file with the same fields as columns, all or nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Connection, Engine

from plait.collect.messages import Rules
from plait.core.auth import Principal, require
from plait.core.clock import utcnow
from plait.core.db import write
from plait.core.errors import InvalidInput, TooLarge
from plait.core.settings import InboxSettings, Settings
from plait.core.users import users
from plait.identity.identifiers import IdentityRules, identity_rules
from plait.inbox.connectors import DeliveryFailed, Outgoing
from plait.inbox.inboxes import Inbox
from plait.inbox.outbox import answered
from plait.inbox.receiving import MAX_BODY, Inbound, Received, store_message
from plait.inbox.routing import Router, lock_routing, route_pending, unrouted_messages
from plait.inbox.schema import conversations, messages
from plait.inbox.webhooks import webhook_inbox, webhook_inbox_async
from plait.profiles.pipeline import resolve

router = APIRouter(tags=["inbox"])

Writer = Annotated[Principal, Depends(require("inbox:write"))]
CALL_EVENT = "Call Completed"
DIRECTIONS = {"inbound": "in", "outbound": "out"}
FUTURE_LEEWAY = timedelta(minutes=5)
MAX_IMPORT_BYTES = 5_000_000
MAX_IMPORT_ROWS = 10_000
MAX_LISTED_ERRORS = 50


class CallLog(BaseModel):
    """One call, as an agent or a telephony export reports it."""

    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=1, max_length=50, description="the customer's number")
    direction: Literal["inbound", "outbound"]
    started_at: datetime
    duration_seconds: int = Field(0, ge=0, le=7 * 86400)
    summary: str | None = Field(None, max_length=500)
    notes: str | None = Field(None, max_length=90_000)
    outcome: str | None = Field(None, max_length=50, description="answered, voicemail, missed…")
    agent: str | None = Field(None, max_length=320, description="the agent's email, or name")
    call_id: str | None = Field(None, max_length=200, description="your id: stored once")
    name: str | None = Field(None, max_length=200, description="the customer's name")
    email: str | None = Field(None, max_length=320, description="the customer's email")


@dataclass(frozen=True)
class Call:
    """A checked call: its number in E.164, its time in UTC and its message body."""

    provider_id: str
    phone: str
    direction: str
    started_at: datetime
    body: str
    agent: str | None
    traits: dict[str, str]
    properties: dict[str, Any] = field(default_factory=dict)


class InvalidRows(InvalidInput):
    """Some rows of an import are not valid calls; the error lists each with its row number
    (the header is row 1)."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        listed = "; ".join(f"row {e['row']}: {e['field']}: {e['message']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(
            f"{len(errors)} row(s) are not valid calls, nothing was imported: {listed}{more}",
            field="rows",
        )
        self.errors = list(errors[:MAX_LISTED_ERRORS])

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["error"]["rows"] = self.errors
        return body


@router.post("/api/inbox/inboxes/{inbox_id}/calls", status_code=201)
def post_call(
    request: Request, response: Response, inbox_id: str, body: CallLog, _p: Writer
) -> dict[str, Any]:
    """Log a call on a phone inbox (200 and ``duplicate`` if it was logged before)."""
    app = request.app.state
    inbox = webhook_inbox(app.engine, inbox_id, ["phone"])
    call = check_call(body, identity_rules(app.settings))
    received = log_calls(app.engine, app.settings, app.rules, inbox, [call])[0]
    if received.duplicate:
        response.status_code = 200
    return {
        "id": str(received.message_id),
        "conversation_id": str(received.conversation_id) if received.conversation_id else None,
        "duplicate": received.duplicate,
        "phone": call.phone,
        "direction": call.direction,
    }


@router.post(
    "/api/inbox/inboxes/{inbox_id}/calls:import",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "a header row naming CallLog's fields, then one call per row",
        }
    },
)
async def import_calls(request: Request, inbox_id: str, _p: Writer) -> dict[str, Any]:
    """Import calls from a CSV file: every row is checked first, and if any is not a valid
    call nothing is stored and the error lists the bad rows by number."""
    app = request.app.state
    inbox = await webhook_inbox_async(app.engine, inbox_id, ["phone"])
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise TooLarge(f"an import may be at most {MAX_IMPORT_BYTES} bytes", field="body")
    calls = parse_csv(raw, identity_rules(app.settings))
    results = await run_in_threadpool(log_calls, app.engine, app.settings, app.rules, inbox, calls)
    duplicates = sum(result.duplicate for result in results)
    return {"calls": len(results), "imported": len(results) - duplicates, "duplicates": duplicates}


def parse_csv(raw: bytes, rules: IdentityRules) -> list[Call]:
    """Every row of a CSV export as a checked call, or InvalidRows naming each bad row."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the file is not UTF-8 text", field="body") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    unknown = sorted(set(header) - set(CallLog.model_fields))
    if unknown or not header:
        known = ", ".join(CallLog.model_fields)
        raise InvalidInput(
            f"unknown column(s) {', '.join(unknown) or '(no header)'}; use {known}", field="header"
        )
    missing = [name for name in ("phone", "direction", "started_at") if name not in header]
    if missing:
        raise InvalidInput(f"the file has no {', '.join(missing)} column", field="header")
    calls, errors = [], []
    for cells in reader:
        row = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(calls) + len(errors) >= MAX_IMPORT_ROWS:
            raise TooLarge(f"an import may have at most {MAX_IMPORT_ROWS} rows", field="body")
        pairs = zip(header, cells, strict=False)
        record = {name: cell.strip() for name, cell in pairs if cell.strip()}
        try:
            if len(cells) > len(header):
                raise InvalidInput("the row has more cells than the header", field="row")
            calls.append(check_call(CallLog.model_validate(record), rules))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "row"
            errors.append({"row": row, "field": where, "message": first["msg"]})
        except InvalidInput as exc:
            errors.append({"row": row, "field": exc.field or "row", "message": exc.message})
    if errors:
        raise InvalidRows(errors)
    if not calls:
        raise InvalidInput("the file has no calls", field="body")
    return calls


def check_call(log: CallLog, rules: IdentityRules) -> Call:
    """A logged call with its number normalised like any phone identifier, or InvalidInput."""
    phone = rules.normalize("phone", log.phone)
    if phone is None:
        raise InvalidInput(
            f"phone {log.phone!r} is not a valid number (E.164, or national in "
            f"{rules.default_region})",
            field="phone",
        )
    traits = {"phone": phone}
    if log.email:
        email = rules.normalize("email", log.email)
        if email is None:
            raise InvalidInput(f"email {log.email!r} is not a valid address", field="email")
        traits["email"] = email
    if log.name and log.name.strip():
        traits["name"] = log.name.strip()
    started = log.started_at
    started = started.replace(tzinfo=UTC) if started.tzinfo is None else started.astimezone(UTC)
    if started > utcnow() + FUTURE_LEEWAY:
        raise InvalidInput("started_at is in the future", field="started_at")
    parts = [text.strip() for text in (log.summary, log.notes) if text and text.strip()]
    minutes, seconds = divmod(log.duration_seconds, 60)
    body = "\n\n".join(parts) or (
        f"{log.direction.capitalize()} call, {log.outcome or 'completed'}, "
        f"{minutes} min {seconds} s"
    )
    if "\x00" in body or len(body) > MAX_BODY:
        raise InvalidInput("notes may not contain NUL characters or be this long", field="notes")
    provider_id = (log.call_id or "").strip() or "call:" + hashlib.sha256(
        f"{phone}|{log.direction}|{started.isoformat()}".encode()
    ).hexdigest()[:40]
    properties = {
        "call_id": provider_id,
        "duration_seconds": log.duration_seconds,
        "outcome": log.outcome,
        "agent": log.agent,
    }
    return Call(
        provider_id=provider_id,
        phone=phone,
        direction=log.direction,
        started_at=started,
        body=body,
        agent=log.agent.strip().lower() if log.agent else None,
        traits=traits,
        properties={key: value for key, value in properties.items() if value is not None},
    )


def log_calls(
    engine: Engine, settings: Settings, rules: Rules, inbox: Inbox, calls: Sequence[Call]
) -> list[Received]:
    """Store calls with their events in one transaction (each once), then put each in its
    customer's conversation."""
    with write(engine) as conn:
        authors = _authors(conn, {call.agent for call in calls if call.agent})
        stored = [_store(conn, rules, inbox, call, authors.get(call.agent or "")) for call in calls]
    unrouted = [(c, s) for c, s in zip(calls, stored, strict=True) if s.conversation_id is None]
    routed = route_pending(
        engine, settings, only=[s.message_id for c, s in unrouted if c.direction == "inbound"]
    )
    routed.update(
        route_outbound(
            engine, settings, [s.message_id for c, s in unrouted if c.direction == "outbound"]
        )
    )
    return [
        Received(s.message_id, s.duplicate, s.conversation_id or routed.get(s.message_id))
        for s in stored
    ]


def _authors(conn: Connection, agents: Iterable[str]) -> dict[str, UUID]:
    """The users whose email an import names as the agent."""
    wanted = [agent for agent in agents if "@" in agent]
    if not wanted:
        return {}
    rows = conn.execute(sa.select(users.c.email, users.c.id).where(users.c.email.in_(wanted)))
    return {row.email: row.id for row in rows}


def _store(
    conn: Connection, rules: Rules, inbox: Inbox, call: Call, author_id: UUID | None
) -> Received:
    logged = Inbound(
        provider_id=call.provider_id,
        contact=call.phone,
        body=call.body,
        traits=call.traits,
        sent_at=call.started_at,
        event=CALL_EVENT,
        properties=call.properties,
    )
    outbound = call.direction != "inbound"
    return store_message(conn, rules, inbox, logged, outbound=outbound, author_id=author_id)


def route_outbound(
    engine: Engine, settings: Settings, message_ids: Sequence[UUID]
) -> dict[UUID, UUID]:
    """Put outbound calls in their customer's conversation (their open one, else a new one);
    a call made after the customer started waiting answers them."""
    if not message_ids:
        return {}
    resolve(engine, settings)
    routed: dict[UUID, UUID] = {}
    now = utcnow()
    with write(engine) as conn:
        lock_routing(conn)
        rows = (
            conn.execute(unrouted_messages().where(messages.c.id.in_(list(message_ids))))
            .mappings()
            .all()
        )
        router = Router(conn, settings, rows)
        for row in rows:
            if row["home"] is None:
                continue
            found = router.conversation_for(row)
            router.flush()
            conversation = (
                conn.execute(sa.select(conversations).where(conversations.c.id == found["id"]))
                .mappings()
                .one()
            )
            at, waiting = row["created_at"], conversation["waiting_since"]
            new = conversation["first_response_at"] is None and at >= conversation["created_at"]
            if (waiting is not None and at >= waiting) or (waiting is None and new):
                answered(conn, settings, conversation, at)
            conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation["id"])
                .values(updated_at=now)
            )
            conn.execute(
                messages.update()
                .where(messages.c.id == row["id"])
                .values(conversation_id=conversation["id"], updated_at=now)
            )
            routed[row["id"]] = conversation["id"]
        router.flush()
    return routed


def send(inbox: Inbox, message: Outgoing, settings: InboxSettings, client: httpx.Client) -> None:
    """Nothing delivers a message to a phone: replies are refused before they are queued, so
    this only fails one that was queued anyway."""
    raise DeliveryFailed("a phone inbox cannot send messages; log the call instead", permanent=True)
