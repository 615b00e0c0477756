"""The agent workspace's "Log a call" form, in-process on SQLite and PostgreSQL: a call
logged from a conversation is stored by the phone connector as the API stores it (one
message by the agent, one ``Call Completed`` event) and shows in the thread; bad input
shows the form again and stores nothing; CSRF and the inbox permission are required; no
form without a phone inbox."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.inbox.conftest import SHOP_NUMBER, TWILIO_ACCOUNT, TWILIO_TOKEN, post_twilio, twilio_sms

from plait.collect.event_store import events
from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.users import users
from plait.inbox.inboxes import create_inbox
from plait.inbox.schema import conversations, messages
from plait.web.inbox import _call_label

ANA = "+14155550123"
NOTES = "Parcel stuck at the depot; promised a call back tomorrow."


@pytest.fixture
def sms_inbox(engine: sa.Engine) -> dict[str, Any]:
    options = {
        "account_sid": TWILIO_ACCOUNT,
        "phone_number": SHOP_NUMBER,
        "api_url": "http://127.0.0.1:9",
    }
    with write(engine) as conn:
        return create_inbox(
            conn, "sms", "Shop SMS", options=options, secrets={"auth_token": TWILIO_TOKEN}
        )


@pytest.fixture
def phone_inbox(engine: sa.Engine) -> dict[str, Any]:
    with write(engine) as conn:
        return create_inbox(conn, "phone", "Contact centre", team="Support")


def text_in(client: TestClient, inbox: dict[str, Any], body: str, sender: str = ANA) -> str:
    """An inbound SMS through the signed webhook; returns its conversation's id."""
    assert post_twilio(client, inbox, twilio_sms(sender, body)).status_code == 200
    with read(client.app.state.engine) as conn:
        return str(
            conn.execute(sa.select(messages.c.conversation_id).where(messages.c.body == body))
            .scalars()
            .one()
        )


def minutes_ago(minutes: float) -> str:
    """A ``datetime-local`` value, in UTC (what the form sends without JavaScript)."""
    return f"{utcnow() - timedelta(minutes=minutes):%Y-%m-%dT%H:%M}"


def a_call(inbox: dict[str, Any], **fields: str) -> dict[str, str]:
    return {
        "inbox_id": inbox["id"],
        "direction": "outbound",
        "phone": ANA,
        "started_at": minutes_ago(15),
        "tz_offset": "0",
        "duration": "5",
        "notes": NOTES,
        **fields,
    }


def rows(engine: sa.Engine) -> dict[str, int]:
    """How many messages, events and conversations are stored."""
    with read(engine) as conn:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (messages, events, conversations)
        }


def thread(engine: sa.Engine, conversation_id: str) -> list[Any]:
    with read(engine) as conn:
        return conn.execute(
            sa.select(messages)
            .where(messages.c.conversation_id == UUID(conversation_id))
            .order_by(messages.c.created_at, messages.c.id)
        ).all()


def call_events(engine: sa.Engine) -> list[Any]:
    with read(engine) as conn:
        return conn.execute(sa.select(events).where(events.c.event == "Call Completed")).all()


def user_id(engine: sa.Engine, email: str) -> UUID:
    with read(engine) as conn:
        return conn.execute(sa.select(users.c.id).where(users.c.email == email)).scalar_one()


def alerts(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'role="alert"[^>]*>([^<]*)<', page)]


def calls_path(conversation_id: str) -> str:
    return f"/inbox/{conversation_id}/calls"


# --- logging calls ---------------------------------------------------------------------


def test_an_agent_logs_an_outbound_call_in_the_conversation(
    web_as, client, engine, sms_inbox, phone_inbox
) -> None:
    conversation_id = text_in(client, sms_inbox, "Where is my parcel?")
    agent = web_as("agent")
    page = agent.get_page(f"/inbox/{conversation_id}?queue=all")
    form = page.split('id="call-form"', 1)[1].split("</form>", 1)[0]
    assert f'action="/inbox/{conversation_id}/calls"' in page
    assert f'<option value="{phone_inbox["id"]}" selected>📞 Contact centre</option>' in form
    assert f'name="phone" value="{ANA}"' in form  # the number the customer texted from
    assert 'name="queue" value="all"' in form
    assert '<summary><span aria-hidden="true">📞</span> Log a call</summary>' in page

    # the browser is two hours ahead of UTC: 12:00 there is 10:00 UTC
    started = (utcnow() - timedelta(hours=3)).replace(second=0, microsecond=0)
    local = f"{started + timedelta(hours=2):%Y-%m-%dT%H:%M}"
    fields = a_call(phone_inbox, started_at=local, tz_offset="-120", queue="all")
    before = rows(engine)
    response = agent.post(calls_path(conversation_id), fields)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/inbox/{conversation_id}?queue=all"
    after = rows(engine)
    assert after["messages"] == before["messages"] + 1
    assert after["events"] == before["events"] + 1
    assert after["conversations"] == before["conversations"]

    [text] = [m for m in thread(engine, conversation_id) if m.channel == "sms"]
    [call] = [m for m in thread(engine, conversation_id) if m.channel == "phone"]
    assert text.direction == "in"
    assert (call.direction, call.contact) == ("out", ANA)
    assert call.inbox_id == UUID(phone_inbox["id"])
    assert call.author_id == user_id(engine, "agent@example.com")
    assert call.body == NOTES
    assert call.created_at == started
    [event] = call_events(engine)
    assert event.id == call.event_id
    assert event.channel == "Phone"
    assert event.properties["direction"] == "outbound"
    assert event.properties["duration_seconds"] == 300
    assert event.properties["agent"] == "agent@example.com"
    page = agent.get_page(response.headers["location"])
    shown = page.split(f'data-id="{call.id}"', 1)[1].split("</li>", 1)[0]
    assert "📞</span> Call, 5 min</span>" in shown
    assert f"agent@example.com called {ANA}" in shown
    assert NOTES in shown
    assert "Sent" not in shown  # a logged call was not delivered by anyone
    assert "call-notice" not in page


