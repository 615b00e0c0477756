"""WhatsApp Cloud API, Messenger and Instagram: Meta's signed webhook envelopes in, the Graph
API out, delivery statuses, and one customer across WhatsApp and SMS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import Api
from tests.inbox.conftest import eventually, post_twilio, twilio_sms
from tests.inbox.meta_payloads import (
    ACCESS_TOKEN,
    APP_SECRET,
    IG_ACCOUNT_ID,
    PAGE_ID,
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    graph_answer,
    messaging,
    messaging_text,
    post_meta,
    wamid,
    whatsapp_messages,
    whatsapp_status,
    whatsapp_text,
)
from tests.inbox.providers import ProviderServer, Received

from plait.core.settings import InboxSettings
from plait.inbox.connectors import DeliveryFailed, Outgoing
from plait.inbox.connectors.meta import send
from plait.inbox.inboxes import Inbox
from plait.inbox.schema import messages, webhook_rejections

WA_ID = "14155550123"
PHONE = "+14155550123"
BSUID = "US.13491208655302741918"
PSID = "6534512345678901"
IGSID = "17841400000000001"


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@pytest.fixture
def graph() -> Iterator[ProviderServer]:
    """Meta's Graph API on loopback."""
    server = ProviderServer(graph_answer)
    yield server
    server.close()


def _meta_inbox(admin_api: Api, channel: str, name: str, options: dict[str, str]) -> Any:
    return admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": channel,
            "name": name,
            "team": "Support",
            "options": options,
            "secrets": {
                "app_secret": APP_SECRET,
                "verify_token": VERIFY_TOKEN,
                "access_token": ACCESS_TOKEN,
            },
        },
        status=201,
    )


@pytest.fixture
def whatsapp_inbox(admin_api: Api, graph: ProviderServer) -> dict[str, Any]:
    return _meta_inbox(
        admin_api,
        "whatsapp",
        "Shop WhatsApp",
        {"phone_number_id": PHONE_NUMBER_ID, "api_url": graph.url},
    )


@pytest.fixture
def messenger_inbox(admin_api: Api, graph: ProviderServer) -> dict[str, Any]:
    options = {"page_id": PAGE_ID, "api_url": graph.url}
    return _meta_inbox(admin_api, "messenger", "Shop Messenger", options)


@pytest.fixture
def instagram_inbox(admin_api: Api, graph: ProviderServer) -> dict[str, Any]:
    return _meta_inbox(admin_api, "instagram", "Shop Instagram", {"api_url": graph.url})


def verify(client: TestClient, inbox: dict[str, Any], token: str, mode: str = "subscribe") -> Any:
    params = {"hub.mode": mode, "hub.challenge": "1158201444", "hub.verify_token": token}
    return client.get(f"/webhooks/meta/{inbox['id']}", params=params)


def detail_of(admin_api: Api, conversation_id: str) -> dict[str, Any]:
    return admin_api.get(f"/api/inbox/conversations/{conversation_id}")


def test_the_subscription_check_echoes_the_challenge_only_for_the_verify_token(
    client: TestClient, engine: sa.Engine, whatsapp_inbox: dict[str, Any]
) -> None:
    assert whatsapp_inbox["webhook_path"] == f"/webhooks/meta/{whatsapp_inbox['id']}"
    good = verify(client, whatsapp_inbox, VERIFY_TOKEN)
    assert good.status_code == 200
    assert good.headers["content-type"].startswith("text/plain")
    assert good.text == "1158201444"

    wrong = verify(client, whatsapp_inbox, "not-the-verify-token")
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "bad_verify_token"
    assert verify(client, whatsapp_inbox, VERIFY_TOKEN, mode="unsubscribe").status_code == 403
    assert client.get(f"/webhooks/meta/{whatsapp_inbox['id']}").status_code == 403
    assert count(engine, webhook_rejections) == 3


def test_a_webhook_for_no_meta_inbox_is_not_found(
    client: TestClient, sms_inbox: dict[str, Any]
) -> None:
    for inbox_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", sms_inbox["id"]):
        assert verify(client, {"id": inbox_id}, VERIFY_TOKEN).status_code == 404
        assert post_meta(client, {"id": inbox_id}, whatsapp_text(WA_ID, "x")).status_code == 404


