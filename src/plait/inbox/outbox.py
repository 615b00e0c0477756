"""Replies and notes, and the outbox that delivers replies.

A reply is stored, with its event and an outbox entry, in one transaction; delivery happens
after, by :func:`deliver_due`, with exponential back-off while the provider is unreachable.
After the last attempt the message shows as *failed* and an agent can retry it. Deliveries
are claimed for a while before the provider is called, so several servers can deliver at
once without sending anything twice."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import store
from plait.collect.messages import Rules
from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.errors import Conflict, InvalidInput, NotFound
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.identity.graph import identities, profiles
from plait.inbox.connectors import DeliveryFailed, Outgoing, sender_for
from plait.inbox.conversations import message_dict, wake_snoozed
from plait.inbox.inboxes import CONTACT_KINDS, Inbox, get_inbox
from plait.inbox.receiving import MAX_BODY, message_event
from plait.inbox.routing import customer_of, route_pending
from plait.inbox.schema import conversations, messages, outbox
from plait.inbox.sla import business_seconds

log = logging.getLogger("plait.inbox.outbox")

UNDELIVERED = ("queued", "failed")
UNSENDABLE = {
    "phone": "a phone inbox cannot send messages: log the call (POST "
    "/api/inbox/inboxes/{inbox_id}/calls), or reply through another inbox (inbox_id)",
}
"""Channels no provider delivers to: a reply through them is refused at once."""


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def reply(
    engine: Engine,
    settings: Settings,
    rules: Rules,
    conversation_id: UUID,
    body: str,
    *,
    author_id: UUID | None,
    inbox_id: UUID | None = None,
    subject: str | None = None,
    answers: bool = True,
) -> dict[str, Any]:
    """Queue a reply on the conversation's channel (or another inbox's: switching channel).
    An automated message (``answers=False``, e.g. the CSAT survey) stops no response clock."""
    body = _check_body(body)
    with write(engine) as conn:
        conversation = _conversation(conn, conversation_id)
        inbox = get_inbox(conn, inbox_id or conversation["inbox_id"])
        if inbox.channel in UNSENDABLE:
            raise InvalidInput(UNSENDABLE[inbox.channel], code="not_deliverable", field="inbox_id")
        contact = recipient(conn, conversation, inbox)
        now = utcnow()
        message_id = uuid7()
        threading = _email_threading(conn, conversation, inbox, settings, message_id)
        event = message_event(
            rules,
            inbox,
            direction="outbound",
            event="Message Sent",
            message_id=message_id,
            contact=contact,
            body=body,
            subject=subject or threading.get("subject"),
            at=now,
            **_identifiers(inbox, contact),
            properties={"conversation_id": str(conversation_id)},
        )
        row = {
            "id": message_id,
            "conversation_id": conversation_id,
            "inbox_id": inbox.id,
            "direction": "out",
            "channel": inbox.channel,
            "contact": contact,
            "author_id": author_id,
            "subject": subject or threading.get("subject"),
            "body": body,
            "status": "queued",
            "email_message_id": threading.get("email_message_id"),
            "in_reply_to": threading.get("in_reply_to"),
            "references": threading.get("references"),
            "event_id": event["id"],
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(messages.insert(), row)
        conn.execute(
            outbox.insert(),
            {
                "message_id": message_id,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            },
        )
        store(conn, [event], [])
        if answers:
            answered(conn, settings, conversation, now)
        else:
            _touch(conn, conversation_id, now)
    return message_dict(row)


def add_note(
    engine: Engine, conversation_id: UUID, body: str, *, author_id: UUID | None
) -> dict[str, Any]:
    """An internal note on the conversation: agents see it, the customer never does."""
    body = _check_body(body)
    now = utcnow()
    with write(engine) as conn:
        conversation = _conversation(conn, conversation_id)
        row = {
            "id": uuid7(),
            "conversation_id": conversation_id,
            "inbox_id": conversation["inbox_id"],
            "direction": "note",
            "channel": "note",
            "author_id": author_id,
            "body": body,
            "status": "note",
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(messages.insert(), row)
        _touch(conn, conversation_id, now)
    return message_dict(row)


def recipient(conn: Connection, conversation: Any, inbox: Inbox) -> str:
    """Where a reply through ``inbox`` goes: the customer's latest address on it, else an
    identifier of the channel's kind from their profile."""
    root = customer_of(conversation["profile_id"])
    members = sa.select(profiles.c.id).where(profiles.c.root_id == root)
    mine = sa.select(conversations.c.id).where(conversations.c.profile_id.in_(members))
    known = conn.execute(
        sa.select(messages.c.contact)
        .where(
            messages.c.conversation_id.in_(mine),
            messages.c.inbox_id == inbox.id,
            messages.c.contact.is_not(None),
        )
        .order_by(messages.c.created_at.desc())
        .limit(1)
    ).scalar()
    if known:
        return known
    kind = CONTACT_KINDS.get(inbox.channel)
    value = (
        conn.execute(
            sa.select(identities.c.value)
            .where(identities.c.profile_id.in_(members), identities.c.kind == kind)
            .order_by(identities.c.first_seen.desc())
            .limit(1)
        ).scalar()
        if kind
        else None
    )
    if value is None:
        raise InvalidInput(
            f"this customer has no {kind or 'address'} to reach them on {inbox.channel}",
            code="no_address",
            field="inbox_id",
        )
    return value


