"""The web chat: the widget's sessions, messages and history over HTTP (in-process), and its
Server-Sent Events stream from a real ``plait serve``."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from itsdangerous import URLSafeSerializer
from tests.conftest import Api, LiveServer
from tests.inbox.conftest import eventually

from plait.collect.event_store import events
from plait.core.auth import create_token
from plait.core.db import write
from plait.inbox.connectors.web_chat import MAX_TEXT, MESSAGES_PER_MINUTE
from plait.inbox.schema import messages

SITE = "https://shop.example"
VISITOR = "3f1c2b9e-8d4a-4e47-9b1a-0c5d6e7f8a90"
OTHER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def client_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def chat_inbox(admin_api: Api) -> dict[str, Any]:
    return admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": "web_chat",
            "name": "Site chat",
            "team": "Support",
            "options": {"allowed_origins": f"{SITE}, https://www.shop.example"},
        },
        status=201,
    )


def start(client: TestClient, inbox: dict[str, Any], anonymous_id: str = VISITOR) -> str:
    """A visitor's token, as the widget gets it from the site."""
    response = client.post(
        f"/chat/{inbox['id']}/sessions",
        json={"anonymous_id": anonymous_id},
        headers={"origin": SITE},
    )
    assert response.status_code == 200, response.text
    assert response.json()["anonymous_id"] == anonymous_id
    return response.json()["token"]


def say(
    client: TestClient, inbox: dict[str, Any], token: str, text: str, **extra: Any
) -> httpx.Response:
    body = {"token": token, "text": text, "client_id": client_id(), **extra}
    return client.post(f"/chat/{inbox['id']}/messages", json=body, headers={"origin": SITE})


