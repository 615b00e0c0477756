"""Inbound messages from any connector: stored with their event in one transaction (once per
provider message id), then routed to the customer's conversation.

A message is acknowledged to the provider once it is durable; routing follows at once but
may also be finished later by :func:`plait.inbox.routing.route_pending`, so a crash between
the two loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import hold_writers, newest_seq, store
from plait.collect.messages import Envelope, InvalidMessage, Rules, normalize
from plait.core.clock import isoformat, utcnow
from plait.core.db import dialect_insert, read, write
from plait.core.errors import InvalidInput
from plait.core.group_commit import GroupWorker
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.core.sources import Source
from plait.inbox.inboxes import Inbox
from plait.inbox.routing import route_pending
from plait.inbox.schema import messages, webhook_receipts

SUMMARY_LENGTH = 200
MAX_BODY = 100_000


@dataclass(frozen=True)
class Inbound:
    """One message from a customer, as a connector parsed it from the provider's format.

    ``contact`` is the customer's address on the channel (phone number, email address,
    ``wa_id``, chat id…): replies go there. ``traits`` and ``external_ids`` are identifiers
    for the identity graph (``{"phone": …}``, ``[("whatsapp_id", …)]``).
    """

    provider_id: str
    contact: str
    body: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    external_ids: Sequence[tuple[str, str]] = ()
    anonymous_id: str | None = None
    sent_at: datetime | None = None
    subject: str | None = None
    attachments: Sequence[Mapping[str, Any]] = ()
    event: str = "Message Received"
    email_message_id: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    token: str | None = None
    """A conversation token the customer's reply carried (the email reply-to address)."""
    properties: Mapping[str, Any] = field(default_factory=dict)


Arrival = tuple[Inbox, Inbound]
"""A message and the inbox it came to."""


@dataclass(frozen=True)
class Received:
    """What became of an inbound message."""

    message_id: UUID
    duplicate: bool
    conversation_id: UUID | None = None


def receive(
    engine: Engine, settings: Settings, rules: Rules, inbox: Inbox, inbound: Inbound
) -> Received:
    """Store an inbound message and its event (nothing if the provider id was seen), then
    route it to its conversation."""
    return receive_many(engine, settings, rules, [(inbox, inbound)])[0]


def receive_many(
    engine: Engine, settings: Settings, rules: Rules, arrivals: Sequence[Arrival]
) -> list[Received]:
    """Store inbound messages with their events in one transaction, then route the new ones
    in one more (see :func:`receive`)."""
    stored, watermark = store_many(engine, rules, arrivals)
    return route_stored(engine, settings, stored, watermark)


def store_many(
    engine: Engine, rules: Rules, arrivals: Sequence[Arrival]
) -> tuple[list[Received], int]:
    """:func:`store_messages` in a transaction of its own, the only event writer while it
    lasts; returns what was stored and a :func:`~plait.collect.event_store.committed_seq`
    that covers it, so routing need not wait for other writers to learn one."""
    with write(engine) as conn:
        hold_writers(conn)
        return store_messages(conn, rules, arrivals), newest_seq(conn)


def route_stored(
    engine: Engine, settings: Settings, stored: Sequence[Received], watermark: int
) -> list[Received]:
    """Route the messages :func:`store_many` stored (duplicates are left as they are)."""
    new = [received.message_id for received in stored if not received.duplicate]
    routed = route_pending(engine, settings, only=new, watermark=watermark)
    if len(routed) < len(new):  # another router (the delivery worker's sweep) came first
        with read(engine) as conn:
            placed = conn.execute(
                sa.select(messages.c.id, messages.c.conversation_id).where(
                    messages.c.id.in_([m for m in new if m not in routed])
                )
            )
            routed.update({row.id: row.conversation_id for row in placed})
    return [
        received
        if received.duplicate
        else Received(received.message_id, False, routed.get(received.message_id))
        for received in stored
    ]


Placed = tuple[Received, int]
"""A stored message and the watermark its group was stored under."""


