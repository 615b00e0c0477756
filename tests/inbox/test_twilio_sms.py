"""SMS through Twilio: signed webhooks in, the REST API out, statuses and retries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import Api
from tests.inbox.conftest import SHOP_NUMBER, eventually, post_twilio, twilio_sms
from tests.inbox.providers import ProviderServer

from plait.inbox.schema import messages, outbox, webhook_rejections

CUSTOMER = "+14155550123"


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_an_inbound_sms_opens_a_conversation_on_the_customers_timeline(
    client: TestClient, admin_api: Api, sms_inbox: dict[str, Any]
) -> None:
    response = post_twilio(client, sms_inbox, twilio_sms(CUSTOMER, "Is my order shipped?"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response></Response>" in response.text

    queue = admin_api.get("/api/inbox/conversations?queue=all")["conversations"]
    assert len(queue) == 1
    conversation = queue[0]
    assert conversation["channel"] == "sms"
    assert conversation["preview"]["body"] == "Is my order shipped?"
    assert conversation["sla"]["first_response"] in ("ok", "at_risk")

    profile = admin_api.get(f"/api/profiles/lookup?kind=phone&value={CUSTOMER}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    received = [e for e in timeline if e["event"] == "Message Received"]
    assert len(received) == 1
    assert received[0]["channel"] == "SMS"
    assert received[0]["properties"]["direction"] == "inbound"


def test_a_bad_signature_is_refused_logged_and_stores_nothing(
    client: TestClient, engine: sa.Engine, sms_inbox: dict[str, Any]
) -> None:
    params = twilio_sms(CUSTOMER, "hello")
    response = post_twilio(client, sms_inbox, params, token="not-the-auth-token")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "bad_signature"
    tampered = client.post(
        f"/webhooks/twilio/{sms_inbox['id']}",
        data={**params, "Body": "changed"},
        headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
    )
    assert tampered.status_code == 403
    unsigned = client.post(f"/webhooks/twilio/{sms_inbox['id']}", data=params)
    assert unsigned.status_code == 403
    assert count(engine, messages) == 0
    assert count(engine, webhook_rejections) == 3


def test_a_replayed_webhook_is_stored_once(
    client: TestClient, engine: sa.Engine, admin_api: Api, sms_inbox: dict[str, Any]
) -> None:
    params = twilio_sms(CUSTOMER, "hello twice")
    for _ in range(3):
        assert post_twilio(client, sms_inbox, params).status_code == 200
    assert count(engine, messages) == 1
    profile = admin_api.get(f"/api/profiles/lookup?kind=phone&value={CUSTOMER}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    assert len([e for e in timeline if e["event"] == "Message Received"]) == 1


def test_an_unknown_inbox_is_not_found(client: TestClient) -> None:
    url = "/webhooks/twilio/00000000-0000-0000-0000-000000000000"
    assert client.post(url, data=twilio_sms(CUSTOMER, "x")).status_code == 404
    assert client.post("/webhooks/twilio/not-a-uuid", data={}).status_code == 404


def test_a_reply_reaches_twilio_and_follows_its_status_callbacks(
    client: TestClient, admin_api: Api, sms_inbox: dict[str, Any], twilio: ProviderServer
) -> None:
    post_twilio(client, sms_inbox, twilio_sms(CUSTOMER, "Where is my parcel?"))
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    sent = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages",
        {"body": "It left our warehouse this morning."},
        status=201,
    )
    assert sent["status"] == "queued"
    request = eventually(lambda: twilio.requests)[0]
    assert request.form == {
        "To": CUSTOMER,
        "From": SHOP_NUMBER,
        "Body": "It left our warehouse this morning.",
    }
    assert request.headers["authorization"].startswith("Basic ")

    def message() -> dict[str, Any]:
        detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
        return next(m for m in detail["messages"] if m["id"] == sent["id"])

    eventually(lambda: message()["status"] == "sent")
    with client.app.state.engine.connect() as conn:
        sid = conn.execute(
            sa.select(messages.c.provider_id).where(messages.c.direction == "out")
        ).scalar_one()
    for status in ("delivered", "sent"):  # a late "sent" must not undo "delivered"
        callback = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC", "To": CUSTOMER}
        assert post_twilio(client, sms_inbox, callback).status_code == 200
    assert message()["status"] == "delivered"
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    assert detail["first_response_at"] is not None
    assert detail["waiting_since"] is None


def test_replies_wait_in_the_outbox_while_twilio_is_down(
    client: TestClient,
    engine: sa.Engine,
    admin_api: Api,
    sms_inbox: dict[str, Any],
    twilio: ProviderServer,
) -> None:
    post_twilio(client, sms_inbox, twilio_sms(CUSTOMER, "Anyone there?"))
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    twilio.failing = True
    sent = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages", {"body": "Yes!"}, status=201
    )

    def state() -> tuple[str, int]:
        with engine.connect() as conn:
            row = conn.execute(sa.select(outbox.c.state, outbox.c.attempts)).one()
            return row.state, row.attempts

    eventually(lambda: state() == ("failed", 3))
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    failed = next(m for m in detail["messages"] if m["id"] == sent["id"])
    assert failed["status"] == "failed"
    assert "503" in failed["error"]
    assert twilio.requests == []

    twilio.failing = False
    admin_api.post(f"/api/inbox/messages/{sent['id']}/retry")
    eventually(lambda: state()[0] == "done")
    assert [r.form["Body"] for r in twilio.requests] == ["Yes!"]