def test_a_whatsapp_text_stores_wa_id_bsuid_and_phone_as_separate_identifiers(
    client: TestClient, admin_api: Api, whatsapp_inbox: dict[str, Any]
) -> None:
    payload = whatsapp_text(WA_ID, "Do you ship to Lisbon?", name="Ana Souza", bsuid=BSUID)
    response = post_meta(client, whatsapp_inbox, payload)
    assert response.status_code == 200, response.text

    conversation = admin_api.get("/api/inbox/conversations?queue=all")["conversations"]
    assert len(conversation) == 1
    assert conversation[0]["channel"] == "whatsapp"
    assert conversation[0]["preview"]["body"] == "Do you ship to Lisbon?"
    message = detail_of(admin_api, conversation[0]["id"])["messages"][0]
    assert (message["contact"], message["sender_name"]) == (WA_ID, "Ana Souza")

    by_wa_id = admin_api.get(f"/api/profiles/lookup?kind=wa_id&value={WA_ID}")
    by_bsuid = admin_api.get(f"/api/profiles/lookup?kind=whatsapp_bsuid&value={BSUID}")
    by_phone = admin_api.get("/api/profiles/lookup?kind=phone&value=%2B14155550123")
    assert by_wa_id["id"] == by_bsuid["id"] == by_phone["id"]
    identities = admin_api.get(f"/api/profiles/{by_wa_id['id']}/identities")["identities"]
    found = {(item["kind"], item["value"]) for item in identities}
    assert {("wa_id", WA_ID), ("whatsapp_bsuid", BSUID), ("phone", PHONE)} <= found

    timeline = admin_api.get(f"/api/profiles/{by_wa_id['id']}/timeline")["events"]
    received = [e for e in timeline if e["event"] == "Message Received"]
    assert len(received) == 1
    assert received[0]["channel"] == "WhatsApp"
    assert received[0]["properties"]["phone_number_id"] == PHONE_NUMBER_ID


def test_one_delivery_carrying_many_messages_stores_each(
    client: TestClient, engine: sa.Engine, admin_api: Api, whatsapp_inbox: dict[str, Any]
) -> None:
    first = whatsapp_text(WA_ID, "Hello", bsuid=BSUID)
    second = whatsapp_text("447700900123", "Bonjour", name="Marc")
    image = {
        "from": WA_ID,
        "id": wamid(),
        "timestamp": str(int(time.time())),
        "type": "image",
        "image": {"caption": "this one", "mime_type": "image/jpeg", "id": "2754859441498128"},
    }
    first["entry"][0]["changes"][0]["value"]["messages"].append(image)
    first["entry"].append(second["entry"][0])
    assert post_meta(client, whatsapp_inbox, first).status_code == 200
    assert count(engine, messages) == 3

    queue = admin_api.get("/api/inbox/conversations?queue=all")["conversations"]
    assert len(queue) == 2
    ana = admin_api.get(f"/api/profiles/lookup?kind=wa_id&value={WA_ID}")
    mine = next(c for c in queue if c["customer_id"] == ana["id"])
    bodies = [m["body"] for m in detail_of(admin_api, mine["id"])["messages"]]
    assert bodies == ["Hello", "this one"]
    photo = detail_of(admin_api, mine["id"])["messages"][1]["attachments"]
    assert photo == [{"type": "image", "id": "2754859441498128", "mime_type": "image/jpeg"}]


