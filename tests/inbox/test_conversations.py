"""Conversations: one thread per customer across channels, assignment, status and the
agent's changes, with the API's permissions and bad inputs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import PASSWORD, Api
from tests.inbox.conftest import eventually, post_twilio, twilio_sms

from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.settings import Settings
from plait.core.users import create_user
from plait.inbox.assignment import add_to_team, set_availability
from plait.inbox.connectors.twilio_sms import parse_inbound
from plait.inbox.inboxes import ensure_team, get_inbox
from plait.inbox.receiving import receive

ALICE = "+14155550101"
BOB = "+14155550102"


def agent(engine: sa.Engine, email: str, *, team: str | None = "Support", capacity: int = 2) -> str:
    with write(engine) as conn:
        user = create_user(conn, email, "agent", PASSWORD)
        user_id = UUID(str(user["id"]))
        set_availability(conn, user_id, available=True, capacity=capacity)
        if team:
            add_to_team(conn, ensure_team(conn, team), user_id)
    return str(user_id)


def conversations(api: Api, queue: str = "all") -> list[dict[str, Any]]:
    return api.get(f"/api/inbox/conversations?queue={queue}")["conversations"]


def test_messages_from_one_customer_share_one_conversation_until_it_is_resolved(
    client: TestClient, admin_api: Api, sms_inbox: dict[str, Any]
) -> None:
    post_twilio(client, sms_inbox, twilio_sms(ALICE, "first"))
    post_twilio(client, sms_inbox, twilio_sms(ALICE, "second"))
    post_twilio(client, sms_inbox, twilio_sms(BOB, "hi from bob"))
    listed = conversations(admin_api)
    assert len(listed) == 2
    alice = next(c for c in listed if c["preview"]["body"] == "second")
    detail = admin_api.get(f"/api/inbox/conversations/{alice['id']}")
    assert [m["body"] for m in detail["messages"]] == ["first", "second"]

    admin_api.client.patch(
        f"/api/inbox/conversations/{alice['id']}",
        json={"status": "resolved"},
        headers=admin_api.headers,
    ).raise_for_status()
    assert len(conversations(admin_api, "resolved")) == 1
    post_twilio(client, sms_inbox, twilio_sms(ALICE, "a new question"))
    assert len(conversations(admin_api)) == 2
    assert len(conversations(admin_api, "resolved")) == 1


def test_a_merge_of_two_customers_brings_their_conversations_to_one_customer(
    client: TestClient, admin_api: Api, sms_inbox: dict[str, Any]
) -> None:
    post_twilio(client, sms_inbox, twilio_sms(ALICE, "from my phone"))
    post_twilio(client, sms_inbox, twilio_sms(BOB, "from my other phone"))
    first, second = conversations(admin_api)
    assert first["customer_id"] != second["customer_id"]
    admin_api.post(
        "/api/profiles/merge", {"profile_ids": [first["customer_id"], second["customer_id"]]}
    )
    merged = conversations(admin_api)
    assert len({c["customer_id"] for c in merged}) == 1
    post_twilio(client, sms_inbox, twilio_sms(BOB, "and again"))
    assert len(conversations(admin_api)) == 2


def test_new_conversations_go_round_robin_to_available_agents_under_capacity(
    client: TestClient, engine: sa.Engine, admin_api: Api, sms_inbox: dict[str, Any]
) -> None:
    ann = agent(engine, "ann@example.com", capacity=1)
    ben = agent(engine, "ben@example.com", capacity=2)
    agent(engine, "cat@example.com", team="Sales")
    for n in range(4):
        post_twilio(client, sms_inbox, twilio_sms(f"+1415555020{n}", f"customer {n}"))
    assignees = [c["assignee_id"] for c in reversed(conversations(admin_api))]
    assert assignees == [ann, ben, ben, None]
    assert len(conversations(admin_api, "unassigned")) == 1


def test_agents_change_status_priority_labels_and_assignee(
    client: TestClient, engine: sa.Engine, admin_api: Api, sms_inbox: dict[str, Any]
) -> None:
    ann = agent(engine, "ann@example.com")
    post_twilio(client, sms_inbox, twilio_sms(ALICE, "help"))
    conversation = conversations(admin_api)[0]
    url = f"/api/inbox/conversations/{conversation['id']}"
    changed = admin_api.client.patch(
        url,
        json={"priority": "urgent", "labels": ["Refund", "refund", " vip "], "status": "pending"},
        headers=admin_api.headers,
    ).json()
    assert changed["priority"] == "urgent"
    assert changed["labels"] == ["refund", "vip"]
    assert changed["status"] == "pending"
    reassigned = admin_api.client.patch(url, json={"unassign": True}, headers=admin_api.headers)
    assert reassigned.json()["assignee_id"] is None
    back = admin_api.client.patch(url, json={"assignee_id": ann}, headers=admin_api.headers)
    assert back.json()["assignee_id"] == ann
    note = admin_api.post(f"{url}/notes", {"body": "customer called twice"}, status=201)
    assert note["direction"] == "note"
    # a message from the customer reopens a pending conversation
    post_twilio(client, sms_inbox, twilio_sms(ALICE, "still waiting"))
    assert admin_api.get(url)["status"] == "open"


def test_bad_changes_are_refused_and_change_nothing(
    client: TestClient, admin_api: Api, sms_inbox: dict[str, Any]
) -> None:
    post_twilio(client, sms_inbox, twilio_sms(ALICE, "help"))
    conversation = conversations(admin_api)[0]
    url = f"/api/inbox/conversations/{conversation['id']}"
    for body in (
        {"status": "closed"},
        {"priority": "whenever"},
        {"status": "snoozed"},
        {"status": "snoozed", "snoozed_until": "2001-01-01T00:00:00Z"},
        {"assignee_id": "00000000-0000-0000-0000-000000000000"},
        {"labels": ["x" * 51]},
    ):
        response = admin_api.client.patch(url, json=body, headers=admin_api.headers)
        assert response.status_code == 400, body
        assert "error" in response.json()
    after = admin_api.get(url)
    assert (after["status"], after["priority"], after["labels"]) == ("open", "normal", [])
    assert admin_api.post(f"{url}/messages", {"body": "   "}, status=400)
    assert admin_api.post(f"{url}/notes", {"body": ""}, status=400)
    missing = "/api/inbox/conversations/00000000-0000-0000-0000-000000000000"
    assert admin_api.get(missing, status=404)["error"]["code"] == "not_found"
    assert len(admin_api.get(url)["messages"]) == 1


def test_inbox_permissions(client: TestClient, token_api: Any, sms_inbox: dict[str, Any]) -> None:
    marketer, agent_api = token_api("marketer"), token_api("agent")
    assert marketer.get("/api/inbox/conversations", status=403)["error"]["code"] == "forbidden"
    assert agent_api.get("/api/inbox/conversations")["conversations"] == []
    body = {"channel": "sms", "name": "Another"}
    assert agent_api.post("/api/inbox/inboxes", body, status=403)
    assert client.get("/api/inbox/conversations").status_code == 401


def test_creating_inboxes_validates_input(admin_api: Api, sms_inbox: dict[str, Any]) -> None:
    assert sms_inbox["webhook_url"].endswith(f"/webhooks/twilio/{sms_inbox['id']}")
    assert sms_inbox["secrets_set"] == ["auth_token"]
    assert "twilio-auth-token" not in str(admin_api.get("/api/inbox/inboxes"))
    bad = [
        {"channel": "fax", "name": "Fax"},
        {"channel": "sms", "name": ""},
        {"channel": "sms", "name": "Shop SMS"},
    ]
    codes = [
        admin_api.client.post("/api/inbox/inboxes", json=b, headers=admin_api.headers).status_code
        for b in bad
    ]
    assert codes == [400, 400, 409]
    assert len(admin_api.get("/api/inbox/inboxes")["inboxes"]) == 1


def test_a_snoozed_conversation_reopens_when_its_time_comes(
    client: TestClient, engine: sa.Engine, admin_api: Api, sms_inbox: dict[str, Any]
) -> None:
    post_twilio(client, sms_inbox, twilio_sms(ALICE, "call me tomorrow"))
    conversation = conversations(admin_api)[0]
    url = f"/api/inbox/conversations/{conversation['id']}"
    soon = (utcnow() + timedelta(seconds=1)).isoformat()
    snoozed = admin_api.client.patch(
        url, json={"status": "snoozed", "snoozed_until": soon}, headers=admin_api.headers
    )
    assert snoozed.json()["status"] == "snoozed"
    eventually(lambda: admin_api.get(url)["status"] == "open")


def test_simultaneous_messages_from_a_new_customer_open_one_conversation(
    client: TestClient, engine: sa.Engine, settings: Settings, sms_inbox: dict[str, Any]
) -> None:
    app = client.app.state
    with read(engine) as conn:
        inbox = get_inbox(conn, sms_inbox["id"])
    messages = [parse_inbound(twilio_sms("+14155550199", f"message {n}")) for n in range(12)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda m: receive(engine, settings, app.rules, inbox, m), messages))
    assert len({result.conversation_id for result in results}) == 1
    assert None not in {result.conversation_id for result in results}
