"""Phone call logs (one by one and CSV imports) and the generic API channel (messages in by
token, replies out to a signed callback)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import Api, add_user
from tests.inbox.conftest import eventually, post_twilio, twilio_sms
from tests.inbox.providers import ProviderServer, Received

from plait.core.clock import isoformat, utcnow
from plait.core.users import users
from plait.inbox.schema import conversations, messages, outbox

CUSTOMER = "+14155550123"
SIGNING_SECRET = "whsec_plait_api_channel_0123456789"


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def ago(minutes: float) -> str:
    return isoformat(utcnow() - timedelta(minutes=minutes))


@pytest.fixture
def agent_api(token_api: Callable[[str], Api]) -> Api:
    return token_api("agent")


# --- phone ---------------------------------------------------------------------------------


@pytest.fixture
def phone_inbox(admin_api: Api) -> dict[str, Any]:
    return admin_api.post(
        "/api/inbox/inboxes",
        {"channel": "phone", "name": "Contact centre", "team": "Support"},
        status=201,
    )


def a_call(**fields: Any) -> dict[str, Any]:
    """A call as an agent logs it (the number in national format)."""
    return {
        "phone": "(415) 555-0123",
        "direction": "inbound",
        "started_at": ago(10),
        "duration_seconds": 200,
        "summary": "Asked about a late delivery",
        "notes": "Parcel stuck at the depot; promised a call back tomorrow.",
        "outcome": "answered",
        "agent": "agent@example.com",
        "call_id": "CA0001",
        **fields,
    }


def calls_url(inbox: dict[str, Any]) -> str:
    return f"/api/inbox/inboxes/{inbox['id']}/calls"


def detail(api: Api, conversation_id: str) -> dict[str, Any]:
    return api.get(f"/api/inbox/conversations/{conversation_id}")


def test_a_logged_call_is_a_contact_on_the_timeline(
    client: TestClient, engine: sa.Engine, admin_api: Api, agent_api: Api, phone_inbox: dict
) -> None:
    agent = add_user(engine, "agent")
    logged = agent_api.post(calls_url(phone_inbox), a_call(), status=201)
    assert logged["phone"] == CUSTOMER
    assert logged["duplicate"] is False

    conversation = detail(admin_api, logged["conversation_id"])
    [message] = conversation["messages"]
    assert message["id"] == logged["id"]
    assert message["direction"] == "in"
    assert message["channel"] == "phone"
    assert message["contact"] == CUSTOMER
    assert message["body"] == (
        "Asked about a late delivery\n\nParcel stuck at the depot; promised a call back tomorrow."
    )
    with engine.connect() as conn:
        author = conn.execute(sa.select(messages.c.author_id)).scalar_one()
        user = conn.execute(sa.select(users.c.id).where(users.c.email == agent)).scalar_one()
    assert author == user

    profile = admin_api.get(f"/api/profiles/lookup?kind=phone&value={CUSTOMER}")
    [call] = admin_api.get(f"/api/profiles/{profile['id']}/timeline?event=Call Completed")["events"]
    assert call["channel"] == "Phone"
    assert call["properties"]["direction"] == "inbound"
    assert call["properties"]["duration_seconds"] == 200
    assert call["properties"]["outcome"] == "answered"
    customer = admin_api.get(f"/api/profiles/{profile['id']}")
    assert customer["last_contact"]["event"] == "Call Completed"
    assert customer["last_contact"]["channel"] == "Phone"
    assert customer["last_contact"]["direction"] == "inbound"
    assert customer["last_contact"]["summary"].startswith("Asked about a late delivery")
    assert customer["last_touch_channel"] == "Phone"


def test_a_customer_who_texted_then_called_has_one_conversation(
    client: TestClient,
    engine: sa.Engine,
    admin_api: Api,
    agent_api: Api,
    phone_inbox: dict[str, Any],
    sms_inbox: dict[str, Any],
    twilio: ProviderServer,
) -> None:
    post_twilio(client, sms_inbox, twilio_sms(CUSTOMER, "Where is my parcel?"))
    inbound = agent_api.post(calls_url(phone_inbox), a_call(started_at=ago(0)), status=201)
    outbound = agent_api.post(
        calls_url(phone_inbox),
        a_call(direction="outbound", call_id="CA0002", started_at=ago(-0.01), notes="Called back"),
        status=201,
    )
    assert inbound["conversation_id"] == outbound["conversation_id"]
    conversation = detail(admin_api, inbound["conversation_id"])
    assert [(m["channel"], m["direction"]) for m in conversation["messages"]] == [
        ("sms", "in"),
        ("phone", "in"),
        ("phone", "out"),
    ]
    assert conversation["messages"][2]["body"] == "Asked about a late delivery\n\nCalled back"
    # the call back answered the customer
    assert conversation["first_response_at"] is not None
    assert conversation["waiting_since"] is None

    # nothing can be sent through the phone inbox: the reply is refused, not queued
    url = f"/api/inbox/conversations/{conversation['id']}/messages"
    refused = admin_api.post(url, {"body": "Hello?"}, status=400)
    assert refused["error"]["code"] == "not_deliverable"
    assert "log the call" in refused["error"]["message"]
    assert count(engine, outbox) == 0
    admin_api.post(url, {"body": "It ships today.", "inbox_id": sms_inbox["id"]}, status=201)
    assert eventually(lambda: twilio.requests)[0].form["To"] == CUSTOMER


def test_an_outbound_call_to_a_new_number_starts_an_answered_conversation(
    admin_api: Api, agent_api: Api, phone_inbox: dict[str, Any]
) -> None:
    logged = agent_api.post(
        calls_url(phone_inbox),
        {"phone": "+442079460958", "direction": "outbound", "started_at": ago(5), "name": "Tom"},
        status=201,
    )
    conversation = detail(admin_api, logged["conversation_id"])
    [message] = conversation["messages"]
    assert message["direction"] == "out"
    assert message["body"] == "Outbound call, completed, 0 min 0 s"
    assert conversation["status"] == "open"
    assert conversation["waiting_since"] is None
    assert conversation["first_response_at"] is not None
    profile = admin_api.get("/api/profiles/lookup?kind=phone&value=%2B442079460958")
    assert profile["traits"]["name"] == "Tom"
    assert profile["last_contact"]["direction"] == "outbound"


def test_a_call_is_logged_once(
    engine: sa.Engine, agent_api: Api, phone_inbox: dict[str, Any]
) -> None:
    first = agent_api.post(calls_url(phone_inbox), a_call(), status=201)
    again = agent_api.post(calls_url(phone_inbox), a_call(), status=200)
    assert again["duplicate"] is True
    assert again["id"] == first["id"]
    no_id = a_call(call_id=None, started_at="2024-05-02T09:30:00Z")
    agent_api.post(calls_url(phone_inbox), no_id, status=201)
    agent_api.post(calls_url(phone_inbox), {**no_id, "phone": "+1 415 555 0123"}, status=200)
    assert count(engine, messages) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phone": "12"}, "phone"),
        ({"phone": "call me maybe"}, "phone"),
        ({"direction": "sideways"}, "direction"),
        ({"started_at": None}, "started_at"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"started_at": isoformat(utcnow() + timedelta(days=1))}, "started_at"),
        ({"duration_seconds": -5}, "duration_seconds"),
        ({"email": "not-an-email"}, "email"),
        ({"notes": "a\x00b"}, "notes"),
        ({"recording": "s3://calls/1.wav"}, "recording"),
    ],
)
def test_a_bad_call_is_a_clear_400_and_stores_nothing(
    engine: sa.Engine,
    agent_api: Api,
    phone_inbox: dict[str, Any],
    change: dict[str, Any],
    field: str,
) -> None:
    body = {k: v for k, v in a_call(**change).items() if v is not None}
    error = agent_api.post(calls_url(phone_inbox), body, status=400)["error"]
    assert error["field"] == field
    assert count(engine, messages) == 0


def test_only_agents_log_calls_and_only_on_phone_inboxes(
    client: TestClient,
    token_api: Callable[[str], Api],
    agent_api: Api,
    phone_inbox: dict[str, Any],
    sms_inbox: dict[str, Any],
) -> None:
    token_api("marketer").post(calls_url(phone_inbox), a_call(), status=403)
    assert client.post(calls_url(phone_inbox), json=a_call()).status_code == 401
    agent_api.post(calls_url(sms_inbox), a_call(), status=404)


CSV_GOOD = "\n".join(
    [
        "phone,direction,started_at,duration_seconds,summary,notes,outcome,agent,call_id,name",
        "(415) 555-0123,inbound,2024-05-02T09:30:00Z,185,Late delivery,"
        '"Depot delay, see ticket",answered,agent@example.com,CA1,Ana Lima',
        "+44 20 7946 0958,outbound,2024-05-02T10:00:00Z,62,Renewal,,voicemail,,CA2,",
        "4155550123,outbound,2024-05-02 11:15:00,300,Call back,Delivered today,answered,,,",
    ]
)

CSV_BAD = """phone,direction,started_at,duration_seconds,notes
+14155550123,inbound,2024-05-02T09:30:00Z,185,fine
not a number,inbound,2024-05-02T09:31:00Z,10,bad phone