class Receiver:
    """The server's inbound writer, in two stages with a writer thread each: concurrent
    webhooks' messages are stored together (:func:`store_many` over every message waiting
    at that moment), then routed together (:func:`route_stored`), and each request is
    answered once its message is committed and routed. The stages overlap: one group is
    stored while the one before it is routed."""

    def __init__(self, engine: Engine, settings: Settings, rules: Rules) -> None:
        def store(arrivals: Sequence[Arrival]) -> list[Placed]:
            stored, watermark = store_many(engine, rules, arrivals)
            return [(received, watermark) for received in stored]

        def route(placed: Sequence[Placed]) -> list[Received]:
            watermark = max(watermark for _received, watermark in placed)
            return route_stored(engine, settings, [received for received, _ in placed], watermark)

        self._storing = GroupWorker(store, name="plait-inbound-store", max_size=200)
        self._routing = GroupWorker(route, name="plait-inbound-route", max_size=1000)

    def receive(self, inbox: Inbox, inbound: Inbound) -> Received:
        """Store and route one message (see :func:`receive`), sharing the transactions."""
        check_inbound(inbound)
        placed = self._storing.submit((inbox, inbound))
        return placed[0] if placed[0].duplicate else self._routing.submit(placed)

    async def receive_async(self, inbox: Inbox, inbound: Inbound) -> Received:
        """:meth:`receive` for the event loop (a webhook need not hold a thread to wait)."""
        check_inbound(inbound)
        placed = await self._storing.submit_async((inbox, inbound))
        return placed[0] if placed[0].duplicate else await self._routing.submit_async(placed)

    def close(self) -> None:
        self._storing.close()
        self._routing.close()


def store_message(
    conn: Connection,
    rules: Rules,
    inbox: Inbox,
    inbound: Inbound,
    *,
    outbound: bool = False,
    author_id: UUID | None = None,
) -> Received:
    """Insert a provider's message and its event in ``conn``'s transaction; a provider id
    already stored for this inbox makes it a duplicate and writes nothing. ``outbound`` is
    for contacts the team made outside Plait's outbox (an agent's logged call)."""
    return store_messages(conn, rules, [(inbox, inbound)], outbound=outbound, author_id=author_id)[
        0
    ]


def store_messages(
    conn: Connection,
    rules: Rules,
    arrivals: Sequence[Arrival],
    *,
    outbound: bool = False,
    author_id: UUID | None = None,
) -> list[Received]:
    """:func:`store_message` for several messages, set-wise: one insert of the messages and
    one of their events. A provider id seen before, or twice in ``arrivals``, is stored once;
    the later ones are duplicates of it."""
    now = utcnow()
    rows: list[dict[str, Any]] = []
    events_by_message: dict[UUID, dict[str, Any]] = {}
    first: dict[tuple[UUID, str], UUID] = {}
    for inbox, inbound in arrivals:
        check_inbound(inbound)
        message_id = uuid7()
        first.setdefault((inbox.id, inbound.provider_id), message_id)
        if first[(inbox.id, inbound.provider_id)] != message_id:
            continue
        event = message_event(
            rules,
            inbox,
            direction="outbound" if outbound else "inbound",
            event=inbound.event,
            message_id=message_id,
            contact=inbound.contact,
            body=inbound.body,
            subject=inbound.subject,
            at=inbound.sent_at or now,
            traits=inbound.traits,
            external_ids=inbound.external_ids,
            anonymous_id=inbound.anonymous_id,
            properties=inbound.properties,
        )
        events_by_message[message_id] = event
        rows.append(
            {
                "id": message_id,
                "inbox_id": inbox.id,
                "direction": "out" if outbound else "in",
                "channel": inbox.channel,
                "contact": inbound.contact,
                "author_id": author_id,
                "sender_name": None if outbound else inbound.traits.get("name"),
                "subject": inbound.subject,
                "body": inbound.body,
                "attachments": list(inbound.attachments) or None,
                "provider_id": inbound.provider_id,
                "status": "sent" if outbound else "received",
                "email_message_id": inbound.email_message_id,
                "in_reply_to": inbound.in_reply_to,
                "references": list(inbound.references) or None,
                "thread_token": inbound.token,
                "event_id": event["id"],
                "created_at": inbound.sent_at or now,
                "updated_at": now,
            }
        )
    if not rows:
        return []
    inserted = set(
        conn.execute(
            dialect_insert(conn)(messages).on_conflict_do_nothing().returning(messages.c.id),
            rows,
        ).scalars()
    )
    if inserted:
        store(conn, [events_by_message[message_id] for message_id in inserted], [])
    repeats = [key for key, message_id in first.items() if message_id not in inserted]
    before = _stored_before(conn, repeats)
    outcomes, claimed = [], set()
    for inbox, inbound in arrivals:
        key = (inbox.id, inbound.provider_id)
        message_id = first[key]
        if message_id in inserted and message_id not in claimed:
            claimed.add(message_id)
            outcomes.append(Received(message_id, False))
        elif key in before:
            outcomes.append(Received(before[key][0], True, before[key][1]))
        else:  # a repeat, in this group, of a message stored just now
            outcomes.append(Received(message_id, True))
    return outcomes


