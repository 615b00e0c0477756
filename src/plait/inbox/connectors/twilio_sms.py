"""SMS through Twilio. Inbound: Twilio's form-encoded webhook (messages and status
callbacks) at ``/webhooks/twilio/{inbox_id}``, authenticated by ``X-Twilio-Signature``.
Outbound: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

Inbox options: ``account_sid``, ``phone_number`` (the sender) or ``messaging_service_sid``,
``api_url`` (default ``inbox.twilio_api_url``); secret: ``auth_token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import FormData

from plait.core.clock import utcnow
from plait.core.settings import InboxSettings
from plait.inbox.connectors import DeliveryFailed, Outgoing, check_status
from plait.inbox.inboxes import Inbox
from plait.inbox.receiving import Inbound
from plait.inbox.webhooks import (
    apply_status,
    public_url,
    refuse,
    same_secret,
    webhook_inbox_async,
)

router = APIRouter(tags=["webhooks"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
STATUSES = {
    "accepted": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
}


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's request signature: HMAC-SHA1 over the URL followed by each POST parameter's
    name and value, sorted by name, base64-encoded."""
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@router.post("/webhooks/twilio/{inbox_id}", include_in_schema=True)
async def twilio_webhook(request: Request, inbox_id: str) -> Response:
    """Twilio's messaging webhook: an inbound SMS, or a status callback for one we sent."""
    app = request.app.state
    inbox = await webhook_inbox_async(app.engine, inbox_id, ["sms"])
    form = await request.form()
    params = {name: str(value) for name, value in form.multi_items()}
    url = public_url(request, app.settings.server.public_url)
    expected = signature(str(inbox.secrets.get("auth_token", "")), url, params)
    if not inbox.secrets.get("auth_token") or not same_secret(
        expected, request.headers.get("x-twilio-signature")
    ):
        raise await run_in_threadpool(
            refuse,
            app.engine,
            request,
            inbox,
            "twilio",
            "bad_signature",
            "the X-Twilio-Signature header does not match this request",
        )
    sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
    status = str(form.get("MessageStatus") or form.get("SmsStatus") or "")
    if status and status != "received" and sid:
        error = form.get("ErrorCode")
        await run_in_threadpool(
            apply_status,
            app.engine,
            inbox.id,
            sid,
            STATUSES.get(status, status),
            error and str(error),
        )
    elif (inbound := parse_inbound(form)) is not None:
        await app.receiver.receive_async(inbox, inbound)
    return Response(EMPTY_TWIML, media_type="text/xml")


def parse_inbound(form: FormData | Mapping[str, str]) -> Inbound | None:
    """An inbound message from Twilio's webhook parameters (None if it is not one)."""
    sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
    sender = str(form.get("From") or "")
    if not sid or not sender:
        return None
    media = []
    for index in range(int(str(form.get("NumMedia") or 0) or 0)):
        url = form.get(f"MediaUrl{index}")
        if url:
            media.append({"url": str(url), "type": str(form.get(f"MediaContentType{index}") or "")})
    traits = {"phone": sender}
    if form.get("ProfileName"):
        traits["name"] = str(form.get("ProfileName"))
    return Inbound(
        provider_id=sid,
        contact=sender,
        body=str(form.get("Body") or ""),
        traits=traits,
        attachments=media,
        sent_at=utcnow(),
        properties={"to": str(form.get("To") or "")},
    )


def send(inbox: Inbox, message: Outgoing, settings: InboxSettings, client: httpx.Client) -> str:
    """Send an SMS through Twilio's Messages resource; returns its ``sid``."""
    account = inbox.option("account_sid")
    token = inbox.secrets.get("auth_token")
    if not account or not token:
        raise DeliveryFailed("the inbox has no Twilio account_sid and auth_token", permanent=True)
    base = inbox.option("api_url", settings.twilio_api_url).rstrip("/")
    data = {"To": message.contact, "Body": message.body}
    if inbox.option("messaging_service_sid"):
        data["MessagingServiceSid"] = inbox.option("messaging_service_sid")
    else:
        data["From"] = inbox.option("phone_number", "")
    if inbox.option("status_callback"):
        data["StatusCallback"] = inbox.option("status_callback")
    response = client.post(
        f"{base}/2010-04-01/Accounts/{account}/Messages.json", data=data, auth=(account, token)
    )
    check_status(response, "Twilio")
    return str(response.json()["sid"])
