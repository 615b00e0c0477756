"""Telegram bots. Inbound: the Bot API's ``Update`` objects, POSTed to
``/webhooks/telegram/{inbox_id}`` (the URL given to ``setWebhook`` with a ``secret_token``) and
authenticated by the ``X-Telegram-Bot-Api-Secret-Token`` header. Outbound:
``POST {api_url}/bot{bot_token}/sendMessage``.

Each update is handled once (its ``update_id`` is recorded with the message it carries, in one
transaction) and each message once (provider id ``chat_id:message_id``). An edited message is
stored as a new message, ``(edited)`` before its new text, so the conversation keeps what the
customer first wrote; updates other than messages (joins, polls, callbacks) and messages from
bots are acknowledged and dropped.

Inbox options: ``api_url`` (default ``inbox.telegram_api_url``); secrets: ``bot_token``,
``secret_token``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from plait.collect.messages import Rules
from plait.core.db import write
from plait.core.errors import InvalidInput, TooLarge
from plait.core.settings import InboxSettings, Settings
from plait.inbox.connectors import DeliveryFailed, Outgoing, check_status
from plait.inbox.inboxes import Inbox
from plait.inbox.receiving import Inbound, Received, mark_delivery, store_message
from plait.inbox.routing import route_pending
from plait.inbox.webhooks import refuse, same_secret, webhook_inbox_async

router = APIRouter(tags=["webhooks"])

MAX_UPDATE_BYTES = 1_000_000
MAX_TEXT = 4096
"""The Bot API's limit on one message's text; longer replies go as several messages."""
FILE_KINDS = ("document", "video", "audio", "voice", "animation", "video_note", "sticker")
FILE_FIELDS = (
    "file_id",
    "file_unique_id",
    "file_name",
    "mime_type",
    "file_size",
    "width",
    "height",
    "duration",
)


@router.post("/webhooks/telegram/{inbox_id}")
async def telegram_webhook(request: Request, inbox_id: str) -> dict[str, bool]:
    """The bot's webhook: one ``Update`` (a message, an edited message, or something else)."""
    app = request.app.state
    inbox = await webhook_inbox_async(app.engine, inbox_id, ["telegram"])
    expected = str(inbox.secrets.get("secret_token") or "")
    given = request.headers.get("x-telegram-bot-api-secret-token")
    if not expected or not same_secret(expected, given):
        raise await run_in_threadpool(
            refuse,
            app.engine,
            request,
            inbox,
            "telegram",
            "bad_secret_token",
            "the X-Telegram-Bot-Api-Secret-Token header does not match this inbox's secret token",
        )
    raw = await request.body()
    if len(raw) > MAX_UPDATE_BYTES:
        raise TooLarge(f"an update may be at most {MAX_UPDATE_BYTES} bytes", field="body")
    try:
        update = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("the body is not a JSON Telegram Update", field="body") from None
    update_id, inbound = parse_update(update)
    await run_in_threadpool(
        handle_update, app.engine, app.settings, app.rules, inbox, update_id, inbound
    )
    return {"ok": True}


def handle_update(
    engine: Engine,
    settings: Settings,
    rules: Rules,
    inbox: Inbox,
    update_id: int,
    inbound: Inbound | None,
) -> Received | None:
    """Record the update and store its message in one transaction (nothing if the update
    was handled before), then route the message."""
    with write(engine) as conn:
        if not mark_delivery(conn, inbox, f"update:{update_id}") or inbound is None:
            return None
        stored = store_message(conn, rules, inbox, inbound)
    if stored.duplicate:
        return stored
    routed = route_pending(engine, settings, only=[stored.message_id])
    return Received(stored.message_id, False, routed.get(stored.message_id))


def parse_update(update: Any) -> tuple[int, Inbound | None]:
    """An update's id and the customer message it carries (None for other updates)."""
    if not isinstance(update, Mapping):
        raise InvalidInput("a Telegram Update is a JSON object", field="body")
    update_id = update.get("update_id")
    if not _is_int(update_id) or update_id < 0:
        raise InvalidInput("update_id must be a non-negative integer", field="update_id")
    for kind in ("message", "edited_message"):
        if kind in update:
            return update_id, parse_message(update[kind], kind)
    return update_id, None


