"""The agent workspace and the inbox settings page in-process, on SQLite and PostgreSQL:
who may open them, the queues, a conversation with its customer's 360, replies and notes
through the inbox's own functions (delivered to a local Twilio), changes, live parts and
events, the settings forms, CSRF and bad input."""

from __future__ import annotations

import html
import json
import re
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import PASSWORD, LiveServer, add_user
from tests.inbox.conftest import (
    SHOP_NUMBER,
    TWILIO_ACCOUNT,
    TWILIO_TOKEN,
    _twilio_answer,
    eventually,
    post_twilio,
    twilio_sms,
)
from tests.inbox.providers import ProviderServer

from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.settings import InboxSettings, Settings
from plait.core.users import users
from plait.identity.graph import root_of
from plait.inbox.inboxes import create_inbox
from plait.inbox.schema import (
    agents,
    canned_replies,
    conversations,
    inboxes,
    messages,
    team_members,
)
from plait.profiles.pipeline import resolve
from plait.web import inbox as inbox_page

ANA = "+14155550123"
BO = "+14155550124"
NOWHERE = "01900000-0000-7000-8000-000000000000"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Quick outbox retries, and no satisfaction survey to muddle what Twilio receives."""
    inbox = InboxSettings(retry_seconds=0.2, max_attempts=2, provider_timeout_seconds=3, csat=False)
    return Settings(home=tmp_path / "home", database_url=database_url, inbox=inbox)


@pytest.fixture
def twilio_server() -> Iterator[ProviderServer]:
    """Twilio's Messages API on loopback (the inbox tests' stand-in)."""
    server = ProviderServer(_twilio_answer)
    yield server
    server.close()


def sms_options(url: str, number: str = SHOP_NUMBER) -> dict[str, str]:
    return {"account_sid": TWILIO_ACCOUNT, "phone_number": number, "api_url": url}


@pytest.fixture
def sms_inbox(engine: sa.Engine, twilio_server: ProviderServer) -> dict[str, Any]:
    with write(engine) as conn:
        return create_inbox(
            conn,
            "sms",
            "Shop SMS",
            options=sms_options(twilio_server.url),
            secrets={"auth_token": TWILIO_TOKEN},
            team="Support",
        )


def text_in(client: TestClient, inbox: dict[str, Any], body: str, sender: str = ANA) -> str:
    """An inbound SMS through the signed webhook; returns its conversation's id."""
    assert post_twilio(client, inbox, twilio_sms(sender, body)).status_code == 200
    with read(client.app.state.engine) as conn:
        return str(
            conn.execute(
                sa.select(messages.c.conversation_id)
                .where(messages.c.body == body)
                .order_by(messages.c.created_at.desc())
            ).scalar()
        )


def conversation(engine: sa.Engine, conversation_id: str) -> Any:
    with read(engine) as conn:
        return (
            conn.execute(
                sa.select(conversations).where(conversations.c.id == UUID(conversation_id))
            )
            .mappings()
            .one()
        )


def thread(engine: sa.Engine, conversation_id: str) -> list[Any]:
    with read(engine) as conn:
        return conn.execute(
            sa.select(messages)
            .where(messages.c.conversation_id == UUID(conversation_id))
            .order_by(messages.c.created_at)
        ).all()


def user_id(engine: sa.Engine, email: str) -> str:
    with read(engine) as conn:
        return str(conn.execute(sa.select(users.c.id).where(users.c.email == email)).scalar_one())


def alerts(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'role="alert">([^<]*)<', page)]


def nav_labels(page: str) -> list[str]:
    nav = page.split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'<a href="[^"]+"[^>]*>([^<]+)</a>', nav)


# --- who may open the pages ------------------------------------------------------------


