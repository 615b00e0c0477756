"""Telegram: Bot API updates in through the secret-token webhook, sendMessage out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import Api
from tests.inbox.conftest import eventually
from tests.inbox.providers import ProviderServer
from tests.inbox.telegram_payloads import (
    ANA,
    BLOCKED_CHAT,
    BOT_TOKEN,
    SECRET_TOKEN,
    bot_api,
    document_update,
    edited_update,
    member_update,
    photo_update,
    text_update,
)

from plait.core.settings import InboxSettings
from plait.inbox.connectors import Outgoing
from plait.inbox.connectors.telegram import MAX_TEXT, send
from plait.inbox.inboxes import Inbox
from plait.inbox.schema import messages, outbox, webhook_receipts, webhook_rejections


@pytest.fixture
def bot_server() -> Iterator[ProviderServer]:
    """The Bot API on loopback."""
    server = ProviderServer(bot_api)
    yield server
    server.close()


@pytest.fixture
def telegram_inbox(admin_api: Api, bot_server: ProviderServer) -> dict[str, Any]:
    return admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": "telegram",
            "name": "Shop bot",
            "options": {"api_url": bot_server.url},
            "secrets": {"bot_token": BOT_TOKEN, "secret_token": SECRET_TOKEN},
        },
        status=201,
    )


def post_update(
    client: TestClient, inbox: dict[str, Any], update: Any, secret: str | None = SECRET_TOKEN
) -> httpx.Response:
    """POST an update as Telegram does, with the secret token given to setWebhook."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return client.post(f"/webhooks/telegram/{inbox['id']}", json=update, headers=headers)


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def conversation_messages(api: Api) -> list[dict[str, Any]]:
    conversation = api.get("/api/inbox/conversations?queue=all")["conversations"][0]
    return api.get(f"/api/inbox/conversations/{conversation['id']}")["messages"]


def test_a_message_to_the_bot_opens_a_conversation_with_its_identifiers(
    client: TestClient, admin_api: Api, telegram_inbox: dict[str, Any]
) -> None:
    assert telegram_inbox["webhook_url"].endswith(f"/webhooks/telegram/{telegram_inbox['id']}")
    response = post_update(client, telegram_inbox, text_update(938521001, "Olá! Is it shipped?"))
    assert response.status_code == 200
    assert response.json() == {"ok": True}

    queue = admin_api.get("/api/inbox/conversations?queue=all")["conversations"]
    assert len(queue) == 1
    assert queue[0]["channel"] == "telegram"
    assert queue[0]["preview"]["body"] == "Olá! Is it shipped?"
    [message] = conversation_messages(admin_api)
    assert message["direction"] == "in"
    assert message["contact"] == str(ANA["id"])
    assert message["sender_name"] == "Ana Lima"

    profile = admin_api.get(f"/api/profiles/lookup?kind=telegram_id&value={ANA['id']}")
    identities = admin_api.get(f"/api/profiles/{profile['id']}/identities")["identities"]
    assert {"kind": "telegram_id", "value": str(ANA["id"])} in [
        {"kind": i["kind"], "value": i["value"]} for i in identities
    ]
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    [received] = [e for e in timeline if e["event"] == "Message Received"]
    assert received["channel"] == "Telegram"
    assert received["properties"]["direction"] == "inbound"


def test_photos_documents_and_edits_are_kept(
    client: TestClient, admin_api: Api, telegram_inbox: dict[str, Any]
) -> None:
    for update in (
        text_update(1, "My parcel arrived broken"),
        photo_update(2, "This is the box"),
        document_update(3),
        edited_update(4, "My parcel arrived badly broken"),
    ):
        assert post_update(client, telegram_inbox, update).status_code == 200

    first, photo, document, edited = conversation_messages(admin_api)
    assert first["body"] == "My parcel arrived broken"
    assert photo["body"] == "This is the box"
    assert photo["attachments"] == [
        {
            "type": "photo",
            "file_id": "AgACAgQAAxkBAAIBY2Z_large",
            "file_unique_id": "AQAD1280",
            "file_size": 131209,
            "width": 1280,
            "height": 960,
        }
    ]
    assert document["attachments"] == [
        {
            "type": "document",
            "file_id": "BQACAgQAAxkBAAIBZGZ_document",
            "file_unique_id": "AgADdocument",
            "file_name": "invoice-1043.pdf",
            "mime_type": "application/pdf",
            "file_size": 48213,
        }
    ]
    assert edited["body"] == "(edited) My parcel arrived badly broken"
    assert len(admin_api.get("/api/inbox/conversations?queue=all")["conversations"]) == 1


def test_a_bad_or_missing_secret_token_is_refused_and_stores_nothing(
    client: TestClient, engine: sa.Engine, admin_api: Api, telegram_inbox: dict[str, Any]
) -> None:
    update = text_update(77, "hello")
    for secret in ("not-the-secret", None, ""):
        response = post_update(client, telegram_inbox, update, secret=secret)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "bad_secret_token"
    no_secret = admin_api.post(
        "/api/inbox/inboxes",
        {"channel": "telegram", "name": "Bot without a secret", "secrets": {"bot_token": "1:x"}},
        status=201,
    )
    assert post_update(client, no_secret, update, secret="").status_code == 403
    assert post_update(client, no_secret, update, secret="anything").status_code == 403
    assert count(engine, messages) == 0
    assert count(engine, webhook_receipts) == 0
    assert count(engine, webhook_rejections) == 5

    unknown = {"id": str(uuid.uuid4())}
    assert post_update(client, unknown, update).status_code == 404