+14155550123,sideways,2024-05-02T09:32:00Z,10,bad direction
+14155550123,inbound,2024-05-02T09:33:00Z,ten,bad duration
"""


def post_csv(api: Api, inbox: dict[str, Any], text: str) -> httpx.Response:
    return api.client.post(
        f"/api/inbox/inboxes/{inbox['id']}/calls:import",
        content=text.encode(),
        headers={**api.headers, "content-type": "text/csv"},
    )


def test_a_csv_of_calls_is_imported_once(
    engine: sa.Engine, admin_api: Api, agent_api: Api, phone_inbox: dict[str, Any]
) -> None:
    response = post_csv(agent_api, phone_inbox, CSV_GOOD)
    assert response.status_code == 201, response.text
    assert response.json() == {"calls": 3, "imported": 3, "duplicates": 0}
    again = post_csv(agent_api, phone_inbox, CSV_GOOD)
    assert again.json() == {"calls": 3, "imported": 0, "duplicates": 3}
    assert count(engine, messages) == 3

    ana = admin_api.get(f"/api/profiles/lookup?kind=phone&value={CUSTOMER}")
    assert ana["traits"]["name"] == "Ana Lima"
    timeline = admin_api.get(f"/api/profiles/{ana['id']}/timeline?event=Call Completed")
    assert [e["properties"]["direction"] for e in timeline["events"]] == ["outbound", "inbound"]
    with engine.connect() as conn:
        routed = conn.execute(
            sa.select(sa.func.count()).where(messages.c.conversation_id.is_not(None))
        ).scalar_one()
        assert routed == 3
        assert conn.execute(sa.select(sa.func.count()).select_from(conversations)).scalar() == 2


def test_a_csv_with_bad_rows_imports_nothing_and_names_them(
    engine: sa.Engine, agent_api: Api, phone_inbox: dict[str, Any]
) -> None:
    response = post_csv(agent_api, phone_inbox, CSV_BAD)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "rows"
    assert [(row["row"], row["field"]) for row in error["rows"]] == [
        (3, "phone"),
        (5, "direction"),
        (6, "duration_seconds"),
    ]
    assert "row 3: phone" in error["message"]
    assert count(engine, messages) == 0

    unknown = post_csv(agent_api, phone_inbox, "phone,direction,started_at,mood\n")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["field"] == "header"
    assert "mood" in unknown.json()["error"]["message"]
    empty = post_csv(agent_api, phone_inbox, "phone,direction,started_at\n")
    assert empty.status_code == 400
    assert "no calls" in empty.json()["error"]["message"]
    latin1 = agent_api.client.post(
        f"/api/inbox/inboxes/{phone_inbox['id']}/calls:import",
        content="phone,direction,started_at,name\n+14155550123,inbound,2024-05-02,Jos\xe9\n".encode(
            "latin-1"
        ),
        headers={**agent_api.headers, "content-type": "text/csv"},
    )
    assert latin1.status_code == 400
    assert latin1.json()["error"]["message"] == "the file is not UTF-8 text"
    assert count(engine, messages) == 0


# --- the generic API channel ---------------------------------------------------------------


def _callback_answer(request: Received) -> tuple[int, Any]:
    """A receiving system that checks Plait's signature before accepting a reply."""
    expected = (
        "sha256=" + hmac.new(SIGNING_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    )
    if not hmac.compare_digest(expected, request.headers.get("x-plait-signature", "")):
        return 401, {"error": "bad signature"}
    return 202, {"id": f"ext-{request.json['id'][-6:]}", "accepted": True}


@pytest.fixture
def receiver() -> Iterator[ProviderServer]:
    server = ProviderServer(_callback_answer)
    yield server
    server.close()


def api_inbox_of(admin_api: Api, receiver: ProviderServer, name: str, secret: str) -> dict:
    return admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": "api",
            "name": name,
            "options": {"callback_url": f"{receiver.url}/plait/replies"},
            "secrets": {"signing_secret": secret},
        },
        status=201,
    )