def test_a_marketer_may_not_open_the_inbox(web_as, client: TestClient, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "hello")
    marketer = web_as("marketer")
    for path in (
        "/inbox",
        f"/inbox/{conversation_id}",
        f"/inbox/{conversation_id}/parts",
        "/inbox/queue",
        "/inbox/events",
        "/inbox/settings",
    ):
        response = marketer.get(path)
        assert response.status_code == 403, path
        assert "Not allowed" in response.text
    refused = marketer.post(f"/inbox/{conversation_id}/reply", {"body": "sneaky"})
    assert refused.status_code == 403
    assert [m.direction for m in thread(client.app.state.engine, conversation_id)] == ["in"]
    assert "Inbox" not in nav_labels(marketer.get_page("/customers"))


def test_an_agent_works_the_inbox_but_not_its_settings(web_as, client, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "hello")
    agent = web_as("agent")
    assert agent.get("/inbox").status_code == 200
    page = agent.get_page(f"/inbox/{conversation_id}")
    assert "hello" in page
    labels = nav_labels(page)
    assert "Inbox" in labels
    assert "Inboxes" not in labels
    assert "Inbox settings" not in page
    assert agent.get("/inbox/settings").status_code == 403
    assert agent.post("/inbox/settings/canned", {"shortcut": "x", "body": "y"}).status_code == 403

    admin = web_as("admin")
    assert admin.get(f"/inbox/{conversation_id}").status_code == 200
    settings_page = admin.get_page("/inbox/settings")
    assert {"Inbox", "Inboxes"} <= set(nav_labels(settings_page))
    assert "Shop SMS" in settings_page