def test_messenger_and_instagram_messages_reach_their_customers(
    client: TestClient,
    engine: sa.Engine,
    admin_api: Api,
    messenger_inbox: dict[str, Any],
    instagram_inbox: dict[str, Any],
) -> None:
    picture = messaging_text(PSID, PAGE_ID, "")
    picture["message"]["attachments"] = [
        {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/t1.jpg"}}
    ]
    question = messaging_text(PSID, PAGE_ID, "Is the blue one in stock?")
    picture["timestamp"] = question["timestamp"] + 1000  # the picture follows the question
    page = messaging(
        "page",
        PAGE_ID,
        question,
        picture,
        messaging_text(PSID, PAGE_ID, "Yes, it is!", echo=True),
    )
    assert post_meta(client, messenger_inbox, page).status_code == 200
    instagram = messaging(
        "instagram", IG_ACCOUNT_ID, messaging_text(IGSID, IG_ACCOUNT_ID, "Saw your reel!")
    )
    assert post_meta(client, instagram_inbox, instagram).status_code == 200
    assert count(engine, messages) == 3  # the page's echo is not a customer message

    psid = admin_api.get(f"/api/profiles/lookup?kind=messenger_psid&value={PSID}")
    igsid = admin_api.get(f"/api/profiles/lookup?kind=instagram_id&value={IGSID}")
    assert psid["id"] != igsid["id"]
    queue = admin_api.get("/api/inbox/conversations?queue=all")["conversations"]
    assert sorted(c["channel"] for c in queue) == ["instagram", "messenger"]
    messenger = next(c for c in queue if c["channel"] == "messenger")
    thread = detail_of(admin_api, messenger["id"])["messages"]
    assert [m["body"] for m in thread] == ["Is the blue one in stock?", ""]
    assert thread[1]["attachments"][0]["type"] == "image"
    assert all(m["contact"] == PSID for m in thread)
    timeline = admin_api.get(f"/api/profiles/{igsid['id']}/timeline")["events"]
    assert [e["channel"] for e in timeline if e["event"] == "Message Received"] == ["Instagram"]


def test_a_bad_signature_is_refused_logged_and_stores_nothing(
    client: TestClient, engine: sa.Engine, whatsapp_inbox: dict[str, Any]
) -> None:
    payload = whatsapp_text(WA_ID, "hello", bsuid=BSUID)
    wrong = post_meta(client, whatsapp_inbox, payload, secret="not-the-app-secret")
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "bad_signature"
    body = json.dumps(payload).encode()
    signed = post_meta(client, whatsapp_inbox, body).request.headers["x-hub-signature-256"]
    assert count(engine, messages) == 1
    tampered = body.replace(b"hello", b"HELLO")
    url = f"/webhooks/meta/{whatsapp_inbox['id']}"
    headers = {"X-Hub-Signature-256": signed, "Content-Type": "application/json"}
    assert client.post(url, content=tampered, headers=headers).status_code == 403
    assert client.post(url, content=body).status_code == 403
    assert count(engine, messages) == 1
    assert count(engine, webhook_rejections) == 3


def test_a_replayed_webhook_is_stored_once(
    client: TestClient, engine: sa.Engine, admin_api: Api, whatsapp_inbox: dict[str, Any]
) -> None:
    payload = whatsapp_text(WA_ID, "hello twice", bsuid=BSUID)
    for _ in range(3):
        assert post_meta(client, whatsapp_inbox, payload).status_code == 200
    assert count(engine, messages) == 1
    profile = admin_api.get(f"/api/profiles/lookup?kind=wa_id&value={WA_ID}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    assert len([e for e in timeline if e["event"] == "Message Received"]) == 1


def test_a_malformed_envelope_is_a_clear_400_and_stores_nothing(
    client: TestClient,
    engine: sa.Engine,
    whatsapp_inbox: dict[str, Any],
    messenger_inbox: dict[str, Any],
) -> None:
    not_json = post_meta(client, whatsapp_inbox, b'{"object": "whatsapp_business_account",')
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "malformed_payload"
    assert "not JSON" in not_json.json()["error"]["message"]

    good = whatsapp_text(WA_ID, "I am fine")
    broken = whatsapp_text(WA_ID, "I have no id")
    del broken["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    good["entry"].append(broken["entry"][0])
    response = post_meta(client, whatsapp_inbox, good)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "entry[1].value.messages[0].id"
    assert "has no id" in error["message"]

    wrong_object = post_meta(client, whatsapp_inbox, messaging("page", PAGE_ID))
    assert wrong_object.status_code == 400
    assert "whatsapp_business_account" in wrong_object.json()["error"]["message"]
    no_entries = post_meta(client, messenger_inbox, {"object": "page", "entry": {"id": PAGE_ID}})
    assert no_entries.status_code == 400
    bad_time = messaging("page", PAGE_ID, {**messaging_text(PSID, PAGE_ID, "x"), "timestamp": "?"})
    assert post_meta(client, messenger_inbox, bad_time).status_code == 400
    assert count(engine, messages) == 0


def test_a_whatsapp_reply_reaches_the_graph_api_and_follows_its_statuses(
    client: TestClient, admin_api: Api, whatsapp_inbox: dict[str, Any], graph: ProviderServer
) -> None:
    post_meta(client, whatsapp_inbox, whatsapp_text(WA_ID, "Where is my parcel?", bsuid=BSUID))
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    sent = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages",
        {"body": "It left this morning."},
        status=201,
    )
    request: Received = eventually(lambda: graph.requests)[0]
    assert (request.method, request.path) == ("POST", f"/{PHONE_NUMBER_ID}/messages")
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_ID,
        "type": "text",
        "text": {"body": "It left this morning."},
    }

    def message() -> dict[str, Any]:
        thread = detail_of(admin_api, conversation["id"])["messages"]
        return next(m for m in thread if m["id"] == sent["id"])

    eventually(lambda: message()["status"] == "sent")
    with client.app.state.engine.connect() as conn:
        provider_id = conn.execute(
            sa.select(messages.c.provider_id).where(messages.c.direction == "out")
        ).scalar_one()
    assert provider_id.startswith("wamid.")
    for status in ("delivered", "read", "read", "sent"):  # replayed, then a late "sent"
        callback = whatsapp_status(provider_id, status, WA_ID)
        assert post_meta(client, whatsapp_inbox, callback).status_code == 200
        if status == "delivered":
            assert message()["status"] == "delivered"
    assert message()["status"] == "read"

    errors = [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement"}]
    failed = whatsapp_status(provider_id, "failed", WA_ID, errors=errors)
    assert post_meta(client, whatsapp_inbox, failed).status_code == 200
    assert (message()["status"], message()["error"]) == ("failed", "131047: Re-engagement message")


def test_a_messenger_reply_reaches_the_page_and_its_receipts_mark_it_read(
    client: TestClient,
    admin_api: Api,
    messenger_inbox: dict[str, Any],
    graph: ProviderServer,
) -> None:
    post_meta(
        client, messenger_inbox, messaging("page", PAGE_ID, messaging_text(PSID, PAGE_ID, "hi"))
    )
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    sent = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages", {"body": "Hello!"}, status=201
    )
    request: Received = eventually(lambda: graph.requests)[0]
    assert request.path == f"/{PAGE_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.json == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hello!"},
    }

    def status() -> str:
        thread = detail_of(admin_api, conversation["id"])["messages"]
        return next(m for m in thread if m["id"] == sent["id"])["status"]

    eventually(lambda: status() == "sent")
    with client.app.state.engine.connect() as conn:
        mid = conn.execute(
            sa.select(messages.c.provider_id).where(messages.c.direction == "out")
        ).scalar_one()
    receipt = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}}
    delivery = {**receipt, "delivery": {"mids": [mid], "watermark": 1458668856253}}
    assert (
        post_meta(client, messenger_inbox, messaging("page", PAGE_ID, delivery)).status_code == 200
    )
    assert status() == "delivered"
    now = int(time.time() * 1000)
    read = {**receipt, "timestamp": now, "read": {"watermark": now + 1000}}
    assert post_meta(client, messenger_inbox, messaging("page", PAGE_ID, read)).status_code == 200
    assert status() == "read"