def parse_message(message: Any, kind: str = "message") -> Inbound | None:
    """A Bot API ``Message`` as an inbound message (None if a bot sent it)."""
    if not isinstance(message, Mapping):
        raise InvalidInput(f"{kind} must be a Telegram Message object", field=kind)
    chat = message.get("chat")
    if not isinstance(chat, Mapping) or not _is_int(chat.get("id")):
        raise InvalidInput(f"{kind}.chat.id must be an integer", field=f"{kind}.chat.id")
    for name in ("message_id", "date"):
        if not _is_int(message.get(name)):
            raise InvalidInput(f"{kind}.{name} must be an integer", field=f"{kind}.{name}")
    sender = message.get("from")
    if sender is not None and (not isinstance(sender, Mapping) or not _is_int(sender.get("id"))):
        raise InvalidInput(f"{kind}.from.id must be an integer", field=f"{kind}.from.id")
    if sender and sender.get("is_bot") is True:
        return None
    text = message.get("text", message.get("caption", ""))
    if not isinstance(text, str):
        raise InvalidInput(f"{kind}.text must be a string", field=f"{kind}.text")
    chat_id, message_id = chat["id"], message["message_id"]
    traits, external_ids = _identifiers(sender)
    shared = message.get("contact")
    if isinstance(shared, Mapping) and shared.get("phone_number"):
        text = text or f"Shared contact: {shared['phone_number']}"
        if sender and shared.get("user_id") == sender["id"]:
            traits["phone"] = str(shared["phone_number"])
    location = message.get("location")
    if not text and isinstance(location, Mapping):
        text = f"Location: {location.get('latitude')}, {location.get('longitude')}"
    provider_id = f"{chat_id}:{message_id}"
    at = message["date"]
    properties: dict[str, Any] = {"chat_type": chat.get("type"), "telegram_message_id": message_id}
    if kind == "edited_message":
        edited = message.get("edit_date")
        at = edited if _is_int(edited) else at
        provider_id = f"{provider_id}:edit:{at}"
        text = f"(edited) {text}"
        properties["edited"] = True
    return Inbound(
        provider_id=provider_id,
        contact=str(chat_id),
        body=text,
        traits=traits,
        external_ids=external_ids,
        sent_at=datetime.fromtimestamp(at, UTC),
        attachments=attachments_of(message),
        properties=properties,
    )


def attachments_of(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Photos (the largest size), documents and other files, by ``file_id``: fetched through
    ``getFile`` when someone needs them, never downloaded here."""
    found = []
    photo = message.get("photo")
    if isinstance(photo, list) and photo and isinstance(photo[-1], Mapping):
        found.append(_file("photo", photo[-1]))
    for kind in FILE_KINDS:
        item = message.get(kind)
        if isinstance(item, Mapping) and item.get("file_id"):
            found.append(_file(kind, item))
    return found


def _file(kind: str, item: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": kind, **{name: item[name] for name in FILE_FIELDS if name in item}}


def _identifiers(sender: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    if not sender:
        return {}, []
    traits: dict[str, Any] = {}
    name = " ".join(
        str(sender[part]) for part in ("first_name", "last_name") if sender.get(part)
    ).strip()
    if name:
        traits["name"] = name
    if sender.get("username"):
        traits["telegram_username"] = str(sender["username"])
    return traits, [("telegram_user_id", str(sender["id"]))]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def send(inbox: Inbox, message: Outgoing, settings: InboxSettings, client: httpx.Client) -> str:
    """Send a text message with the Bot API's ``sendMessage`` (several if it is longer than
    Telegram allows); returns the first one's ``message_id``."""
    token = inbox.secrets.get("bot_token")
    if not token:
        raise DeliveryFailed("the inbox has no Telegram bot_token", permanent=True)
    base = inbox.option("api_url", settings.telegram_api_url).rstrip("/")
    chat: int | str = message.contact
    if message.contact.lstrip("-").isdigit():
        chat = int(message.contact)
    sent = []
    for start in range(0, max(len(message.body), 1), MAX_TEXT):
        body = {"chat_id": chat, "text": message.body[start : start + MAX_TEXT]}
        response = client.post(f"{base}/bot{token}/sendMessage", json=body)
        sent.append(_message_id(response))
    return sent[0]


def _message_id(response: httpx.Response) -> str:
    """The sent message's id from a Bot API answer; ``{"ok": false}`` is a DeliveryFailed,
    permanent for a 4xx such as a blocked bot (403) or a chat that does not exist (400)."""
    try:
        answer = response.json()
    except ValueError:
        check_status(response, "Telegram")
        raise DeliveryFailed(f"Telegram answered {response.status_code} without JSON") from None
    if isinstance(answer, Mapping) and answer.get("ok") is True:
        result = answer.get("result")
        if isinstance(result, Mapping) and "message_id" in result:
            return str(result["message_id"])
        raise DeliveryFailed("Telegram's answer has no result.message_id")
    answer = answer if isinstance(answer, Mapping) else {}
    code = answer.get("error_code", response.status_code)
    code = code if _is_int(code) else response.status_code
    permanent = 400 <= code < 500 and code not in (408, 429)
    description = str(answer.get("description") or response.text[:300]).strip()
    raise DeliveryFailed(f"Telegram answered {code}: {description}", permanent=permanent)
