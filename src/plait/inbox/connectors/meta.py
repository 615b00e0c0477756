"""WhatsApp Cloud API, Messenger and Instagram through Meta's Graph API. Inbound: Meta's
webhook envelope at ``/webhooks/meta/{inbox_id}`` — a ``GET`` subscription check answered
with ``hub.challenge``, then ``POST`` deliveries authenticated by ``X-Hub-Signature-256``
over the raw body. Outbound: ``POST /{phone_number_id}/messages`` (WhatsApp) or
``POST /{page_id}/messages`` (Messenger, Instagram; ``/me/messages`` without a page id).

Inbox options: ``phone_number_id`` (WhatsApp), ``page_id`` (Messenger / Instagram account),
``api_url`` (default ``inbox.meta_graph_url``); secrets: ``app_secret``, ``verify_token``,
``access_token``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from plait.core.db import read, write
from plait.core.errors import InvalidInput
from plait.core.settings import InboxSettings
from plait.inbox.connectors import DeliveryFailed, Outgoing, check_status
from plait.inbox.inboxes import Inbox
from plait.inbox.receiving import Inbound, store_messages
from plait.inbox.routing import route_pending
from plait.inbox.schema import messages
from plait.inbox.webhooks import (
    STATUS_RANK,
    apply_status,
    refuse,
    same_secret,
    webhook_inbox_async,
)

router = APIRouter(tags=["webhooks"])

CHANNELS = ("whatsapp", "messenger", "instagram")
OBJECTS = {"whatsapp": "whatsapp_business_account", "messenger": "page", "instagram": "instagram"}
"""Inbox channel → the ``object`` of the webhook envelopes Meta sends for it."""
EXTERNAL_ID_TYPES = {"messenger": "psid", "instagram": "igsid"}
STATUSES = frozenset({"sent", "delivered", "read", "failed"})
TEXT_LIMITS = {"whatsapp": 4096, "messenger": 2000, "instagram": 1000}
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80007, 130429, 131000, 131016, 131056})
"""Graph API error codes that mean "try again later" (throttling, temporary outages), even
when Meta answers them with a 4xx."""
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")


@dataclass(frozen=True)
class Status:
    """A delivery status Meta reported for one of our messages."""

    provider_id: str
    status: str
    error: str | None = None


@dataclass(frozen=True)
class Watermark:
    """Messenger's "everything sent to ``contact`` before ``at`` was delivered / read"."""

    contact: str
    at: datetime
    status: str


@dataclass
class Batch:
    """Everything one webhook delivery carries."""

    messages: list[Inbound] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    watermarks: list[Watermark] = field(default_factory=list)


def signature(app_secret: str, body: bytes) -> str:
    """Meta's ``X-Hub-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


@router.get("/webhooks/meta/{inbox_id}", include_in_schema=True)
async def meta_verification(request: Request, inbox_id: str) -> Response:
    """Meta's subscription check: echo ``hub.challenge`` if ``hub.verify_token`` is ours."""
    app = request.app.state
    inbox = await webhook_inbox_async(app.engine, inbox_id, CHANNELS)
    query = request.query_params
    token = str(inbox.secrets.get("verify_token") or "")
    if (
        query.get("hub.mode") != "subscribe"
        or not token
        or not same_secret(token, query.get("hub.verify_token"))
    ):
        raise await run_in_threadpool(
            refuse,
            app.engine,
            request,
            inbox,
            "meta",
            "bad_verify_token",
            "hub.mode is not subscribe or hub.verify_token is not this inbox's verify token",
        )
    return PlainTextResponse(query.get("hub.challenge", ""))


@router.post("/webhooks/meta/{inbox_id}", include_in_schema=True)
async def meta_webhook(request: Request, inbox_id: str) -> Response:
    """Meta's webhook: messages from customers and statuses of the messages we sent."""
    app = request.app.state
    inbox = await webhook_inbox_async(app.engine, inbox_id, CHANNELS)
    body = await request.body()
    secret = str(inbox.secrets.get("app_secret") or "")
    if not secret or not same_secret(
        signature(secret, body), request.headers.get("x-hub-signature-256")
    ):
        raise await run_in_threadpool(
            refuse,
            app.engine,
            request,
            inbox,
            "meta",
            "bad_signature",
            "the X-Hub-Signature-256 header does not match this request's body",
        )
    batch = parse(_json(body), inbox.channel)
    await run_in_threadpool(_handle, request, inbox, batch)
    return PlainTextResponse("EVENT_RECEIVED")