def test_strangers_are_sent_to_sign_in(client: TestClient, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "hello")
    for path in ("/inbox", f"/inbox/{conversation_id}", "/inbox/settings", "/inbox/events"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    answer = client.post(f"/inbox/{conversation_id}/reply", data={"body": "x"})
    assert answer.status_code == 401


# --- the queues ------------------------------------------------------------------------


def test_the_queues_count_and_list_with_sla_flags_in_words(web_as, client, engine, sms_inbox):
    ana = text_in(client, sms_inbox, "Where is my parcel?")
    bo = text_in(client, sms_inbox, "Can I change my order?", sender=BO)
    now = utcnow()
    with write(engine) as conn:
        conn.execute(
            conversations.update()
            .where(conversations.c.id == UUID(ana))
            .values(first_response_due=now - timedelta(minutes=5))
        )
        conn.execute(
            conversations.update()
            .where(conversations.c.id == UUID(bo))
            .values(first_response_due=now + timedelta(minutes=1))
        )
    agent = web_as("agent")
    page = agent.get_page("/inbox")
    assert "· All open" in page  # nothing is the agent's yet, so the default is every open one
    counts = dict(
        re.findall(r'<span class="q-label">([^<]+)</span> <span class="count">(\d+)', page)
    )
    assert counts == {
        "Mine": "0",
        "Unassigned": "2",
        "All open": "2",
        "SLA at risk": "2",
        "Resolved": "0",
        "SMS": "2",
    }
    items = re.findall(r'<li class="queue-item[^"]*" data-id="([^"]+)">(.*?)</li>', page, re.S)
    assert [key for key, _ in items] == [bo, ana]  # newest activity first
    bo_item, ana_item = (body for _, body in items)
    assert ANA in ana_item
    assert "Where is my parcel?" in ana_item
    assert "SLA breached" in ana_item
    assert "⛔" in ana_item
    assert "first response overdue" in ana_item
    assert "SLA at risk" in bo_item
    assert "first response due in" in bo_item
    assert "waiting" in ana_item
    assert "Unassigned" in ana_item
    assert 'title="SMS"' in ana_item

    web_as("agent").post(f"/inbox/{ana}/update", {"assignee": "me"})
    mine = agent.get_page("/inbox")
    assert "· Mine" in mine  # now the agent has one: their queue comes first
    assert re.findall(r'data-id="([^"]+)">', mine.split('class="queue-items"')[1]) == [ana]
    assert "👤</span> You" in mine
    unassigned = agent.get_page("/inbox?queue=unassigned")
    assert bo in unassigned
    assert ana not in unassigned.split('class="queue-items"')[1]
    at_risk = agent.get_page("/inbox?queue=at_risk&channel=sms")
    assert ana in at_risk
    assert bo in at_risk


def test_older_conversations_are_paged(web_as, client, sms_inbox, monkeypatch) -> None:
    monkeypatch.setattr(inbox_page, "PAGE", 2)
    ids = [text_in(client, sms_inbox, f"message {n}", sender=f"+1415555020{n}") for n in range(3)]
    agent = web_as("agent")
    first = agent.get_page("/inbox?queue=all")
    found = re.search(r'href="(/inbox\?queue=all&amp;before=[^"]+)">Older', first)
    assert found
    assert ids[0] not in first.split('class="queue-items"')[1]
    second = agent.get_page(html.unescape(found.group(1)))
    assert re.findall(r'data-id="([^"]+)">', second.split('class="queue-items"')[1]) == [ids[0]]
    assert agent.get("/inbox?before=yesterday").status_code == 400


# --- one conversation ------------------------------------------------------------------


def test_the_conversation_with_the_customer_360_and_the_ways_to_reply(
    web_as, client, engine, settings, sms_inbox, send_events, twilio_server
) -> None:
    conversation_id = text_in(client, sms_inbox, "Is the green sofa in stock?")
    send_events(
        {
            "type": "identify",
            "userId": "cus_ana",
            "timestamp": "2026-03-01T10:00:00Z",
            "traits": {"phone": ANA, "email": "ana@example.com", "name": "Ana Lima"},
            "context": {"channel": "Paid Search"},
        },
        {
            "type": "track",
            "userId": "cus_ana",
            "event": "Order Completed",
            "timestamp": "2026-03-02T10:00:00Z",
            "properties": {"order_id": "S-1", "revenue": 120.5, "currency": "EUR"},
            "context": {"channel": "Store"},
        },
    )
    resolve(engine, settings)
    with write(engine) as conn:
        other = create_inbox(
            conn,
            "sms",
            "Store SMS",
            options=sms_options(twilio_server.url, "+15005550007"),
            secrets={"auth_token": TWILIO_TOKEN},
        )
        create_inbox(conn, "telegram", "Bot", secrets={"bot_token": "x"})
    agent = web_as("agent")
    agent.post(f"/inbox/{conversation_id}/reply", {"body": "A note for the team", "mode": "note"})
    page = agent.get_page(f"/inbox/{conversation_id}?queue=all")

    assert "<title>Ana Lima · #1 · Plait</title>" in page
    assert 'class="msg msg-inbound' in page
    assert 'class="msg msg-note' in page
    assert "Note by agent@example.com" in page
    customer = page.split('id="customer"', 1)[1].split("</aside>", 1)[0]
    assert "Ana Lima" in customer
    assert "ana@example.com" in customer
    assert "Customer</span>" in customer  # the lifecycle stage, from the order
    assert re.search(r"<dt>Orders</dt><dd>1</dd>", customer)
    assert "120.50 EUR" in customer
    assert "Paid Search" in customer  # first touch
    with read(engine) as conn:
        root = root_of(conn, conversation(engine, conversation_id)["profile_id"])
    assert f'href="/customers/{root}"' in customer
    routes = re.findall(r'<option value="([^"]+)"( selected)?>[^<]*→ ([^<]+)</option>', page)
    assert [(key, bool(chosen), address) for key, chosen, address in routes] == [
        (sms_inbox["id"], True, ANA),
        (other["id"], False, ANA),
    ]  # the customer's own channel first; Telegram cannot reach them
    canned = json.loads(re.search(r'id="canned-data">(.*?)</script>', page, re.S).group(1))
    assert canned == []

    answer = agent.post(
        f"/inbox/{conversation_id}/reply",
        {"body": "Yes, it is!", "inbox_id": other["id"], "queue": "all"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/inbox/{conversation_id}?queue=all"
    sent = eventually(lambda: twilio_server.requests)
    assert sent[0].form == {"To": ANA, "From": "+15005550007", "Body": "Yes, it is!"}
    outbound = [m for m in thread(engine, conversation_id) if m.direction == "out"]
    assert [m.inbox_id for m in outbound] == [UUID(other["id"])]
    assert outbound[0].author_id == UUID(user_id(engine, "agent@example.com"))
    eventually(lambda: "✓</span> Sent" in agent.get_page(f"/inbox/{conversation_id}"))


def test_an_unknown_conversation_is_not_found(web_as) -> None:
    agent = web_as("agent")
    assert agent.get(f"/inbox/{NOWHERE}").status_code == 404
    assert agent.get(f"/inbox/{NOWHERE}/parts").status_code == 404
    assert agent.post(f"/inbox/{NOWHERE}/reply", {"body": "hi"}).status_code == 404
    assert agent.post(f"/inbox/{NOWHERE}/update", {"status": "resolved"}).status_code == 404
    assert agent.get("/inbox/not-an-id").status_code == 404


def test_status_priority_assignee_and_labels(web_as, client, engine, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "hello")
    agent = web_as("agent")
    web_as("admin")
    admin_id = user_id(engine, "admin@example.com")

    def change(**fields: str) -> Any:
        response = agent.post(f"/inbox/{conversation_id}/update", fields)
        assert response.status_code == 303, response.text
        return conversation(engine, conversation_id)

    assert change(status="resolved")["status"] == "resolved"
    assert change(status="open")["resolved_at"] is None
    assert change(status="pending")["status"] == "pending"
    snoozed = change(status="snoozed", snooze_until="2031-05-04T09:30", tz_offset="-120")
    assert snoozed["status"] == "snoozed"
    assert snoozed["snoozed_until"].isoformat() == "2031-05-04T07:30:00+00:00"
    assert change(priority="urgent")["priority"] == "urgent"
    me = change(assignee="me")["assignee_id"]
    assert str(me) == user_id(engine, "agent@example.com")
    assert str(change(assignee=admin_id)["assignee_id"]) == admin_id
    assert change(assignee="none")["assignee_id"] is None
    assert change(labels="VIP, billing ,, vip", set_labels="1")["labels"] == ["billing", "vip"]
    assert change(labels="", set_labels="1")["labels"] == []
    page = agent.get_page(f"/inbox/{conversation_id}")
    assert "Snoozed until 4 May 2031, 07:30 UTC" in page
    assert "Urgent priority" in page


def test_bad_changes_and_replies_are_clear_400s(web_as, client, engine, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "hello")
    other = text_in(client, sms_inbox, "other", sender=BO)
    agent = web_as("agent")
    web_as("marketer")
    marketer_id = user_id(engine, "marketer@example.com")
    update = f"/inbox/{conversation_id}/update"
    for fields, words in (
        ({}, "nothing to change"),
        ({"status": "closed"}, "status"),
        ({"status": "snoozed"}, "snooze until a date and time"),
        ({"status": "snoozed", "snooze_until": "soon"}, "snooze until a date and time"),
        ({"status": "snoozed", "snooze_until": "2001-01-01T09:00"}, "in the future"),
        ({"status": "snoozed", "snooze_until": "2031-01-01T09:00", "tz_offset": "x"}, "snooze"),
        ({"priority": "asap"}, "priority"),
        ({"assignee": "bob"}, "assignee must be an id"),
        ({"assignee": marketer_id}, "assign to an enabled agent or admin"),
        ({"labels": ",".join(f"l{n}" for n in range(25)), "set_labels": "1"}, "labels"),
    ):
        response = agent.post(update, fields)
        assert response.status_code == 400, (fields, response.text)
        assert any(words in text for text in alerts(response.text)), (fields, alerts(response.text))
    reply = f"/inbox/{conversation_id}/reply"
    for fields, words in (
        ({"body": "   "}, "a message needs some text"),
        ({"body": ""}, "body"),
        ({"body": "hi", "mode": "shout"}, "mode is reply or note"),
        ({"body": "hi", "inbox_id": "nope"}, "inbox_id"),
    ):
        response = agent.post(reply, fields)
        assert response.status_code == 400, (fields, response.text)
        assert any(words in text for text in alerts(response.text)), (fields, alerts(response.text))
    assert agent.post(reply, {"body": "hi", "inbox_id": NOWHERE}).status_code == 404
    row = conversation(engine, conversation_id)
    assert (row["status"], row["priority"], row["assignee_id"], row["labels"]) == (
        "open",
        "normal",
        None,
        [],
    )
    assert [m.direction for m in thread(engine, conversation_id)] == ["in"]
    inbound = thread(engine, other)[0].id
    assert agent.post(f"/inbox/{conversation_id}/messages/{inbound}/retry").status_code == 404
    mine = thread(engine, conversation_id)[0].id
    assert agent.post(f"/inbox/{conversation_id}/messages/{mine}/retry").status_code == 409
    for path in ("/inbox?queue=everything", "/inbox?channel=fax", "/inbox/queue?selected=x"):
        assert agent.get(path).status_code == 400, path
    assert agent.get("/inbox/events?since=yesterday").status_code == 400
    assert agent.post("/inbox/availability", {"available": "yes"}).status_code == 400


def test_posts_need_the_csrf_token(web_as, client, engine, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "hello")
    agent = web_as("agent")
    admin = web_as("admin")
    for session, path, form in (
        (agent, f"/inbox/{conversation_id}/reply", {"body": "hi"}),
        (agent, f"/inbox/{conversation_id}/update", {"status": "resolved"}),
        (agent, "/inbox/availability", {"available": "1"}),
        (admin, "/inbox/settings/inboxes", {"channel": "sms", "name": "Sneaky"}),
        (admin, "/inbox/settings/canned", {"shortcut": "x", "body": "y"}),
        (admin, "/inbox/settings/teams", {"team": "T", "email": "agent@example.com"}),
    ):
        response = session.client.post(path, data=form, follow_redirects=False)
        assert response.status_code == 403, path
        assert "did not come from Plait" in response.text
        wrong = {**form, "csrf_token": "0" * 64}
        assert session.client.post(path, data=wrong).status_code == 403, path
        headed = session.client.post(path, data=form, headers={"X-CSRF-Token": "nope"})
        assert headed.status_code == 403, path
    assert [m.direction for m in thread(engine, conversation_id)] == ["in"]
    assert conversation(engine, conversation_id)["status"] == "open"
    with read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(inboxes)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(canned_replies)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(agents)).scalar() == 0
    # the header alone is enough (what the page's script sends)
    sent = agent.client.post(
        f"/inbox/{conversation_id}/reply",
        data={"body": "note", "mode": "note"},
        headers={"X-CSRF-Token": agent.csrf_token},
        follow_redirects=False,
    )
    assert sent.status_code == 303


def test_a_failed_reply_says_so_and_can_be_retried(
    web_as, client, engine, sms_inbox, twilio_server
) -> None:
    conversation_id = text_in(client, sms_inbox, "Anyone there?")
    twilio_server.failing = True
    agent = web_as("agent")
    agent.post(f"/inbox/{conversation_id}/reply", {"body": "Yes, we are!"})

    def failed() -> Any:
        return next((m for m in thread(engine, conversation_id) if m.status == "failed"), None)

    message = eventually(failed)
    page = agent.get_page(f"/inbox/{conversation_id}")
    item = page.split(f'data-id="{message.id}"', 1)[1].split("</li>", 1)[0]
    assert "Failed" in item
    assert "503" in item
    assert f'action="/inbox/{conversation_id}/messages/{message.id}/retry"' in item
    assert ">Retry</button>" in item

    twilio_server.failing = False
    retry = agent.post(f"/inbox/{conversation_id}/messages/{message.id}/retry")
    assert retry.status_code == 303
    eventually(lambda: [m.status for m in thread(engine, conversation_id)][-1] == "sent")
    assert [r.form["Body"] for r in twilio_server.requests] == ["Yes, we are!"]


# --- live updates ----------------------------------------------------------------------


def test_the_live_parts_are_the_pages_pieces(web_as, client, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "Where is my parcel?")
    agent = web_as("agent")
    queue = agent.get(f"/inbox/queue?queue=all&selected={conversation_id}")
    assert queue.status_code == 200
    assert queue.headers["cache-control"] == "no-store"
    parts = queue.json()
    assert set(parts) == {"queues", "list"}
    assert 'aria-current="page"' in parts["queues"]
    assert f'data-id="{conversation_id}"' in parts["list"]
    assert "queue-item selected" in parts["list"]

    pieces = agent.get(f"/inbox/{conversation_id}/parts?queue=all").json()
    assert set(pieces) == {"head", "thread", "customer"}
    assert "Where is my parcel?" in pieces["thread"]
    assert f'name="csrf_token" value="{agent.csrf_token}"' in pieces["head"]
    assert 'name="queue" value="all"' in pieces["head"]
    assert ANA in pieces["customer"]


def test_events_report_changed_conversations(web_as, client, sms_inbox, monkeypatch) -> None:
    monkeypatch.setattr(inbox_page, "STREAM_SECONDS", 1.0)
    monkeypatch.setattr(inbox_page, "POLL_SECONDS", 0.1)
    before = utcnow()
    conversation_id = text_in(client, sms_inbox, "hello")
    agent = web_as("agent")

    def stream(**headers: str) -> str:
        query = f"?since={before.isoformat().replace('+', '%2B')}"
        with agent.client.stream("GET", "/inbox/events" + query, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return response.read().decode()

    body = stream()
    changes = re.findall(r"event: change\nid: ([^\n]+)\ndata: ([^\n]+)", body)
    assert len(changes) == 1
    assert json.loads(changes[0][1]) == {"ids": [conversation_id]}
    assert body.startswith("retry: 1000\n")
    assert re.findall(r"^id: (.+)$", body, re.M)[-1] == changes[0][0]
    later = (utcnow() + timedelta(seconds=30)).isoformat()
    resumed = stream(**{"Last-Event-ID": later})  # a reconnection resumes from its last id
    assert "event: change" not in resumed


def test_a_live_stream_does_not_hold_up_a_server_shutdown(settings, engine) -> None:
    add_user(engine, "agent")
    server = LiveServer(settings).start()
    try:
        session = httpx.Client(base_url=server.url, timeout=60)
        form = session.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        signed = {"email": "agent@example.com", "password": PASSWORD, "csrf_token": token}
        assert session.post("/login", data=signed).status_code == 303
        lines: list[str] = []

        def listen() -> None:
            with session.stream("GET", "/inbox/events") as response:
                lines.extend(response.iter_lines())

        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        eventually(lambda: lines)
        assert lines[0] == "retry: 1000"
        server.process.terminate()
        # uvicorn finishes its shutdown and exits by the signal, well before the stream's
        # own end would have let it (a hang guard, not a measurement)
        ended = server.process.wait(timeout=inbox_page.STREAM_SECONDS - 5)
        assert ended in (0, -signal.SIGTERM)
        reader.join(timeout=30)
        assert not reader.is_alive()  # and the stream ended
    finally:
        server.stop()


def test_a_watch_reports_each_change_once(engine, client, sms_inbox) -> None:
    start = utcnow() - timedelta(seconds=1)
    first = text_in(client, sms_inbox, "one")
    watch = inbox_page.Watch(start)
    with read(engine) as conn:
        assert inbox_page.changed_conversations(conn, watch) == [first]
        assert inbox_page.changed_conversations(conn, watch) == []
    second = text_in(client, sms_inbox, "two", sender=BO)
    text_in(client, sms_inbox, "one again")
    with read(engine) as conn:
        assert sorted(inbox_page.changed_conversations(conn, watch)) == sorted([first, second])
        assert inbox_page.changed_conversations(conn, watch) == []
    assert watch.cursor > start


def test_the_availability_toggle(web_as, engine) -> None:
    agent = web_as("agent")
    me = UUID(user_id(engine, "agent@example.com"))
    answer = agent.post("/inbox/availability", {"available": "1", "back": "/inbox?queue=all"})
    assert answer.headers["location"] == "/inbox?queue=all"
    with read(engine) as conn:
        assert conn.execute(sa.select(agents.c.available).where(agents.c.user_id == me)).scalar()
    assert 'aria-pressed="true"' in agent.get_page("/inbox")
    away = agent.post("/inbox/availability", {"available": "0", "back": "//evil.example/x"})
    assert away.headers["location"] == "/inbox"
    with read(engine) as conn:
        assert not conn.execute(
            sa.select(agents.c.available).where(agents.c.user_id == me)
        ).scalar()


# --- settings ----------------------------------------------------------------------------


def test_admins_connect_inboxes_with_their_provider_settings(web_as, engine) -> None:
    admin = web_as("admin")
    created = admin.post(
        "/inbox/settings/inboxes",
        {
            "channel": "sms",
            "name": "Support SMS",
            "team": "Support",
            "twilio_account_sid": TWILIO_ACCOUNT,
            "twilio_auth_token": "the-auth-token",
            "phone_number": SHOP_NUMBER,
            "api_url": "http://127.0.0.1:9",
            "telegram_bot_token": "not for an SMS inbox",
        },
    )
    assert created.status_code == 303
    inbox_id = re.search(r"created=([0-9a-f-]+)", created.headers["location"]).group(1)
    page = admin.get_page(created.headers["location"])
    assert f"http://testserver/webhooks/twilio/{inbox_id}" in page
    assert "the-auth-token" not in page
    admin.post(
        "/inbox/settings/inboxes",
        {
            "channel": "whatsapp",
            "name": "WhatsApp",
            "meta_app_secret": "app-secret",
            "meta_verify_token": "verify-me",
            "meta_access_token": "access",
            "phone_number_id": "1234567890",
        },
    )
    admin.post(
        "/inbox/settings/inboxes", {"channel": "email", "name": "Help", "address": "a@x.io, b@x.io"}
    )
    with read(engine) as conn:
        rows = {
            row.name: row
            for row in conn.execute(sa.select(inboxes.c.name, inboxes.c.options, inboxes.c.secrets))
        }
    assert rows["Support SMS"].options == {
        "account_sid": TWILIO_ACCOUNT,
        "phone_number": SHOP_NUMBER,
        "api_url": "http://127.0.0.1:9",
    }
    assert rows["Support SMS"].secrets == {"auth_token": "the-auth-token"}
    assert rows["WhatsApp"].options == {"phone_number_id": "1234567890"}
    assert rows["WhatsApp"].secrets == {
        "app_secret": "app-secret",
        "verify_token": "verify-me",
        "access_token": "access",
    }
    assert rows["Help"].options == {"addresses": "a@x.io, b@x.io"}
    listing = admin.get_page("/inbox/settings")
    assert "http://testserver/webhooks/meta/" in listing
    assert "access_token, app_secret, verify_token" in listing


def test_bad_inbox_input_reshows_the_form_without_secrets(web_as, engine, sms_inbox) -> None:
    admin = web_as("admin")
    for form, status, words in (
        ({"channel": "fax", "name": "Fax"}, 400, "unknown channel 'fax'"),
        ({"channel": "sms", "name": ""}, 400, "name"),
        ({"channel": "sms", "name": "Shop SMS"}, 409, "exists already"),
        ({"channel": "sms", "name": "X", "team": "t" * 101}, 400, "team"),
        ({"channel": "sms", "name": "X", "api_url": "x" * 2001}, 400, "2000"),
    ):
        response = admin.post(
            "/inbox/settings/inboxes", {**form, "twilio_auth_token": "keep-me-secret"}
        )
        assert response.status_code == status, (form, response.text)
        assert any(words in text for text in alerts(response.text)), (form, alerts(response.text))
        assert "keep-me-secret" not in response.text
    kept = admin.post(
        "/inbox/settings/inboxes", {"channel": "sms", "name": "Shop SMS", "phone_number": "+1555"}
    )
    assert 'value="+1555"' in kept.text
    with read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(inboxes)).scalar() == 1


def test_canned_replies_are_managed_and_offered_in_the_reply_box(web_as, client, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "hello")
    admin = web_as("admin")
    assert (
        admin.post(
            "/inbox/settings/canned", {"shortcut": "/thanks", "body": "Thank you!"}
        ).status_code
        == 303
    )
    for form, words in (
        ({"shortcut": "thanks", "body": "again"}, "taken"),
        ({"shortcut": "Hello World", "body": "x"}, "shortcut"),
        ({"shortcut": "ok", "body": ""}, "body"),
    ):
        response = admin.post("/inbox/settings/canned", form)
        assert response.status_code == 400, form
        assert any(words in text for text in alerts(response.text)), (form, alerts(response.text))
    page = web_as("agent").get_page(f"/inbox/{conversation_id}")
    canned = json.loads(re.search(r'id="canned-data">(.*?)</script>', page, re.S).group(1))
    assert canned == [{"shortcut": "thanks", "body": "Thank you!"}]
    assert '<option value="thanks">/thanks</option>' in page

    settings_page = admin.get_page("/inbox/settings")
    reply_id = re.search(r"/inbox/settings/canned/([0-9a-f-]+)/delete", settings_page).group(1)
    assert admin.post(f"/inbox/settings/canned/{reply_id}/delete").status_code == 303
    assert admin.post(f"/inbox/settings/canned/{reply_id}/delete").status_code == 404
    assert "/thanks" not in admin.get_page("/inbox/settings")


def test_team_members_and_agents(web_as, engine) -> None:
    admin = web_as("admin")
    web_as("agent")
    agent_id = user_id(engine, "agent@example.com")
    added = admin.post("/inbox/settings/teams", {"team": "Stores", "email": "agent@example.com"})
    assert added.status_code == 303
    page = admin.get_page("/inbox/settings")
    team = re.search(r"<strong>Stores</strong>(.*?)</ul>", page, re.S).group(1)
    assert "agent@example.com" in team
    unknown = admin.post("/inbox/settings/teams", {"team": "Stores", "email": "nobody@example.com"})
    assert unknown.status_code == 404
    assert any("no user" in text for text in alerts(unknown.text))
    assert (
        admin.post("/inbox/settings/teams", {"team": " ", "email": "agent@example.com"}).status_code
        == 400
    )
    team_id = re.search(r"/inbox/settings/teams/([0-9a-f-]+)/members/" + agent_id, page).group(1)
    removed = admin.post(f"/inbox/settings/teams/{team_id}/members/{agent_id}/remove")
    assert removed.status_code == 303
    with read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(team_members)).scalar() == 0

    saved = admin.post(f"/inbox/settings/agents/{agent_id}", {"available": "1", "capacity": "3"})
    assert saved.status_code == 303
    with read(engine) as conn:
        row = conn.execute(sa.select(agents).where(agents.c.user_id == UUID(agent_id))).one()
    assert (row.available, row.capacity) == (True, 3)
    for form in ({"capacity": "0"}, {"capacity": "many"}):
        response = admin.post(f"/inbox/settings/agents/{agent_id}", form)
        assert response.status_code == 400, form
        assert any("capacity" in text for text in alerts(response.text))
    assert admin.post(f"/inbox/settings/agents/{NOWHERE}", {"available": "1"}).status_code == 404
