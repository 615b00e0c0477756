"""Telegram Bot API ``Update`` objects as Telegram posts them to a webhook, and a local Bot API
answering ``sendMessage`` as Telegram does (including a user who blocked the bot)."""

from __future__ import annotations

import itertools
import time
from typing import Any

from tests.inbox.providers import Received

BOT_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET_TOKEN = "plait-telegram-secret_0123456789"
ANA = {
    "id": 5123456789,
    "is_bot": False,
    "first_name": "Ana",
    "last_name": "Lima",
    "username": "analima",
    "language_code": "pt-br",
}
BLOCKED_CHAT = 5999999999
_message_ids = itertools.count(1000)


def private_chat(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "first_name": user["first_name"],
        "last_name": user.get("last_name", ""),
        "username": user.get("username", ""),
        "type": "private",
    }


def text_update(
    update_id: int, text: str, *, user: dict[str, Any] = ANA, message_id: int = 42
) -> dict[str, Any]:
    """A user's text message to the bot in a private chat."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": user,
            "chat": private_chat(user),
            "date": int(time.time()),
            "text": text,
        },
    }


def photo_update(update_id: int, caption: str) -> dict[str, Any]:
    """A photo with a caption: Telegram sends every size, smallest first."""
    sizes = [
        ("AgACAgQAAxkBAAIBY2Z_small", 90, 67, 1311),
        ("AgACAgQAAxkBAAIBY2Z_medium", 320, 240, 16344),
        ("AgACAgQAAxkBAAIBY2Z_large", 1280, 960, 131209),
    ]
    return {
        "update_id": update_id,
        "message": {
            "message_id": 43,
            "from": ANA,
            "chat": private_chat(ANA),
            "date": int(time.time()),
            "photo": [
                {
                    "file_id": file_id,
                    "file_unique_id": f"AQAD{width}",
                    "file_size": size,
                    "width": width,
                    "height": height,
                }
                for file_id, width, height, size in sizes
            ],
            "caption": caption,
        },
    }


def document_update(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 44,
            "from": ANA,
            "chat": private_chat(ANA),
            "date": int(time.time()),
            "document": {
                "file_name": "invoice-1043.pdf",
                "mime_type": "application/pdf",
                "file_id": "BQACAgQAAxkBAAIBZGZ_document",
                "file_unique_id": "AgADdocument",
                "file_size": 48213,
            },
        },
    }


def edited_update(update_id: int, text: str, message_id: int = 42) -> dict[str, Any]:
    now = int(time.time())
    return {
        "update_id": update_id,
        "edited_message": {
            "message_id": message_id,
            "from": ANA,
            "chat": private_chat(ANA),
            "date": now - 60,
            "edit_date": now,
            "text": text,
        },
    }


def member_update(update_id: int) -> dict[str, Any]:
    """Not a message: the user stopped the bot (``my_chat_member``)."""
    return {
        "update_id": update_id,
        "my_chat_member": {
            "chat": private_chat(ANA),
            "from": ANA,
            "date": int(time.time()),
            "old_chat_member": {"user": {"id": 7012345678, "is_bot": True}, "status": "member"},
            "new_chat_member": {"user": {"id": 7012345678, "is_bot": True}, "status": "kicked"},
        },
    }


def bot_api(request: Received) -> tuple[int, Any]:
    """The Bot API's ``sendMessage``: the sent Message, or Telegram's error objects."""
    if request.path != f"/bot{BOT_TOKEN}/sendMessage":
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
    body = request.json
    if body.get("chat_id") == BLOCKED_CHAT:
        return 403, {
            "ok": False,
            "error_code": 403,
            "description": "Forbidden: bot was blocked by the user",
        }
    if not isinstance(body.get("chat_id"), int) or not body.get("text"):
        return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    return 200, {
        "ok": True,
        "result": {
            "message_id": next(_message_ids),
            "from": {"id": 7012345678, "is_bot": True, "first_name": "Shop", "username": "shopbot"},
            "chat": {"id": body["chat_id"], "type": "private"},
            "date": int(time.time()),
            "text": body["text"],
        },
    }