def test_an_instagram_reply_goes_to_me_messages_without_a_page_id(
    client: TestClient, admin_api: Api, instagram_inbox: dict[str, Any], graph: ProviderServer
) -> None:
    payload = messaging("instagram", IG_ACCOUNT_ID, messaging_text(IGSID, IG_ACCOUNT_ID, "hey"))
    post_meta(client, instagram_inbox, payload)
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages", {"body": "Hi!"}, status=201
    )
    request: Received = eventually(lambda: graph.requests)[0]
    assert request.path == "/me/messages"
    assert request.json["recipient"] == {"id": IGSID}


def test_a_customer_who_whatsapps_then_texts_is_one_profile_with_one_conversation(
    client: TestClient,
    admin_api: Api,
    whatsapp_inbox: dict[str, Any],
    sms_inbox: dict[str, Any],
) -> None:
    whatsapp = whatsapp_text(WA_ID, "My order is late", bsuid=BSUID)
    assert post_meta(client, whatsapp_inbox, whatsapp).status_code == 200
    sms = post_twilio(client, sms_inbox, twilio_sms(PHONE, "Texting too, in case"))
    assert sms.status_code == 200

    by_wa_id = admin_api.get(f"/api/profiles/lookup?kind=wa_id&value={WA_ID}")
    by_phone = admin_api.get("/api/profiles/lookup?kind=phone&value=%2B14155550123")
    assert by_wa_id["id"] == by_phone["id"]
    queue = admin_api.get("/api/inbox/conversations?queue=all")["conversations"]
    assert len(queue) == 1
    thread = detail_of(admin_api, queue[0]["id"])["messages"]
    assert [(m["channel"], m["body"]) for m in thread] == [
        ("whatsapp", "My order is late"),
        ("sms", "Texting too, in case"),
    ]
    timeline = admin_api.get(f"/api/profiles/{by_wa_id['id']}/timeline")["events"]
    channels = {e["channel"] for e in timeline if e["event"] == "Message Received"}
    assert channels == {"WhatsApp", "SMS"}