def history(client: TestClient, inbox: dict[str, Any], token: str) -> list[dict[str, Any]]:
    response = client.get(f"/chat/{inbox['id']}/messages", params={"token": token})
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_a_chat_joins_the_visitors_browsing_in_one_profile(
    client: TestClient, admin_api: Api, source: dict, chat_inbox: dict[str, Any]
) -> None:
    auth = base64.b64encode(f"{source['write_key']}:".encode()).decode()
    page = {"anonymousId": VISITOR, "name": "Pricing", "properties": {"url": f"{SITE}/pricing"}}
    tracked = client.post("/v1/page", json=page, headers={"authorization": f"Basic {auth}"})
    assert tracked.status_code == 200, tracked.text

    token = start(client, chat_inbox)
    sent = say(
        client,
        chat_inbox,
        token,
        "Is the blue one in stock?",
        name="Ada Lovelace",
        email="Ada@Example.com",
        url=f"{SITE}/pricing",
    )
    assert sent.status_code == 201, sent.text
    assert sent.headers["access-control-allow-origin"] == "*"
    message = sent.json()["message"]
    assert message["direction"] == "in"
    assert message["body"] == "Is the blue one in stock?"

    profile = admin_api.get(f"/api/profiles/lookup?kind=anonymous_id&value={VISITOR}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    assert [e["properties"]["url"] for e in timeline if e["type"] == "page"] == [f"{SITE}/pricing"]
    received = [e for e in timeline if e.get("event") == "Message Received"]
    assert len(received) == 1
    assert received[0]["channel"] == "Live Chat"
    assert received[0]["properties"]["url"] == f"{SITE}/pricing"
    by_email = admin_api.get("/api/profiles/lookup?kind=email&value=ada@example.com")
    assert by_email["id"] == profile["id"]

    conversation = admin_api.get("/api/inbox/conversations?channel=web_chat")["conversations"][0]
    assert conversation["customer_id"] == profile["id"]
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    assert [m["contact"] for m in detail["messages"]] == [VISITOR]
    assert detail["messages"][0]["sender_name"] == "Ada Lovelace"


def test_a_bad_or_missing_token_is_refused_and_stores_nothing(
    client: TestClient, engine: sa.Engine, admin_api: Api, chat_inbox: dict[str, Any]
) -> None:
    token = start(client, chat_inbox)
    other_inbox = admin_api.post(
        "/api/inbox/inboxes", {"channel": "web_chat", "name": "Other chat"}, status=201
    )
    forged = URLSafeSerializer("not the server's key", salt="plait-chat").dumps(
        [chat_inbox["id"], OTHER, 0]
    )
    base = f"/chat/{chat_inbox['id']}"
    for bad in (None, "", "garbage", token[:-2] + "xx", forged):
        body = {"text": "hello", "client_id": client_id(), **({"token": bad} if bad else {})}
        response = client.post(f"{base}/messages", json=body, headers={"origin": SITE})
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_token"
        assert client.get(f"{base}/messages", params={"token": bad or ""}).status_code == 401
        assert client.get(f"{base}/stream", params={"token": bad or ""}).status_code == 401
    # A token is good for its own inbox only.
    elsewhere = say(client, other_inbox, token, "hello")
    assert elsewhere.status_code == 401
    assert count(engine, messages) == 0
    assert count(engine, events) == 0


def test_a_resent_message_is_stored_once(
    client: TestClient, engine: sa.Engine, admin_api: Api, chat_inbox: dict[str, Any]
) -> None:
    token = start(client, chat_inbox)
    body = {"token": token, "text": "Hello?", "client_id": "c-0001-retry"}
    answers = [
        client.post(f"/chat/{chat_inbox['id']}/messages", json=body, headers={"origin": SITE})
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [201, 200, 200]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]
    assert len({a.json()["message"]["id"] for a in answers}) == 1
    assert answers[0].json()["message"]["client_id"] == "c-0001-retry"
    assert count(engine, messages) == 1
    profile = admin_api.get(f"/api/profiles/lookup?kind=anonymous_id&value={VISITOR}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    assert len([e for e in timeline if e.get("event") == "Message Received"]) == 1

    # Another visitor using the same client id writes their own message.
    other = start(client, chat_inbox, OTHER)
    body = {**body, "token": other}
    theirs = client.post(f"/chat/{chat_inbox['id']}/messages", json=body)
    assert theirs.status_code == 201
    assert count(engine, messages) == 2


def test_a_visitor_reads_only_their_own_chat(
    client: TestClient, chat_inbox: dict[str, Any]
) -> None:
    mine, theirs = start(client, chat_inbox), start(client, chat_inbox, OTHER)
    assert say(client, chat_inbox, mine, "my order number is 1234").status_code == 201
    assert say(client, chat_inbox, theirs, "hi there").status_code == 201
    assert [m["body"] for m in history(client, chat_inbox, mine)] == ["my order number is 1234"]
    assert [m["body"] for m in history(client, chat_inbox, theirs)] == ["hi there"]
    # Knowing the anonymous id is not enough to read the past: a session started without the
    # token the visitor's widget kept sees only what comes next.
    stranger = start(client, chat_inbox)
    assert history(client, chat_inbox, stranger) == []
    # The visitor's widget, showing its token, resumes with the whole history.
    again = client.post(
        f"/chat/{chat_inbox['id']}/sessions", json={"anonymous_id": VISITOR, "token": mine}
    )
    assert again.json()["token"] == mine


def test_only_allowed_sites_may_use_the_chat(
    client: TestClient, engine: sa.Engine, chat_inbox: dict[str, Any]
) -> None:
    base = f"/chat/{chat_inbox['id']}"
    evil = {"origin": "https://evil.example"}
    refused = client.post(f"{base}/sessions", json={"anonymous_id": VISITOR}, headers=evil)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    token = start(client, chat_inbox)
    body = {"token": token, "text": "hi", "client_id": client_id()}
    assert client.post(f"{base}/messages", json=body, headers=evil).status_code == 403
    assert client.get(f"{base}/stream", params={"token": token}, headers=evil).status_code == 403
    assert count(engine, messages) == 0
    # Both listed sites work; so do programs, which send no Origin.
    www = {"origin": "https://www.shop.example"}
    assert client.post(f"{base}/messages", json=body, headers=www).status_code == 201
    body["client_id"] = client_id()
    assert client.post(f"{base}/messages", json=body).status_code == 201
    preflight = client.options(
        f"{base}/messages",
        headers={
            "origin": SITE,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_messages_are_limited_in_size_and_rate(
    client: TestClient, engine: sa.Engine, chat_inbox: dict[str, Any]
) -> None:
    token = start(client, chat_inbox)
    url = f"/chat/{chat_inbox['id']}/messages"
    cases = [
        ({"text": "x" * (MAX_TEXT + 1)}, 400, "text"),
        ({"text": "   "}, 400, "text"),
        ({"text": "hi", "client_id": "short"}, 400, "client_id"),
        ({"text": "hi", "email": "not an address"}, 400, "email"),
        ({"text": "nul \x00 inside"}, 400, "body"),
    ]
    for extra, status, field in cases:
        response = client.post(url, json={"token": token, "client_id": client_id(), **extra})
        assert response.status_code == status, response.text
        assert response.json()["error"].get("field") == field
    huge = client.post(url, content=b'{"text": "' + b"x" * 20_000 + b'"}')
    assert huge.status_code == 413
    broken = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert count(engine, messages) == 0

    for index in range(MESSAGES_PER_MINUTE):
        assert say(client, chat_inbox, token, f"message {index}").status_code == 201
    too_many = say(client, chat_inbox, token, "one more")
    assert too_many.status_code == 429
    assert too_many.json()["error"]["code"] == "rate_limited"
    assert count(engine, messages) == MESSAGES_PER_MINUTE
    # Another visitor is not held back.
    assert say(client, chat_inbox, start(client, chat_inbox, OTHER), "hi").status_code == 201


def test_a_session_needs_a_usable_anonymous_id(
    client: TestClient, chat_inbox: dict[str, Any]
) -> None:
    url = f"/chat/{chat_inbox['id']}/sessions"
    for bad in (None, "", "null", "x" * 201, 42, "tab\there"):
        response = client.post(url, json={"anonymous_id": bad})
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["field"] == "anonymous_id"
    unknown = client.post(f"/chat/{uuid.uuid4()}/sessions", json={"anonymous_id": VISITOR})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/json")


def test_an_agent_reply_is_delivered_to_the_visitors_history_and_read(
    client: TestClient, admin_api: Api, chat_inbox: dict[str, Any]
) -> None:
    token = start(client, chat_inbox)
    say(client, chat_inbox, token, "Do you ship to Norway?")
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    reply = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages",
        {"body": "Yes, in 3 to 5 days."},
        status=201,
    )
    assert reply["contact"] == VISITOR
    admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/notes", {"body": "VIP"}, status=201
    )

    def shown() -> list[str]:
        return [m["body"] for m in history(client, chat_inbox, token)]

    eventually(lambda: len(shown()) == 2)
    assert shown() == ["Do you ship to Norway?", "Yes, in 3 to 5 days."]  # never the note

    def status() -> str:
        detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
        return next(m["status"] for m in detail["messages"] if m["id"] == reply["id"])

    assert status() == "sent"
    read = client.post(f"/chat/{chat_inbox['id']}/read", json={"token": token})
    assert read.json() == {"read": 1}
    assert status() == "read"


def test_the_widget_is_served(client: TestClient) -> None:
    script = client.get("/chat/widget.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "ajs_anonymous_id" in script.text
    style = client.get("/chat/widget.css")
    assert style.headers["content-type"].startswith("text/css")
    missing = client.get("/chat/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


# --- the stream, from a real server --------------------------------------------------------


class Chat:
    """A site's visitor talking to a live server."""

    def __init__(self, server: LiveServer, inbox_id: str, anonymous_id: str) -> None:
        self.http = httpx.Client(base_url=server.url, headers={"origin": SITE}, timeout=30)
        self.base = f"/chat/{inbox_id}"
        started = self.http.post(f"{self.base}/sessions", json={"anonymous_id": anonymous_id})
        assert started.status_code == 200, started.text
        self.token = started.json()["token"]

    def say(self, text: str) -> dict[str, Any]:
        body = {"token": self.token, "text": text, "client_id": client_id()}
        response = self.http.post(f"{self.base}/messages", json=body)
        assert response.status_code == 201, response.text
        return response.json()["message"]

    def events(self, last_event_id: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event id, message) for each SSE event of the visitor's stream."""
        headers = {"last-event-id": last_event_id} if last_event_id else {}
        with self.http.stream(
            "GET", f"{self.base}/stream", params={"token": self.token}, headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            event_id, data = None, None
            for line in response.iter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and data is not None:
                    yield event_id or "", orjson.loads(data)
                    event_id, data = None, None


@pytest.fixture
def live_chat(live_server: LiveServer, engine: sa.Engine) -> tuple[LiveServer, httpx.Client, str]:
    """A live server with a web chat inbox, and an admin's access to it."""
    with write(engine) as conn:
        token = create_token(conn, "admin", "chat test")["token"]
    admin = httpx.Client(
        base_url=live_server.url, headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    created = admin.post(
        "/api/inbox/inboxes",
        json={"channel": "web_chat", "name": "Live chat", "options": {"allowed_origins": SITE}},
    )
    assert created.status_code == 201, created.text
    return live_server, admin, created.json()["id"]


def test_the_stream_sends_an_agent_reply_and_resumes_after_the_last_event(
    live_chat: tuple[LiveServer, httpx.Client, str],
) -> None:
    server, admin, inbox_id = live_chat
    visitor = Chat(server, inbox_id, VISITOR)
    question = visitor.say("Can I change my delivery address?")

    stream = visitor.events()
    first_id, first = next(stream)
    assert first["id"] == question["id"]
    assert first["direction"] == "in"
    conversation = admin.get("/api/inbox/conversations").json()["conversations"][0]
    reply = admin.post(
        f"/api/inbox/conversations/{conversation['id']}/messages",
        json={"body": "Yes, until it ships."},
    ).json()
    last_id, answer = next(stream)
    stream.close()
    assert answer["id"] == reply["id"]
    assert answer["direction"] == "out"
    assert answer["body"] == "Yes, until it ships."
    assert last_id != first_id

    def status() -> str:
        detail = admin.get(f"/api/inbox/conversations/{conversation['id']}").json()
        return next(m["status"] for m in detail["messages"] if m["id"] == reply["id"])

    eventually(lambda: status() == "delivered")

    # The browser reconnects with Last-Event-ID: only what is new comes.
    later = visitor.say("Thanks! It is 5 Main Street.")
    resumed = visitor.events(last_id)
    _, next_message = next(resumed)
    resumed.close()
    assert next_message["id"] == later["id"]


def test_another_visitors_stream_shows_none_of_this_chat(
    live_chat: tuple[LiveServer, httpx.Client, str],
) -> None:
    server, _admin, inbox_id = live_chat
    visitor, other = Chat(server, inbox_id, VISITOR), Chat(server, inbox_id, OTHER)
    secret = visitor.say("My card number ends in 4242")
    visitor.say("and my address is 5 Main Street")
    theirs = other.say("hello")
    seen = []
    for _, message in other.events():  # the history comes first, in one go
        seen.append(message["id"])
        if message["id"] == theirs["id"]:
            break
    assert seen == [theirs["id"]]
    assert secret["id"] not in seen