def test_a_replayed_update_is_stored_once(
    client: TestClient, engine: sa.Engine, admin_api: Api, telegram_inbox: dict[str, Any]
) -> None:
    update = text_update(500, "hello twice")
    for _ in range(3):
        assert post_update(client, telegram_inbox, update).status_code == 200
    # the same message under another update id (a bot re-registered) is still one message
    assert post_update(client, telegram_inbox, {**update, "update_id": 501}).status_code == 200
    assert post_update(client, telegram_inbox, member_update(502)).status_code == 200
    assert count(engine, messages) == 1
    assert count(engine, webhook_receipts) == 3
    profile = admin_api.get(f"/api/profiles/lookup?kind=telegram_id&value={ANA['id']}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    assert len([e for e in timeline if e["event"] == "Message Received"]) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{not json", "body"),
        ([1, 2], "body"),
        ({"message": {}}, "update_id"),
        ({"update_id": "9"}, "update_id"),
        ({"update_id": 9, "message": "hi"}, "message"),
        ({"update_id": 9, "message": {"message_id": 1, "date": 1}}, "message.chat.id"),
        ({"update_id": 9, "message": {"chat": {"id": 5}, "date": 1}}, "message.message_id"),
        (
            {"update_id": 9, "edited_message": {"message_id": 1, "chat": {"id": 5}}},
            "edited_message.date",
        ),
        (
            {"update_id": 9, "message": {"message_id": 1, "chat": {"id": 5}, "date": 1, "text": 3}},
            "message.text",
        ),
    ],
)
def test_a_malformed_update_is_a_clear_400_and_stores_nothing(
    client: TestClient,
    engine: sa.Engine,
    telegram_inbox: dict[str, Any],
    payload: Any,
    field: str,
) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET_TOKEN}
    url = f"/webhooks/telegram/{telegram_inbox['id']}"
    if isinstance(payload, bytes):
        response = client.post(url, content=payload, headers=headers)
    else:
        response = client.post(url, json=payload, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert count(engine, messages) == 0
    assert count(engine, webhook_receipts) == 0
    # the update was not marked as handled: Telegram's retry of a good one is stored
    assert post_update(client, telegram_inbox, text_update(9, "retried")).status_code == 200
    assert count(engine, messages) == 1


def test_a_reply_reaches_the_bot_api(
    client: TestClient,
    admin_api: Api,
    telegram_inbox: dict[str, Any],
    bot_server: ProviderServer,
) -> None:
    post_update(client, telegram_inbox, text_update(10, "Where is my parcel?"))
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    sent = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages",
        {"body": "It left our warehouse this morning."},
        status=201,
    )
    request = eventually(lambda: bot_server.requests)[0]
    assert request.method == "POST"
    assert request.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {"chat_id": ANA["id"], "text": "It left our warehouse this morning."}

    def message() -> dict[str, Any]:
        detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
        return next(m for m in detail["messages"] if m["id"] == sent["id"])

    eventually(lambda: message()["status"] == "sent")
    with client.app.state.engine.connect() as conn:
        provider_id = conn.execute(
            sa.select(messages.c.provider_id).where(messages.c.direction == "out")
        ).scalar_one()
    assert provider_id.isdigit()


def test_a_user_who_blocked_the_bot_fails_at_once_without_retries(
    client: TestClient,
    engine: sa.Engine,
    admin_api: Api,
    telegram_inbox: dict[str, Any],
    bot_server: ProviderServer,
) -> None:
    blocked = {**ANA, "id": BLOCKED_CHAT, "first_name": "Bruno", "username": "bruno"}
    post_update(client, telegram_inbox, text_update(20, "Stop messaging me", user=blocked))
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    sent = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages", {"body": "Sorry!"}, status=201
    )

    def state() -> tuple[str, int]:
        with engine.connect() as conn:
            row = conn.execute(sa.select(outbox.c.state, outbox.c.attempts)).one()
            return row.state, row.attempts

    eventually(lambda: state()[0] == "failed")
    assert state() == ("failed", 1)
    assert len(bot_server.requests) == 1
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    failed = next(m for m in detail["messages"] if m["id"] == sent["id"])
    assert failed["status"] == "failed"
    assert "bot was blocked by the user" in failed["error"]


def test_a_long_reply_goes_as_several_messages(bot_server: ProviderServer) -> None:
    inbox = Inbox(
        id=uuid.uuid4(),
        name="bot",
        channel="telegram",
        source_id=uuid.uuid4(),
        team_id=None,
        options={"api_url": bot_server.url},
        secrets={"bot_token": BOT_TOKEN},
    )
    body = "a" * MAX_TEXT + "b" * 10
    outgoing = Outgoing(uuid.uuid4(), str(ANA["id"]), body, conversation_token="t")
    with httpx.Client() as http:
        first = send(inbox, outgoing, InboxSettings(), http)
    assert [r.json["text"] for r in bot_server.requests] == ["a" * MAX_TEXT, "b" * 10]
    assert first.isdigit()