def deliver_due(
    engine: Engine, settings: Settings, *, limit: int = 50, client: httpx.Client | None = None
) -> DeliveryReport:
    """Try every delivery that is due; providers are called outside any transaction."""
    report = DeliveryReport()
    claimed = _claim(engine, settings, limit)
    if not claimed:
        return report
    own_client = client is None
    client = client or httpx.Client(timeout=settings.inbox.provider_timeout_seconds)
    try:
        for item in claimed:
            _deliver(engine, settings, client, item, report)
    finally:
        if own_client:
            client.close()
    return report


def retry_message(engine: Engine, message_id: UUID) -> None:
    """Put a failed message back in the outbox for another round of attempts."""
    now = utcnow()
    with write(engine) as conn:
        done = conn.execute(
            outbox.update()
            .where(outbox.c.message_id == message_id, outbox.c.state == "failed")
            .values(state="pending", attempts=0, next_attempt_at=now, claimed_until=None)
        )
        if done.rowcount == 0:
            raise Conflict("only a failed message can be retried", field="message_id")
        conn.execute(
            messages.update()
            .where(messages.c.id == message_id)
            .values(status="queued", error=None, updated_at=now)
        )
        _touch_message(conn, message_id, now)


def _claim(engine: Engine, settings: Settings, limit: int) -> list[dict[str, Any]]:
    now = utcnow()
    lease = now + timedelta(seconds=settings.inbox.provider_timeout_seconds * 3)
    with write(engine) as conn:
        due = (
            sa.select(outbox.c.message_id)
            .where(
                outbox.c.state == "pending",
                outbox.c.next_attempt_at <= now,
                sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
            )
            .order_by(outbox.c.next_attempt_at)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list(conn.execute(due).scalars())
        if not ids:
            return []
        conn.execute(
            outbox.update().where(outbox.c.message_id.in_(ids)).values(claimed_until=lease)
        )
        rows = conn.execute(
            sa.select(
                messages,
                outbox.c.attempts,
                conversations.c.token,
            )
            .join(outbox, outbox.c.message_id == messages.c.id)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(messages.c.id.in_(ids))
        ).mappings()
        return [dict(row) for row in rows]


def _deliver(
    engine: Engine,
    settings: Settings,
    client: httpx.Client,
    item: dict[str, Any],
    report: DeliveryReport,
) -> None:
    with read(engine) as conn:
        inbox = get_inbox(conn, item["inbox_id"])
    outgoing = Outgoing(
        message_id=item["id"],
        contact=item["contact"],
        body=item["body"],
        conversation_token=item["token"],
        subject=item["subject"],
        email_message_id=item["email_message_id"],
        in_reply_to=item["in_reply_to"],
        references=item["references"] or (),
        attachments=item["attachments"] or (),
    )
    try:
        provider_id = sender_for(inbox.channel)(inbox, outgoing, settings.inbox, client)
    except DeliveryFailed as exc:
        _failed(engine, settings, item, exc.message, permanent=exc.permanent, report=report)
        return
    except httpx.HTTPError as exc:
        _failed(
            engine, settings, item, f"{type(exc).__name__}: {exc}", permanent=False, report=report
        )
        return
    now = utcnow()
    with write(engine) as conn:
        conn.execute(
            outbox.update()
            .where(outbox.c.message_id == item["id"])
            .values(
                state="done", attempts=item["attempts"] + 1, claimed_until=None, last_error=None
            )
        )
        conn.execute(
            messages.update()
            .where(messages.c.id == item["id"])
            .values(status="sent", provider_id=provider_id, error=None, updated_at=now)
        )
        _touch_message(conn, item["id"], now)
    report.sent += 1


def _failed(
    engine: Engine,
    settings: Settings,
    item: dict[str, Any],
    error: str,
    *,
    permanent: bool,
    report: DeliveryReport,
) -> None:
    attempts = item["attempts"] + 1
    now = utcnow()
    final = permanent or attempts >= settings.inbox.max_attempts
    delay = settings.inbox.retry_seconds * 2 ** (attempts - 1)
    log.warning("delivery of %s failed (attempt %s): %s", item["id"], attempts, error)
    with write(engine) as conn:
        conn.execute(
            outbox.update()
            .where(outbox.c.message_id == item["id"])
            .values(
                state="failed" if final else "pending",
                attempts=attempts,
                next_attempt_at=now + timedelta(seconds=delay),
                claimed_until=None,
                last_error=error[:1000],
            )
        )
        conn.execute(
            messages.update()
            .where(messages.c.id == item["id"])
            .values(status="failed" if final else "queued", error=error[:1000], updated_at=now)
        )
        _touch_message(conn, item["id"], now)
    if final:
        report.failed += 1
    else:
        report.retrying += 1


def _conversation(conn: Connection, conversation_id: UUID) -> Any:
    found = (
        conn.execute(sa.select(conversations).where(conversations.c.id == conversation_id))
        .mappings()
        .first()
    )
    if found is None:
        raise NotFound("no such conversation", field="conversation_id")
    return found


def _check_body(body: str) -> str:
    if not isinstance(body, str) or not body.strip():
        raise InvalidInput("a message needs some text", field="body")
    if len(body) > MAX_BODY:
        raise InvalidInput(f"a message may be at most {MAX_BODY} characters", field="body")
    if "\x00" in body:
        raise InvalidInput("a message may not contain the NUL character", field="body")
    return body


def _identifiers(inbox: Inbox, contact: str) -> dict[str, Any]:
    kind = CONTACT_KINDS.get(inbox.channel)
    if kind in ("email", "phone"):
        return {"traits": {kind: contact}}
    if kind == "anonymous_id":
        return {"anonymous_id": contact}
    if kind is not None:
        return {"external_ids": [(kind, contact)]}
    return {}


def _email_threading(
    conn: Connection, conversation: Any, inbox: Inbox, settings: Settings, message_id: UUID
) -> dict[str, Any]:
    """For an email reply: its own Message-ID, and In-Reply-To/References to the last email
    of the conversation, with a ``Re:`` subject."""
    if inbox.channel != "email":
        return {}
    domain = settings.inbox.reply_domain or inbox.option("domain") or "plait.invalid"
    last = conn.execute(
        sa.select(messages.c.email_message_id, messages.c.references, messages.c.subject)
        .where(
            messages.c.conversation_id == conversation["id"],
            messages.c.email_message_id.is_not(None),
        )
        .order_by(messages.c.created_at.desc())
        .limit(1)
    ).first()
    subject = conversation["subject"] or "Your message"
    threading: dict[str, Any] = {
        "email_message_id": f"<{message_id}@{domain}>",
        "subject": subject if subject.lower().startswith("re:") else f"Re: {subject}",
    }
    if last is not None:
        threading["in_reply_to"] = last.email_message_id
        threading["references"] = [*(last.references or []), last.email_message_id][-20:]
    return threading


def answered(conn: Connection, settings: Settings, conversation: Any, now: Any) -> None:
    """A reply stops the response clocks: records the first response time and clears the
    wait, noting a breach if a deadline had passed."""
    values: dict[str, Any] = {"updated_at": now, "waiting_since": None, "next_response_due": None}
    breaches = list(conversation["sla_breaches"] or [])
    for clock in ("first_response_due", "next_response_due"):
        due = conversation[clock]
        if due is not None and due < now and clock not in breaches:
            breaches.append(clock)
    if conversation["first_response_at"] is None:
        values["first_response_at"] = now
        values["first_response_due"] = None
        values["first_response_seconds"] = (now - conversation["created_at"]).total_seconds()
        values["first_response_business_seconds"] = business_seconds(
            settings.inbox.business_hours, conversation["created_at"], now
        )
    values["sla_breaches"] = breaches
    conn.execute(
        conversations.update().where(conversations.c.id == conversation["id"]).values(**values)
    )


def _touch(conn: Connection, conversation_id: UUID, now: Any) -> None:
    conn.execute(
        conversations.update().where(conversations.c.id == conversation_id).values(updated_at=now)
    )


def _touch_message(conn: Connection, message_id: UUID, now: Any) -> None:
    owner = (
        sa.select(messages.c.conversation_id).where(messages.c.id == message_id).scalar_subquery()
    )
    conn.execute(conversations.update().where(conversations.c.id == owner).values(updated_at=now))


class DeliveryWorker:
    """A server thread that delivers due messages: at once when woken (a reply was queued),
    otherwise every ``poll_seconds`` (retries coming due, other servers' replies); it also
    routes inbound messages left unrouted by a crash."""

    def __init__(self, engine: Engine, settings: Settings, poll_seconds: float = 1.0) -> None:
        self.engine, self.settings, self.poll_seconds = engine, settings, poll_seconds
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="plait-outbox", daemon=True)

    def start(self) -> DeliveryWorker:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while deliver_due(self.engine, self.settings).sent and not self._stop.is_set():
                    pass
                route_pending(self.engine, self.settings)
                wake_snoozed(self.engine)
            except Exception:
                log.exception("outbox round failed")
            self._wake.wait(self.poll_seconds)