@pytest.fixture
def api_inbox(admin_api: Api, receiver: ProviderServer) -> dict[str, Any]:
    return api_inbox_of(admin_api, receiver, "Kiosk app", SIGNING_SECRET)


def a_message(**fields: Any) -> dict[str, Any]:
    return {
        "id": "kiosk-msg-1",
        "contact": "kiosk-user-77",
        "body": "Hi, the kiosk ate my voucher",
        "traits": {"name": "Rita Silva", "email": "Rita@Example.com"},
        "external_ids": [{"type": "kiosk_id", "id": "77"}],
        "timestamp": ago(1),
        **fields,
    }


def messages_url(inbox: dict[str, Any]) -> str:
    return f"/api/inbox/inboxes/{inbox['id']}/messages"


def test_a_message_from_the_api_channel_joins_the_customer(
    engine: sa.Engine, admin_api: Api, agent_api: Api, api_inbox: dict[str, Any]
) -> None:
    received = agent_api.post(messages_url(api_inbox), a_message(), status=201)
    assert received["duplicate"] is False
    again = agent_api.post(messages_url(api_inbox), a_message(body="changed"), status=200)
    assert again == {**received, "duplicate": True}
    assert count(engine, messages) == 1

    conversation = detail(admin_api, received["conversation_id"])
    [message] = conversation["messages"]
    assert (message["channel"], message["contact"]) == ("api", "kiosk-user-77")
    assert message["sender_name"] == "Rita Silva"
    assert message["body"] == "Hi, the kiosk ate my voucher"
    profile = admin_api.get("/api/profiles/lookup?kind=email&value=rita@example.com")
    assert profile["identifiers"]["kiosk_id"] == ["77"]
    [event] = admin_api.get(f"/api/profiles/{profile['id']}/timeline?event=Message Received")[
        "events"
    ]
    assert event["properties"]["direction"] == "inbound"