def test_an_inbound_call_with_a_national_number_and_no_duration(
    web_as, client, engine, sms_inbox, phone_inbox
) -> None:
    conversation_id = text_in(client, sms_inbox, "Hello?")
    agent = web_as("admin")
    fields = a_call(
        phone_inbox,
        direction="inbound",
        phone=" (415) 555-0123 ",
        duration="",
        notes="  Wants to change the delivery address.  ",
    )
    response = agent.post(calls_path(conversation_id), fields)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/inbox/{conversation_id}"
    [call] = [m for m in thread(engine, conversation_id) if m.channel == "phone"]
    assert (call.direction, call.contact) == ("in", ANA)
    assert call.author_id == user_id(engine, "admin@example.com")
    assert call.body == "Wants to change the delivery address."
    [event] = call_events(engine)
    assert event.properties["direction"] == "inbound"
    assert event.properties["duration_seconds"] == 0

    page = agent.get_page(f"/inbox/{conversation_id}")
    shown = page.split(f'data-id="{call.id}"', 1)[1].split("</li>", 1)[0]
    assert 'class="msg msg-inbound"' in page.split(f'data-id="{call.id}"', 1)[0][-80:]
    assert "📞</span> Call</span>" in shown
    assert f"{ANA} called</span>" in shown  # no name: the number, said once


def test_the_same_call_twice_is_stored_once(web_as, client, engine, sms_inbox, phone_inbox):
    conversation_id = text_in(client, sms_inbox, "Hi")
    agent = web_as("agent")
    fields = a_call(phone_inbox)
    assert agent.post(calls_path(conversation_id), fields).status_code == 303
    before = rows(engine)
    again = agent.post(calls_path(conversation_id), fields)
    assert again.status_code == 303
    assert again.headers["location"] == f"/inbox/{conversation_id}?call=duplicate"
    assert rows(engine) == before
    page = agent.get_page(again.headers["location"])
    assert "This call was logged before; nothing new was stored." in page


def test_a_call_after_the_conversation_was_resolved_opens_the_next_one(
    web_as, client, engine, sms_inbox, phone_inbox
) -> None:
    conversation_id = text_in(client, sms_inbox, "Thanks, all good")
    agent = web_as("agent")
    assert agent.post(f"/inbox/{conversation_id}/update", {"status": "resolved"}).status_code == 303
    response = agent.post(calls_path(conversation_id), a_call(phone_inbox))
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    landed = re.fullmatch(r"/inbox/([0-9a-f-]+)\?call=elsewhere", location)
    assert landed
    assert landed.group(1) != conversation_id
    [call] = thread(engine, landed.group(1))
    assert (call.channel, call.direction) == ("phone", "out")
    page = agent.get_page(location)
    assert "The call was logged here" in page
    # the page's other forms go back to it without the notice
    assert 'name="back" value="/inbox/' in page
    assert "call=elsewhere" not in page.split('name="back" value="', 1)[1].split('"', 1)[0]


# --- bad input -------------------------------------------------------------------------