def _json(body: bytes) -> Any:
    """The parsed body; anything but JSON is a malformed delivery."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _malformed("the body is not JSON", None) from None


def _handle(request: Request, inbox: Inbox, batch: Batch) -> None:
    """Store every message in one transaction (all or none), route them, apply statuses."""
    app = request.app.state
    with write(app.engine) as conn:
        arrivals = [(inbox, inbound) for inbound in batch.messages]
        stored = store_messages(conn, app.rules, arrivals)
    new = [received.message_id for received in stored if not received.duplicate]
    if new:
        route_pending(app.engine, app.settings, only=new)
    for status in batch.statuses:
        apply_status(app.engine, inbox.id, status.provider_id, status.status, status.error)
    for mark in batch.watermarks:
        _apply_watermark(app.engine, inbox, mark)


def _apply_watermark(engine: sa.Engine, inbox: Inbox, mark: Watermark) -> None:
    """Move every message we sent the customer before the watermark up to its status."""
    behind = [status for status, rank in STATUS_RANK.items() if rank < STATUS_RANK[mark.status]]
    with read(engine) as conn:
        provider_ids = (
            conn.execute(
                sa.select(messages.c.provider_id).where(
                    messages.c.inbox_id == inbox.id,
                    messages.c.direction == "out",
                    messages.c.contact == mark.contact,
                    messages.c.provider_id.is_not(None),
                    messages.c.status.in_(behind),
                    messages.c.created_at <= mark.at,
                )
            )
            .scalars()
            .all()
        )
    for provider_id in provider_ids:
        apply_status(engine, inbox.id, provider_id, mark.status)


def parse(payload: Any, channel: str) -> Batch:
    """The messages and statuses of a webhook envelope for an inbox of ``channel``; a
    malformed envelope raises InvalidInput naming where."""
    envelope = _mapping(payload, "the body")
    expected = OBJECTS[channel]
    if envelope.get("object") != expected:
        raise _malformed(
            f"a {channel} inbox takes object {expected!r}, not {envelope.get('object')!r}",
            "object",
        )
    batch = Batch()
    for index, item in enumerate(_list(envelope, "entry", "", required=True)):
        where = f"entry[{index}]"
        entry = _mapping(item, where)
        if channel == "whatsapp":
            for number, change in enumerate(_list(entry, "changes", where)):
                _whatsapp_change(_mapping(change, f"{where}.changes[{number}]"), batch, where)
        else:
            for number, event in enumerate(_list(entry, "messaging", where)):
                at = f"{where}.messaging[{number}]"
                _messaging_event(_mapping(event, at), channel, batch, at)
    return batch


def _whatsapp_change(change: Mapping[str, Any], batch: Batch, where: str) -> None:
    """Messages and statuses of one ``messages`` change (other fields are not for the inbox)."""
    if change.get("field") != "messages":
        return
    value = _mapping(change.get("value"), f"{where}.value")
    metadata = value.get("metadata") if isinstance(value.get("metadata"), Mapping) else {}
    contacts = [
        _mapping(contact, f"{where}.value.contacts[{index}]")
        for index, contact in enumerate(_list(value, "contacts", f"{where}.value"))
    ]
    for index, item in enumerate(_list(value, "messages", f"{where}.value")):
        at = f"{where}.value.messages[{index}]"
        batch.messages.append(_whatsapp_message(_mapping(item, at), contacts, metadata, at))
    for index, item in enumerate(_list(value, "statuses", f"{where}.value")):
        at = f"{where}.value.statuses[{index}]"
        status = _mapping(item, at)
        name = _text(status, "status", at)
        if name in STATUSES:
            batch.statuses.append(Status(_text(status, "id", at), name, _whatsapp_error(status)))


def _whatsapp_message(
    message: Mapping[str, Any],
    contacts: list[Mapping[str, Any]],
    metadata: Mapping[str, Any],
    where: str,
) -> Inbound:
    """One inbound WhatsApp message; its sender's wa_id, BSUID and phone kept apart."""
    wa_id = _optional_text(message.get("from"))
    contact = _sender_contact(contacts, wa_id, _optional_text(message.get("from_user_id")))
    wa_id = wa_id or _optional_text(contact.get("wa_id"))
    bsuid = _optional_text(message.get("from_user_id")) or _optional_text(contact.get("user_id"))
    if not wa_id and not bsuid:
        raise _malformed(f"{where} says neither who sent it (from) nor their user_id", where)
    traits: dict[str, Any] = {}
    if wa_id and wa_id.isdigit():
        traits["phone"] = "+" + wa_id
    profile = contact.get("profile") if isinstance(contact.get("profile"), Mapping) else {}
    if _optional_text(profile.get("name")):
        traits["name"] = str(profile["name"])
    external_ids = [("whatsapp_id", wa_id)] if wa_id else []
    if bsuid:
        external_ids.append(("whatsapp_bsuid", bsuid))
    kind = _optional_text(message.get("type")) or "text"
    body, attachments = _whatsapp_content(message, kind)
    properties = {
        "type": kind,
        "to": _optional_text(metadata.get("display_phone_number")),
        "phone_number_id": _optional_text(metadata.get("phone_number_id")),
    }
    context = message.get("context")
    if isinstance(context, Mapping) and _optional_text(context.get("id")):
        properties["reply_to"] = str(context["id"])
    return Inbound(
        provider_id=_text(message, "id", where),
        contact=str(wa_id or bsuid),
        body=body,
        traits=traits,
        external_ids=external_ids,
        attachments=attachments,
        sent_at=_time(message.get("timestamp"), f"{where}.timestamp", millis=False),
        properties={k: v for k, v in properties.items() if v is not None},
    )


