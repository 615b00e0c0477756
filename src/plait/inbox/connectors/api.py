"""The generic API channel, for any messaging system Plait has no connector for. Inbound: the
system POSTs each customer message to ``/api/inbox/inboxes/{inbox_id}/messages`` with an API
token allowed ``inbox:write``; its ``id`` is stored once. Outbound: each reply is POSTed as JSON
to the inbox's ``callback_url``, signed ``X-Plait-Signature: sha256=<hex HMAC-SHA256 of the
body>`` with the inbox secret ``signing_secret``; any 2xx answer is a delivery (its JSON ``id``,
if any, is kept as the provider's id). A retried delivery carries the same ``id``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from plait.core.auth import Principal, require
from plait.core.clock import isoformat, utcnow
from plait.core.errors import InvalidInput
from plait.core.settings import InboxSettings, Settings
from plait.identity.identifiers import external_kind, identity_rules
from plait.inbox.connectors import DeliveryFailed, Outgoing, check_status
from plait.inbox.inboxes import Inbox
from plait.inbox.receiving import Inbound
from plait.inbox.webhooks import webhook_inbox

router = APIRouter(tags=["inbox"])

Writer = Annotated[Principal, Depends(require("inbox:write"))]
Scalar = str | int | float | bool | None
FUTURE_LEEWAY = timedelta(minutes=5)


class ExternalId(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=50, description="e.g. crm_id, telegram_user_id")
    id: str = Field(min_length=1, max_length=500)


class ApiMessage(BaseModel):
    """A customer's message from an external system."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=500, description="your id: stored once")
    contact: str = Field(
        min_length=1, max_length=500, description="the customer's address there (replies go to it)"
    )
    body: str = Field(max_length=100_000)
    subject: str | None = Field(None, max_length=500)
    traits: dict[str, Scalar] = Field(
        default_factory=dict, max_length=50, description="name, email, phone…"
    )
    external_ids: list[ExternalId] = Field(default_factory=list, max_length=20)
    timestamp: datetime | None = Field(None, description="when it was sent (default: now)")


@router.post("/api/inbox/inboxes/{inbox_id}/messages", status_code=201)
def post_api_message(
    request: Request, response: Response, inbox_id: str, body: ApiMessage, _p: Writer
) -> dict[str, Any]:
    """Receive a customer message on an ``api`` inbox (200 and ``duplicate`` if its id was
    received before)."""
    app = request.app.state
    inbox = webhook_inbox(app.engine, inbox_id, ["api"])
    received = app.receiver.receive(inbox, inbound_of(body, app.settings))
    if received.duplicate:
        response.status_code = 200
    return {
        "id": str(received.message_id),
        "conversation_id": str(received.conversation_id) if received.conversation_id else None,
        "duplicate": received.duplicate,
    }


def inbound_of(message: ApiMessage, settings: Settings) -> Inbound:
    """The request as an inbound message; identifiers that cannot be one are refused."""
    rules = identity_rules(settings)
    traits = {key: value for key, value in message.traits.items() if value not in (None, "")}
    for trait, kind in rules.trait_kinds.items():
        if trait in traits and rules.normalize(kind, traits[trait]) is None:
            raise InvalidInput(f"traits.{trait} is not a valid {kind}", field=f"traits.{trait}")
    external_ids = []
    for index, item in enumerate(message.external_ids):
        if external_kind(item.type, rules) is None:
            raise InvalidInput(
                "an external id type is lower-case letters, digits and _",
                field=f"external_ids.{index}.type",
            )
        external_ids.append((item.type, item.id))
    sent_at = None
    if message.timestamp is not None:
        stamp = message.timestamp
        sent_at = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
        if sent_at > utcnow() + FUTURE_LEEWAY:
            raise InvalidInput("timestamp is in the future", field="timestamp")
    return Inbound(
        provider_id=message.id,
        contact=message.contact.strip(),
        body=message.body,
        subject=message.subject,
        traits=traits,
        external_ids=external_ids,
        sent_at=sent_at,
    )


def signature(secret: str, body: bytes) -> str:
    """The ``X-Plait-Signature`` of a callback body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(
    inbox: Inbox, message: Outgoing, settings: InboxSettings, client: httpx.Client
) -> str | None:
    """POST the reply to the inbox's ``callback_url``, signed; returns the answer's ``id``."""
    url = inbox.option("callback_url")
    secret = inbox.secrets.get("signing_secret")
    if not url or not secret:
        raise DeliveryFailed(
            "the api inbox needs a callback_url option and a signing_secret secret",
            permanent=True,
        )
    payload = orjson.dumps(
        {
            "id": str(message.message_id),
            "inbox_id": str(inbox.id),
            "conversation_token": message.conversation_token,
            "contact": message.contact,
            "subject": message.subject,
            "body": message.body,
            "attachments": list(message.attachments),
            "timestamp": isoformat(utcnow()),
        }
    )
    response = client.post(
        url,
        content=payload,
        headers={
            "content-type": "application/json",
            "x-plait-signature": signature(secret, payload),
        },
    )
    check_status(response, "The callback")
    try:
        answer = response.json()
    except ValueError:
        return None
    found = answer.get("id") if isinstance(answer, Mapping) else None
    return str(found) if found not in (None, "") else None