def test_bad_calls_reshow_the_form_with_the_error_and_store_nothing(
    web_as, client, engine, sms_inbox, phone_inbox
) -> None:
    conversation_id = text_in(client, sms_inbox, "Call me")
    agent = web_as("agent")
    before = rows(engine)
    for fields, status, words, field in (
        ({"notes": "   "}, 400, "write what the call was about", "call-notes"),
        ({"phone": "12"}, 400, "phone '12' is not a valid number", "call-phone"),
        ({"phone": "call me maybe"}, 400, "is not a valid number", "call-phone"),
        ({"phone": ""}, 400, "phone", "call-phone"),
        ({"started_at": minutes_ago(-60)}, 400, "started_at is in the future", "call-started"),
        ({"started_at": "soon"}, 400, "give the date and time the call started", "call-started"),
        ({"started_at": "2026-02-30T10:00"}, 400, "the call started", "call-started"),
        ({"started_at": "0001-01-01T00:00", "tz_offset": "-60"}, 400, "started", "call-started"),
        ({"tz_offset": "east"}, 400, "the call started", "call-started"),
        ({"duration": "-3"}, 400, "a number of minutes", "call-duration"),
        ({"duration": "ages"}, 400, "a number of minutes", "call-duration"),
        ({"duration": "nan"}, 400, "a number of minutes", "call-duration"),
        ({"direction": "sideways"}, 400, "direction", None),
        ({"inbox_id": sms_inbox["id"]}, 404, "no such inbox", "call-inbox"),
        ({"inbox_id": ""}, 404, "no such inbox", "call-inbox"),
    ):
        response = agent.post(calls_path(conversation_id), a_call(phone_inbox, **fields))
        assert response.status_code == status, (fields, response.text)
        assert any(words in text for text in alerts(response.text)), (fields, alerts(response.text))
        page = response.text
        assert '<details class="log-call" open>' in page
        assert 'id="call-error"' in page
        notes = fields.get("notes", NOTES)
        assert f">{html.escape(notes)}</textarea>" in page  # what was typed is kept
        if field:
            tag = re.search(rf'<[a-z]+ [^>]*id="{field}"[^>]*>', page).group(0)
            assert 'aria-invalid="true"' in tag, (fields, tag)
        # still the conversation's page, with its thread
        assert "Call me" in page
        assert f'name="back" value="/inbox/{conversation_id}?queue=' in page
    assert rows(engine) == before
    assert call_events(engine) == []


def test_an_unknown_conversation_is_not_found(web_as, phone_inbox) -> None:
    agent = web_as("agent")
    missing = "01900000-0000-7000-8000-000000000000"
    assert agent.post(calls_path(missing), a_call(phone_inbox)).status_code == 404


# --- who may log calls -----------------------------------------------------------------


def test_logging_a_call_needs_the_csrf_token(web_as, client, engine, sms_inbox, phone_inbox):
    conversation_id = text_in(client, sms_inbox, "Hello")
    agent = web_as("agent")
    before = rows(engine)
    fields = a_call(phone_inbox)
    path = calls_path(conversation_id)
    missing = agent.client.post(path, data=fields, follow_redirects=False)
    assert missing.status_code == 403
    assert "did not come from Plait" in missing.text
    wrong = agent.client.post(path, data={**fields, "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    assert agent.client.post(path, data=fields, headers={"X-CSRF-Token": "x"}).status_code == 403
    assert rows(engine) == before


def test_only_roles_that_work_the_inbox_log_calls(
    web_as, client, engine, sms_inbox, phone_inbox
) -> None:
    conversation_id = text_in(client, sms_inbox, "Hello")
    before = rows(engine)
    marketer = web_as("marketer")
    refused = marketer.post(calls_path(conversation_id), a_call(phone_inbox))
    assert refused.status_code == 403
    assert "Not allowed" in refused.text
    stranger = client.post(calls_path(conversation_id), data=a_call(phone_inbox))
    assert stranger.status_code == 401
    assert rows(engine) == before


# --- no phone inbox --------------------------------------------------------------------


def test_without_a_phone_inbox_the_page_says_how_to_get_one(web_as, client, sms_inbox) -> None:
    conversation_id = text_in(client, sms_inbox, "Hello")
    agent_page = web_as("agent").get_page(f"/inbox/{conversation_id}")
    assert 'id="call-form"' not in agent_page
    assert "Log a call" in agent_page
    assert "there is none yet: an admin can create one." in agent_page
    admin_page = web_as("admin").get_page(f"/inbox/{conversation_id}")
    assert 'id="call-form"' not in admin_page
    assert '<a href="/inbox/settings#new-inbox">create a phone inbox</a>' in admin_page


def test_a_disabled_phone_inbox_is_not_offered(web_as, client, engine, sms_inbox, phone_inbox):
    from plait.inbox.schema import inboxes

    conversation_id = text_in(client, sms_inbox, "Hello")
    with write(engine) as conn:
        conn.execute(
            inboxes.update()
            .where(inboxes.c.id == UUID(phone_inbox["id"]))
            .values(disabled_at=utcnow())
        )
    agent = web_as("agent")
    assert 'id="call-form"' not in agent.get_page(f"/inbox/{conversation_id}")
    response = agent.post(calls_path(conversation_id), a_call(phone_inbox))
    assert response.status_code == 404
    assert "no such inbox" in alerts(response.text)


# --- how a call reads in the thread ----------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "label"),
    [
        ({"duration_seconds": 300, "outcome": "answered"}, "Call, 5 min"),
        ({"duration_seconds": 200}, "Call, 3 min"),
        ({"duration_seconds": 40, "outcome": "voicemail"}, "Call, 40 s, voicemail"),
        ({"duration_seconds": 3900}, "Call, 1 h 5 min"),
        ({"duration_seconds": 7200}, "Call, 2 h"),
        ({"duration_seconds": 0, "outcome": "missed"}, "Call, missed"),
        ({}, "Call"),
    ],
)
def test_call_labels(properties: dict[str, Any], label: str) -> None:
    assert _call_label(properties) == label