def _sender_contact(
    contacts: list[Mapping[str, Any]], wa_id: str | None, bsuid: str | None
) -> Mapping[str, Any]:
    """The ``contacts`` entry describing a message's sender (by wa_id, else user_id)."""
    for contact in contacts:
        if wa_id and _optional_text(contact.get("wa_id")) == wa_id:
            return contact
        if bsuid and _optional_text(contact.get("user_id")) == bsuid:
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _whatsapp_content(message: Mapping[str, Any], kind: str) -> tuple[str, list[Mapping[str, Any]]]:
    """The text an agent reads, and the media, of a WhatsApp message of type ``kind``."""
    part = message.get(kind) if isinstance(message.get(kind), Mapping) else {}
    if kind in ("text", "system"):
        return str(part.get("body") or ""), []
    if kind in MEDIA_TYPES:
        media = {"type": kind, "id": part.get("id"), "mime_type": part.get("mime_type")}
        if part.get("filename"):
            media["filename"] = part["filename"]
        return str(part.get("caption") or ""), [{k: v for k, v in media.items() if v}]
    if kind == "location":
        place = ", ".join(str(part[key]) for key in ("name", "address") if part.get(key))
        return place or f"{part.get('latitude')}, {part.get('longitude')}", []
    if kind == "button":
        return str(part.get("text") or ""), []
    if kind == "interactive":
        reply = part.get(str(part.get("type")))
        return str(reply.get("title") or "") if isinstance(reply, Mapping) else "", []
    if kind == "reaction":
        return str(part.get("emoji") or ""), []
    return "", []


def _whatsapp_error(status: Mapping[str, Any]) -> str | None:
    """``code: title`` of a failed status's first error."""
    errors = status.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], Mapping):
        return None
    first = errors[0]
    return f"{first.get('code')}: {first.get('title') or first.get('message') or 'failed'}"


def _messaging_event(event: Mapping[str, Any], channel: str, batch: Batch, where: str) -> None:
    """A Messenger / Instagram event: a message (not our own echo), a postback, a receipt."""
    sender = _mapping(event.get("sender"), f"{where}.sender")
    customer = _text(sender, "id", f"{where}.sender")
    if "message" in event:
        message = _mapping(event["message"], f"{where}.message")
        if message.get("is_echo"):
            return
        attachments = [
            _attachment(_mapping(item, f"{where}.message.attachments[{index}]"))
            for index, item in enumerate(_list(message, "attachments", f"{where}.message"))
        ]
        batch.messages.append(
            Inbound(
                provider_id=_text(message, "mid", f"{where}.message"),
                contact=customer,
                body=str(message.get("text") or ""),
                external_ids=[(EXTERNAL_ID_TYPES[channel], customer)],
                attachments=attachments,
                sent_at=_time(event.get("timestamp"), f"{where}.timestamp", millis=True),
                properties=_recipient(event),
            )
        )
    elif "postback" in event:
        postback = _mapping(event["postback"], f"{where}.postback")
        if postback.get("mid"):
            batch.messages.append(
                Inbound(
                    provider_id=_text(postback, "mid", f"{where}.postback"),
                    contact=customer,
                    body=str(postback.get("title") or postback.get("payload") or ""),
                    external_ids=[(EXTERNAL_ID_TYPES[channel], customer)],
                    sent_at=_time(event.get("timestamp"), f"{where}.timestamp", millis=True),
                    properties={**_recipient(event), "type": "postback"},
                )
            )
    for name, status in (("delivery", "delivered"), ("read", "read")):
        if name in event:
            _receipt(_mapping(event[name], f"{where}.{name}"), customer, status, batch, where)


