"""Meta's webhook envelopes as the Graph API sends them (WhatsApp Cloud API, Messenger,
Instagram), and a local Graph API answering sends in Meta's format."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi.testclient import TestClient
from tests.inbox.providers import Received

from plait.inbox.connectors.meta import signature

APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "meta-verify-token-for-tests"
ACCESS_TOKEN = "EAAG-meta-access-token-for-tests"
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
PAGE_ID = "109981234567890"
IG_ACCOUNT_ID = "17841405822304914"


def wamid() -> str:
    return "wamid.HBgL" + uuid.uuid4().hex.upper()


def whatsapp_messages(*messages: dict[str, Any], contacts: list[dict[str, Any]]) -> dict:
    """A ``whatsapp_business_account`` envelope carrying inbound messages."""
    return _whatsapp_change({"contacts": contacts, "messages": list(messages)})


def whatsapp_text(
    wa_id: str,
    body: str,
    *,
    name: str = "Ana Souza",
    bsuid: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """An inbound WhatsApp text, with the sender in ``contacts`` (BSUID as ``user_id``)."""
    contact: dict[str, Any] = {"profile": {"name": name}, "wa_id": wa_id}
    message: dict[str, Any] = {
        "from": wa_id,
        "id": message_id or wamid(),
        "timestamp": str(int(time.time())),
        "text": {"body": body},
        "type": "text",
    }
    if bsuid:
        contact["user_id"] = bsuid
        message["from_user_id"] = bsuid
    return whatsapp_messages(message, contacts=[contact])


def whatsapp_status(message_id: str, status: str, recipient: str, **extra: Any) -> dict:
    """A status notification for a message we sent."""
    notification = {
        "id": message_id,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": recipient,
        **extra,
    }
    if status != "failed":
        notification["conversation"] = {"id": uuid.uuid4().hex, "origin": {"type": "service"}}
        notification["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    return _whatsapp_change({"statuses": [notification]})


def _whatsapp_change(value: dict[str, Any]) -> dict[str, Any]:
    metadata = {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA_ID,
                "changes": [
                    {
                        "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def messaging(obj: str, account_id: str, *events: dict[str, Any]) -> dict[str, Any]:
    """A Messenger (``page``) or Instagram (``instagram``) envelope of messaging events."""
    now = int(time.time() * 1000)
    return {
        "object": obj,
        "entry": [{"id": account_id, "time": now, "messaging": list(events)}],
    }


def messaging_text(
    sender: str, account_id: str, text: str, *, mid: str | None = None, echo: bool = False
) -> dict[str, Any]:
    """One messaging event: a customer's text (or, ``echo``, the page's own message)."""
    message: dict[str, Any] = {"mid": mid or "m_" + uuid.uuid4().hex, "text": text}
    if echo:
        message["is_echo"] = True
        message["app_id"] = 1517776481860111
    who = {"sender": {"id": account_id}, "recipient": {"id": sender}} if echo else None
    return {
        **(who or {"sender": {"id": sender}, "recipient": {"id": account_id}}),
        "timestamp": int(time.time() * 1000),
        "message": message,
    }


def post_meta(
    client: TestClient, inbox: dict[str, Any], payload: Any, secret: str = APP_SECRET
) -> Any:
    """POST a webhook to the inbox as Meta does: raw JSON signed with the app secret."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        f"/webhooks/meta/{inbox['id']}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature(secret, body),
        },
    )


def graph_answer(request: Received) -> tuple[int, Any]:
    """The Graph API's answer to a send: WhatsApp's ``messages`` or the Send API's ids."""
    if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
        return 401, _graph_error(190, "Invalid OAuth access token - Cannot parse access token")
    body = request.json
    if request.path == f"/{PHONE_NUMBER_ID}/messages":
        if body.get("messaging_product") != "whatsapp" or not str(body.get("to")).isdigit():
            return 400, _graph_error(100, "Invalid parameter")
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": wamid()}],
        }
    if request.path in (f"/{PAGE_ID}/messages", "/me/messages"):
        recipient = body.get("recipient", {}).get("id")
        if not recipient or not body.get("message", {}).get("text"):
            return 400, _graph_error(100, "(#100) The parameter recipient is required")
        return 200, {"recipient_id": recipient, "message_id": "m_" + uuid.uuid4().hex}
    return 404, _graph_error(803, "(#803) Some of the aliases you requested do not exist")


def _graph_error(code: int, message: str) -> dict[str, Any]:
    error_type = "OAuthException"
    return {"error": {"message": message, "type": error_type, "code": code, "fbtrace_id": "Ax1"}}