def test_a_reply_is_posted_signed_to_the_callback(
    admin_api: Api, agent_api: Api, api_inbox: dict[str, Any], receiver: ProviderServer
) -> None:
    received = agent_api.post(messages_url(api_inbox), a_message(), status=201)
    url = f"/api/inbox/conversations/{received['conversation_id']}/messages"
    sent = agent_api.post(url, {"body": "A new voucher is on its way."}, status=201)

    request = eventually(lambda: receiver.requests)[0]
    assert request.path == "/plait/replies"
    assert request.headers["content-type"] == "application/json"
    signature = hmac.new(SIGNING_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-plait-signature"] == f"sha256={signature}"
    assert request.json["id"] == sent["id"]
    assert request.json["contact"] == "kiosk-user-77"
    assert request.json["body"] == "A new voucher is on its way."
    assert request.json["inbox_id"] == api_inbox["id"]
    assert request.json["conversation_token"]

    def message() -> dict[str, Any]:
        found = detail(admin_api, received["conversation_id"])["messages"]
        return next(m for m in found if m["id"] == sent["id"])

    eventually(lambda: message()["status"] == "sent")
    with admin_api.client.app.state.engine.connect() as conn:
        provider_id = conn.execute(
            sa.select(messages.c.provider_id).where(messages.c.direction == "out")
        ).scalar_one()
    assert provider_id == f"ext-{sent['id'][-6:]}"


def test_a_reply_signed_with_the_wrong_secret_is_refused_by_the_receiver(
    engine: sa.Engine, admin_api: Api, agent_api: Api, receiver: ProviderServer
) -> None:
    inbox = api_inbox_of(admin_api, receiver, "Misconfigured", "not-the-receivers-secret")
    received = agent_api.post(messages_url(inbox), a_message(), status=201)
    url = f"/api/inbox/conversations/{received['conversation_id']}/messages"
    sent = agent_api.post(url, {"body": "Hello"}, status=201)

    def state() -> tuple[str, int]:
        with engine.connect() as conn:
            row = conn.execute(sa.select(outbox.c.state, outbox.c.attempts)).one()
            return row.state, row.attempts

    eventually(lambda: state()[0] == "failed")
    assert state() == ("failed", 1)
    failed = next(
        m
        for m in detail(admin_api, received["conversation_id"])["messages"]
        if m["id"] == sent["id"]
    )
    assert "401" in failed["error"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": None}, "id"),
        ({"id": ""}, "id"),
        ({"contact": None}, "contact"),
        ({"body": 42}, "body"),
        ({"traits": {"email": "not-an-email"}}, "traits.email"),
        ({"traits": {"phone": "12"}}, "traits.phone"),
        ({"traits": {"address": {"city": "Porto"}}}, "traits.address"),
        ({"external_ids": [{"type": "Kiosk ID!", "id": "77"}]}, "external_ids.0.type"),
        ({"external_ids": [{"type": "kiosk_id"}]}, "external_ids.0.id"),
        ({"timestamp": isoformat(utcnow() + timedelta(days=2))}, "timestamp"),
        ({"body": "a\x00b"}, "body"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_a_bad_api_message_is_a_clear_400_and_stores_nothing(
    engine: sa.Engine,
    agent_api: Api,
    api_inbox: dict[str, Any],
    change: dict[str, Any],
    field: str,
) -> None:
    body = {k: v for k, v in a_message(**change).items() if v is not None}
    error = agent_api.post(messages_url(api_inbox), body, status=400)["error"]
    assert error["field"].startswith(field)
    assert count(engine, messages) == 0


def test_api_messages_need_an_inbox_writer_and_an_api_inbox(
    client: TestClient,
    token_api: Callable[[str], Api],
    agent_api: Api,
    api_inbox: dict[str, Any],
    phone_inbox: dict[str, Any],
) -> None:
    token_api("marketer").post(messages_url(api_inbox), a_message(), status=403)
    assert client.post(messages_url(api_inbox), json=a_message()).status_code == 401
    agent_api.post(messages_url(phone_inbox), a_message(), status=404)