def _receipt(
    receipt: Mapping[str, Any], customer: str, status: str, batch: Batch, where: str
) -> None:
    """A Messenger delivery/read receipt: by message ids, or a watermark time."""
    mids = receipt.get("mids") if isinstance(receipt.get("mids"), list) else []
    if receipt.get("mid"):
        mids = [*mids, receipt["mid"]]
    batch.statuses.extend(Status(str(mid), status) for mid in mids if mid)
    if receipt.get("watermark") is not None:
        at = _time(receipt["watermark"], f"{where}.watermark", millis=True)
        if at is not None:
            batch.watermarks.append(Watermark(customer, at, status))


def _attachment(item: Mapping[str, Any]) -> Mapping[str, Any]:
    payload = item.get("payload") if isinstance(item.get("payload"), Mapping) else {}
    found = {"type": item.get("type"), "url": payload.get("url"), "title": item.get("title")}
    return {key: value for key, value in found.items() if value}


def _recipient(event: Mapping[str, Any]) -> dict[str, Any]:
    recipient = event.get("recipient")
    if isinstance(recipient, Mapping) and _optional_text(recipient.get("id")):
        return {"to": str(recipient["id"])}
    return {}


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _malformed(f"{where} is not a JSON object", where)
    return value


def _list(parent: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> list:
    value = parent.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        name = f"{where}.{key}" if where else key
        raise _malformed(f"{name} is not a JSON array", name)
    return value


def _text(parent: Mapping[str, Any], key: str, where: str) -> str:
    value = _optional_text(parent.get(key))
    if value is None:
        raise _malformed(f"{where} has no {key}", f"{where}.{key}")
    return value


def _optional_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return None
    return str(value).strip()


def _time(value: Any, where: str, *, millis: bool) -> datetime | None:
    """A Unix timestamp (seconds, or milliseconds for Messenger) as UTC; None if absent."""
    if value is None:
        return None
    try:
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if millis else number, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise _malformed(f"{where} is not a Unix timestamp", where) from None


def _malformed(message: str, where: str | None) -> InvalidInput:
    """The 400 for an envelope that is not Meta's shape, naming where it went wrong."""
    return InvalidInput(f"malformed Meta webhook: {message}", code="malformed_payload", field=where)


def send(
    inbox: Inbox, message: Outgoing, settings: InboxSettings, client: httpx.Client
) -> str | None:
    """Send a text through the Graph API; returns Meta's message id (``wamid…`` / ``m_…``)."""
    token = inbox.secrets.get("access_token")
    if not token:
        raise DeliveryFailed("the inbox has no Meta access_token", permanent=True)
    limit = TEXT_LIMITS[inbox.channel]
    if len(message.body) > limit:
        raise DeliveryFailed(
            f"{inbox.channel} messages may be at most {limit} characters", permanent=True
        )
    base = inbox.option("api_url", settings.meta_graph_url).rstrip("/")
    if inbox.channel == "whatsapp":
        number = inbox.option("phone_number_id")
        if not number:
            raise DeliveryFailed("the inbox has no WhatsApp phone_number_id", permanent=True)
        url, payload = f"{base}/{number}/messages", whatsapp_text(message)
    else:
        url = f"{base}/{inbox.option('page_id', 'me')}/messages"
        payload = {
            "recipient": {"id": message.contact},
            "messaging_type": "RESPONSE",
            "message": {"text": message.body},
        }
    response = client.post(url, json=payload, headers={"Authorization": f"Bearer {token}"})
    _check_throttled(response)
    check_status(response, "Meta")
    answer = response.json()
    if inbox.channel == "whatsapp":
        sent = answer.get("messages") or [{}]
        return sent[0].get("id")
    return answer.get("message_id")


def whatsapp_text(message: Outgoing) -> dict[str, Any]:
    """The Cloud API body of a text: to a phone number (``wa_id``), or to a BSUID."""
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    if message.contact.isdigit():
        payload["to"] = message.contact
    else:
        payload["recipient"] = message.contact
    return {**payload, "type": "text", "text": {"body": message.body}}


def _check_throttled(response: httpx.Response) -> None:
    """Meta answers rate limits and temporary outages with a 4xx and an error code."""
    if response.is_success or response.status_code >= 500:
        return
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return
    if code in RETRYABLE_CODES:
        detail = response.text[:300].strip()
        raise DeliveryFailed(f"Meta answered {response.status_code}: {detail}")