def message_event(
    rules: Rules,
    inbox: Inbox,
    *,
    direction: str,
    event: str,
    message_id: UUID,
    contact: str,
    body: str,
    subject: str | None,
    at: datetime,
    traits: Mapping[str, Any] = {},
    external_ids: Sequence[tuple[str, str]] = (),
    anonymous_id: str | None = None,
    properties: Mapping[str, Any] = {},
) -> dict[str, Any]:
    """The ``events`` row that puts a message on the customer's timeline (and, inbound, makes
    it a touch of the inbox's channel)."""
    summary = " ".join(body.split())[:SUMMARY_LENGTH] or (subject or "")[:SUMMARY_LENGTH]
    context: dict[str, Any] = {"channel": inbox.event_channel}
    if traits:
        context["traits"] = dict(traits)
    if external_ids:
        context["externalIds"] = [
            {"id": value, "type": kind, "collection": "users", "encoding": "none"}
            for kind, value in external_ids
        ]
    message = {
        "type": "track",
        "event": event,
        "anonymousId": anonymous_id or f"{inbox.channel}:{contact}",
        "messageId": f"inbox-{message_id}",
        "timestamp": isoformat(at),
        "properties": {
            **properties,
            "direction": direction,
            "summary": summary,
            "subject": subject,
            "inbox": inbox.name,
            "message_id": str(message_id),
        },
        "context": context,
    }
    envelope = Envelope(Source(inbox.source_id, f"inbox: {inbox.name}", inbox.event_channel), at)
    try:
        return normalize(message, envelope, rules, check_size=False)
    except InvalidMessage as exc:
        raise InvalidInput(exc.message, code=exc.code, field=exc.field) from None


def _stored_before(
    conn: Connection, keys: Sequence[tuple[UUID, str]]
) -> dict[tuple[UUID, str], tuple[UUID, UUID | None]]:
    """The stored message (and its conversation) of each (inbox id, provider id)."""
    by_inbox: dict[UUID, list[str]] = {}
    for inbox_id, provider_id in keys:
        by_inbox.setdefault(inbox_id, []).append(provider_id)
    found = {}
    for inbox_id, provider_ids in by_inbox.items():
        rows = conn.execute(
            sa.select(messages.c.provider_id, messages.c.id, messages.c.conversation_id).where(
                messages.c.inbox_id == inbox_id, messages.c.provider_id.in_(provider_ids)
            )
        )
        for provider_id, message_id, conversation_id in rows:
            found[(inbox_id, provider_id)] = (message_id, conversation_id)
    return found


def check_inbound(inbound: Inbound) -> None:
    """Refuse a message no provider would send (no id, no sender, too long, a NUL)."""
    if not inbound.provider_id or len(inbound.provider_id) > 500:
        raise InvalidInput("a message needs a provider message id", field="provider_id")
    if not inbound.contact or not inbound.contact.strip():
        raise InvalidInput("a message needs its sender's address", field="contact")
    if len(inbound.body) > MAX_BODY:
        raise InvalidInput(f"a message may be at most {MAX_BODY} characters", field="body")
    if "\x00" in inbound.body:
        raise InvalidInput("a message may not contain the NUL character", field="body")


def mark_delivery(conn: Connection, inbox: Inbox, delivery_id: str) -> bool:
    """Record a non-message webhook delivery (a status update, a Telegram update id);
    False if it was handled before."""
    done = conn.execute(
        dialect_insert(conn)(webhook_receipts)
        .values(inbox_id=inbox.id, delivery_id=delivery_id[:200], received_at=utcnow())
        .on_conflict_do_nothing()
        .returning(webhook_receipts.c.inbox_id)
    ).first()
    return done is not None
