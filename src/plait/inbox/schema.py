"""The inbox's tables: inboxes (one per connected channel account), teams and agents,
conversations, their messages and notes, the outbox, canned replies and webhook receipts.

A conversation belongs to a customer through ``profile_id``, the home profile of the
identifier its first message came from; the customer is that profile's root, so merges and
splits move conversations with the identifiers, as they move events.
"""

from __future__ import annotations

import sqlalchemy as sa

from plait.core.db import JSONValue, UTCDateTime, metadata

inboxes = sa.Table(
    "inboxes",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("source_id", sa.Uuid, sa.ForeignKey("sources.id"), nullable=False),
    sa.Column("team_id", sa.Uuid),
    sa.Column("options", JSONValue, nullable=False),
    sa.Column("secrets", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled_at", UTCDateTime),
)
"""Connected channel accounts. ``secrets`` holds provider keys Plait must use as they are
(HMAC keys, bot tokens), so unlike write keys they cannot be stored as digests."""

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, primary_key=True),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("user_id", sa.Uuid, primary_key=True),
    sa.Column("available", sa.Boolean, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("last_assigned_at", UTCDateTime),
)
"""Each agent's availability for auto-assignment and how many open conversations they take."""

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("number", sa.Integer, nullable=False, unique=True),
    sa.Column("profile_id", sa.Uuid, nullable=False, index=True),
    sa.Column("inbox_id", sa.Uuid, nullable=False, index=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("priority", sa.String(10), nullable=False),
    sa.Column("assignee_id", sa.Uuid),
    sa.Column("team_id", sa.Uuid),
    sa.Column("subject", sa.Text),
    sa.Column("labels", JSONValue, nullable=False),
    sa.Column("token", sa.String(40), nullable=False, unique=True),
    sa.Column("snoozed_until", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_message_at", UTCDateTime, nullable=False),
    sa.Column("waiting_since", UTCDateTime),
    sa.Column("first_response_at", UTCDateTime),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("first_response_due", UTCDateTime),
    sa.Column("next_response_due", UTCDateTime),
    sa.Column("resolution_due", UTCDateTime),
    sa.Column("first_response_seconds", sa.Float),
    sa.Column("first_response_business_seconds", sa.Float),
    sa.Column("resolution_seconds", sa.Float),
    sa.Column("resolution_business_seconds", sa.Float),
    sa.Column("sla_breaches", JSONValue, nullable=False),
    sa.Column("csat_score", sa.Integer),
    sa.Column("csat_comment", sa.Text),
    sa.Column("csat_token", sa.String(40), unique=True),
    sa.Column("csat_answered_at", UTCDateTime),
    sa.Index("ix_conversations_queue", "status", "last_message_at"),
    sa.Index("ix_conversations_updated_at", "updated_at"),
    sa.Index("ix_conversations_recent", "last_message_at", "id"),
    sa.Index("ix_conversations_assignee_recent", "assignee_id", "last_message_at", "id"),
    sa.Index("ix_conversations_assignee_status", "assignee_id", "status"),
    sa.Index(
        "ix_conversations_open",
        "inbox_id",
        "assignee_id",
        "first_response_due",
        "next_response_due",
        "resolution_due",
        sqlite_where=sa.text("status != 'resolved'"),
        postgresql_where=sa.text("status != 'resolved'"),
    ),
)
"""One thread with one customer, across channels. ``waiting_since`` is the oldest inbound
message not yet answered; the ``*_due`` times are the SLA deadlines still running, and
``sla_breaches`` names the ones missed. ``csat_token`` names the satisfaction survey sent
at the last resolution (its public page's capability), answered at ``csat_answered_at``.
Queues list newest activity first: ``ix_conversations_recent`` gives that order without a
sort (a page stops after its rows), ``ix_conversations_assignee_recent`` the same per agent."""

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("conversation_id", sa.Uuid, index=True),
    sa.Column("inbox_id", sa.Uuid, nullable=False),
    sa.Column("direction", sa.String(10), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("contact", sa.Text),
    sa.Column("author_id", sa.Uuid),
    sa.Column("sender_name", sa.Text),
    sa.Column("subject", sa.Text),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attachments", JSONValue),
    sa.Column("provider_id", sa.Text),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("email_message_id", sa.Text),
    sa.Column("in_reply_to", sa.Text),
    sa.Column("references", JSONValue),
    sa.Column("thread_token", sa.String(40)),
    sa.Column("event_id", sa.Uuid),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("inbox_id", "provider_id", name="uq_messages_provider_id"),
    sa.Index("ix_messages_conversation", "conversation_id", "created_at"),
    sa.Index("ix_messages_email_message_id", "email_message_id"),
    sa.Index("ix_messages_unrouted", "direction", "conversation_id"),
    sa.Index("ix_messages_contact", "inbox_id", "contact", "updated_at"),
)
"""Inbound and outbound messages and internal notes (``direction`` in/out/note).
``contact`` is the customer's address on the message's channel (sender of an inbound
message, recipient of an outbound one). A provider's message id is unique per inbox, which
makes webhooks idempotent. A customer's messages on one inbox, by the time they last changed,
are what the web chat's stream polls."""

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("message_id", sa.Uuid, primary_key=True),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("claimed_until", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_outbox_due", "state", "next_attempt_at"),
)
"""Outbound messages waiting for their provider: ``pending`` until delivered or, after the
last retry, ``failed`` (shown on the message, and retryable by an agent)."""

webhook_receipts = sa.Table(
    "webhook_receipts",
    metadata,
    sa.Column("inbox_id", sa.Uuid, primary_key=True),
    sa.Column("delivery_id", sa.String(200), primary_key=True),
    sa.Column("received_at", UTCDateTime, nullable=False, index=True),
)
"""Deliveries already handled that are not messages (status callbacks, Telegram updates)."""

webhook_rejections = sa.Table(
    "webhook_rejections",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("inbox_id", sa.Uuid, index=True),
    sa.Column("provider", sa.String(20), nullable=False),
    sa.Column("code", sa.String(50), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("address", sa.String(64)),
    sa.Column("received_at", UTCDateTime, nullable=False, index=True),
)
"""Refused webhook calls (bad signature, unknown inbox): the reason only, never the body."""

canned_replies = sa.Table(
    "canned_replies",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("shortcut", sa.String(50), nullable=False, unique=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