def _inbox(channel: str, api_url: str, **options: str) -> Inbox:
    return Inbox(
        id=uuid.uuid4(),
        name=channel,
        channel=channel,
        source_id=uuid.uuid4(),
        team_id=None,
        options={"api_url": api_url, **options},
        secrets={"access_token": ACCESS_TOKEN},
    )


def _outgoing(contact: str, body: str = "hello") -> Outgoing:
    return Outgoing(message_id=uuid.uuid4(), contact=contact, body=body, conversation_token="t")


def test_graph_api_errors_fail_for_good_or_for_now() -> None:
    answers = iter(
        [
            (400, {"error": {"message": "(#131047) Re-engagement message", "code": 131047}}),
            (400, {"error": {"message": "(#130429) Rate limit hit", "code": 130429}}),
            (500, {"error": {"message": "An unknown error occurred", "code": 1}}),
        ]
    )
    server = ProviderServer(lambda request: next(answers))
    inbox = _inbox("whatsapp", server.url, phone_number_id=PHONE_NUMBER_ID)
    try:
        with httpx.Client() as client:
            outcomes = []
            for _ in range(3):
                with pytest.raises(DeliveryFailed) as failure:
                    send(inbox, _outgoing(WA_ID), InboxSettings(), client)
                outcomes.append(failure.value.permanent)
            assert outcomes == [True, False, False]
            without_number = _inbox("whatsapp", server.url)
            with pytest.raises(DeliveryFailed, match="phone_number_id") as missing:
                send(without_number, _outgoing(WA_ID), InboxSettings(), client)
            assert missing.value.permanent
            messenger = _inbox("messenger", server.url)
            with pytest.raises(DeliveryFailed, match="2000") as long:
                send(messenger, _outgoing(PSID, "x" * 2001), InboxSettings(), client)
            assert long.value.permanent
    finally:
        server.close()
    assert len(server.requests) == 3


def test_a_whatsapp_user_known_only_by_bsuid_is_answered_by_bsuid() -> None:
    server = ProviderServer(
        lambda request: (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.X"}]})
    )
    inbox = _inbox("whatsapp", server.url, phone_number_id=PHONE_NUMBER_ID)
    try:
        with httpx.Client() as client:
            assert send(inbox, _outgoing(BSUID), InboxSettings(), client) == "wamid.X"
    finally:
        server.close()
    assert server.requests[0].json["recipient"] == BSUID
    assert "to" not in server.requests[0].json


def test_a_message_from_a_username_user_without_phone_is_kept_by_bsuid(
    client: TestClient, admin_api: Api, whatsapp_inbox: dict[str, Any]
) -> None:
    payload = whatsapp_messages(
        {
            "from_user_id": BSUID,
            "id": wamid(),
            "timestamp": "1750857384",
            "type": "text",
            "text": {"body": "hi, no number here"},
        },
        contacts=[{"profile": {"name": "Bo", "username": "@bo"}, "user_id": BSUID}],
    )
    assert post_meta(client, whatsapp_inbox, payload).status_code == 200
    profile = admin_api.get(f"/api/profiles/lookup?kind=whatsapp_bsuid&value={BSUID}")
    identities = admin_api.get(f"/api/profiles/{profile['id']}/identities")["identities"]
    assert {i["kind"] for i in identities} & {"phone", "wa_id"} == set()
    queue = admin_api.get("/api/inbox/conversations?queue=all")["conversations"]
    assert detail_of(admin_api, queue[0]["id"])["messages"][0]["contact"] == BSUID
