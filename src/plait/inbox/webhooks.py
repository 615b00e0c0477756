"""What every provider webhook shares: finding its inbox, refusing (and logging) a call that
fails authentication before anything is stored, and applying delivery statuses."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable
from uuid import UUID

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.errors import Forbidden, NotFound
from plait.core.ids import uuid7
from plait.inbox.inboxes import Inbox, get_inbox
from plait.inbox.schema import conversations, messages, webhook_rejections

log = logging.getLogger("plait.inbox.webhooks")

STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
"""Delivery statuses only move forward (providers' callbacks can arrive out of order)."""


INBOX_CACHE_SECONDS = 5.0
"""How long webhooks use an inbox as they last read it: a provider calls many times a second,
and an inbox changes only when an admin disables it."""
_inbox_cache: dict[tuple[int, str], tuple[float, Inbox]] = {}


def webhook_inbox(engine: Engine, inbox_id: str, channels: Iterable[str]) -> Inbox:
    """The inbox a webhook URL names, if it is one of ``channels``."""
    inbox = _cached_inbox(engine, inbox_id)
    if inbox is None:
        with read(engine) as conn:
            inbox = get_inbox(conn, inbox_id)
        _inbox_cache[(id(engine), inbox_id)] = (time.monotonic() + INBOX_CACHE_SECONDS, inbox)
    if inbox.channel not in set(channels):
        raise NotFound("no such inbox", field="inbox_id")
    return inbox


async def webhook_inbox_async(engine: Engine, inbox_id: str, channels: Iterable[str]) -> Inbox:
    """:func:`webhook_inbox` for the event loop: a thread only when the database is read."""
    inbox = _cached_inbox(engine, inbox_id)
    if inbox is not None and inbox.channel in set(channels):
        return inbox
    return await run_in_threadpool(webhook_inbox, engine, inbox_id, channels)


def _cached_inbox(engine: Engine, inbox_id: str) -> Inbox | None:
    cached = _inbox_cache.get((id(engine), inbox_id))
    return cached[1] if cached is not None and cached[0] > time.monotonic() else None


def refuse(
    engine: Engine, request: Request, inbox: Inbox | None, provider: str, code: str, message: str
) -> Forbidden:
    """Log a refused webhook call (its reason, never its body) and return the error to raise."""
    address = request.client.host if request.client else None
    log.warning("refused %s webhook for inbox %s: %s", provider, inbox and inbox.id, message)
    with write(engine) as conn:
        conn.execute(
            webhook_rejections.insert(),
            {
                "id": uuid7(),
                "inbox_id": inbox.id if inbox else None,
                "provider": provider,
                "code": code,
                "message": message,
                "address": address,
                "received_at": utcnow(),
            },
        )
    return Forbidden(message, code=code)


def same_secret(expected: str | bytes, given: str | bytes | None) -> bool:
    """Constant-time comparison of a secret or signature."""
    if given is None:
        return False
    left = expected.encode() if isinstance(expected, str) else expected
    right = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(left, right)


def public_url(request: Request, configured: str | None) -> str:
    """The URL the provider called, as it signed it: the configured public URL (behind a
    proxy) with this request's path and query, else the request's own URL."""
    if not configured:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return configured.rstrip("/") + request.url.path + query


def apply_status(
    engine: Engine, inbox_id: UUID, provider_id: str, status: str, error: str | None = None
) -> bool:
    """Record a provider's delivery status for one of our outbound messages (forward only;
    ``failed`` always applies). False if no such message."""
    now = utcnow()
    with write(engine) as conn:
        row = conn.execute(
            sa.select(messages.c.id, messages.c.status, messages.c.conversation_id).where(
                messages.c.inbox_id == inbox_id,
                messages.c.provider_id == provider_id,
                messages.c.direction == "out",
            )
        ).first()
        if row is None:
            return False
        moves_on = STATUS_RANK.get(status, -1) > STATUS_RANK.get(row.status, -1)
        if status == "failed" or moves_on:
            conn.execute(
                messages.update()
                .where(messages.c.id == row.id)
                .values(status=status, error=error, updated_at=now)
            )
            conn.execute(
                conversations.update()
                .where(conversations.c.id == row.conversation_id)
                .values(updated_at=now)
            )
    return True
