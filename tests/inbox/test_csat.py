"""CSAT: resolving a conversation sends the customer a survey link on its channel; the public
page records one rating, on the conversation, in the reports and on the timeline."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import Api
from tests.inbox.conftest import eventually, post_twilio, twilio_sms
from tests.inbox.providers import ProviderServer

from plait.core.settings import Settings
from plait.inbox.csat import on_resolved, send_survey
from plait.inbox.schema import conversations, messages
from plait.profiles.pipeline import resolve

CUSTOMER = "+14155550199"
LINK = re.compile(r"(https?://\S+)/csat/([A-Za-z0-9_-]+)")


def start(client: TestClient, admin_api: Api, inbox: dict[str, Any], body: str) -> str:
    """A customer's SMS; the id of the conversation it opened."""
    assert post_twilio(client, inbox, twilio_sms(CUSTOMER, body)).status_code == 200
    return admin_api.get("/api/inbox/conversations")["conversations"][0]["id"]


def resolve_conversation(admin_api: Api, conversation_id: str) -> dict[str, Any]:
    response = admin_api.client.patch(
        f"/api/inbox/conversations/{conversation_id}",
        json={"status": "resolved"},
        headers=admin_api.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


def surveys(twilio: ProviderServer) -> list[tuple[str, str]]:
    """(base URL, token) of every survey link Twilio was asked to send."""
    return [found.groups() for r in twilio.requests if (found := LINK.search(r.form["Body"]))]


def stored(engine: sa.Engine, conversation_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(conversations).where(conversations.c.id == UUID(conversation_id))
        ).one()


def test_a_resolved_sms_conversation_is_rated_once_on_the_public_page(
    client: TestClient,
    engine: sa.Engine,
    settings: Settings,
    admin_api: Api,
    sms_inbox: dict[str, Any],
    twilio: ProviderServer,
) -> None:
    conversation_id = start(client, admin_api, sms_inbox, "My order arrived broken")
    admin_api.post(
        f"/api/inbox/conversations/{conversation_id}/messages",
        {"body": "Sorry! A replacement is on its way."},
        status=201,
    )
    resolve_conversation(admin_api, conversation_id)

    (base, token), = eventually(lambda: surveys(twilio))  # fmt: skip
    assert base == "http://testserver"
    survey = next(r for r in twilio.requests if token in r.form["Body"])
    assert survey.form["To"] == CUSTOMER
    assert survey.form["Body"].startswith("Thanks for getting in touch! How did we do?")
    row = stored(engine, conversation_id)
    assert row.csat_token == token
    assert token != row.token  # never the conversation's reply token
    detail = admin_api.get(f"/api/inbox/conversations/{conversation_id}")
    assert detail["messages"][-1]["direction"] == "out"
    assert detail["messages"][-1]["author_id"] is None
    assert detail["status"] == "resolved"

    page = client.get(f"/csat/{token}")
    assert page.status_code == 200
    assert "How did we do?" in page.text
    assert re.findall(r'name="score" value="(\d)"', page.text) == ["1", "2", "3", "4", "5"]
    assert 'name="comment"' in page.text
    assert not re.search(r"<script(?![^>]*\ssrc=)", page.text)  # the CSP allows no inline script
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert stored(engine, conversation_id).csat_score is None  # opening the link records nothing

    answered = client.post(f"/csat/{token}", data={"score": "5", "comment": " Quick and kind "})
    assert answered.status_code == 200
    assert "Your rating of 5 out of 5 has been recorded" in answered.text
    again = client.post(f"/csat/{token}", data={"score": "1", "comment": "changed my mind"})
    assert again.status_code == 409
    assert "already been answered (rating: 5 out of 5)" in again.text
    assert "not recorded" in again.text
    row = stored(engine, conversation_id)
    assert (row.csat_score, row.csat_comment) == (5, "Quick and kind")
    assert row.csat_answered_at is not None
    assert "already been answered" in client.get(f"/csat/{token}").text
    assert admin_api.get(f"/api/inbox/conversations/{conversation_id}")["csat"] == 5

    report = admin_api.get("/api/inbox/reports?by=channel")
    sms = next(r for r in report["rows"] if r["channel"] == "sms")
    assert (sms["csat_responses"], sms["csat_average"], sms["csat_satisfied"]) == (1, 5.0, 1.0)

    resolve(engine, settings)
    profile = admin_api.get(f"/api/profiles/lookup?kind=phone&value={CUSTOMER}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    answer = next(e for e in timeline if e["event"] == "Survey Answered")
    assert answer["properties"]["score"] == 5
    assert answer["properties"]["conversation_id"] == conversation_id
    assert answer["channel"] == "SMS"


def test_the_survey_is_not_a_first_response(
    client: TestClient,
    engine: sa.Engine,
    admin_api: Api,
    sms_inbox: dict[str, Any],
    twilio: ProviderServer,
) -> None:
    conversation_id = start(client, admin_api, sms_inbox, "Never mind, found it")
    resolve_conversation(admin_api, conversation_id)
    eventually(lambda: surveys(twilio))
    row = stored(engine, conversation_id)
    assert row.first_response_at is None
    assert row.first_response_seconds is None
    report = admin_api.get("/api/inbox/reports")["total"]
    assert (report["first_responses"], report["resolved"], report["outbound"]) == (0, 1, 1)


def test_resolving_again_resends_an_unanswered_survey_but_never_an_answered_one(
    client: TestClient,
    engine: sa.Engine,
    admin_api: Api,
    sms_inbox: dict[str, Any],
    twilio: ProviderServer,
) -> None:
    conversation_id = start(client, admin_api, sms_inbox, "Question one")
    resolve_conversation(admin_api, conversation_id)
    (_, token), = eventually(lambda: surveys(twilio))  # fmt: skip
    reopened = admin_api.client.patch(
        f"/api/inbox/conversations/{conversation_id}",
        json={"status": "open"},
        headers=admin_api.headers,
    )
    assert reopened.status_code == 200
    resolve_conversation(admin_api, conversation_id)
    links = eventually(lambda: len(surveys(twilio)) == 2 and surveys(twilio))
    assert [found for _, found in links] == [token, token]

    assert client.post(f"/csat/{token}", data={"score": "2"}).status_code == 200
    admin_api.client.patch(
        f"/api/inbox/conversations/{conversation_id}",
        json={"status": "open"},
        headers=admin_api.headers,
    ).raise_for_status()
    resolve_conversation(admin_api, conversation_id)
    with engine.connect() as conn:
        outbound = conn.execute(
            sa.select(sa.func.count()).where(messages.c.direction == "out")
        ).scalar_one()
    assert outbound == 2


@pytest.mark.parametrize("token", ["not-a-survey-token-at-all", "x", "a" * 41, "bad%20token!!"])
def test_an_unknown_survey_is_not_found(
    client: TestClient, token: str, sms_inbox: dict[str, Any]
) -> None:
    page = client.get(f"/csat/{token}")
    assert page.status_code == 404
    assert "This survey link is not valid" in page.text
    assert client.post(f"/csat/{token}", data={"score": "5"}).status_code == 404


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"score": "7"}, "Please choose a rating from 1 to 5."),
        ({"score": "0"}, "Please choose a rating from 1 to 5."),
        ({"score": "great"}, "Please choose a rating from 1 to 5."),
        ({"comment": "no score"}, "Please choose a rating from 1 to 5."),
        ({"score": "4", "comment": "x" * 2001}, "under 2000 characters"),
    ],
)
def test_a_bad_answer_is_refused_and_records_nothing(
    client: TestClient,
    engine: sa.Engine,
    admin_api: Api,
    sms_inbox: dict[str, Any],
    twilio: ProviderServer,
    form: dict[str, str],
    message: str,
) -> None:
    conversation_id = start(client, admin_api, sms_inbox, "Hello")
    resolve_conversation(admin_api, conversation_id)
    (_, token), = eventually(lambda: surveys(twilio))  # fmt: skip
    refused = client.post(f"/csat/{token}", data=form)
    assert refused.status_code == 400
    assert message in refused.text
    assert 'name="score"' in refused.text  # the form again, to try once more
    row = stored(engine, conversation_id)
    assert (row.csat_score, row.csat_answered_at) == (None, None)
    assert client.post(f"/csat/{token}", data={"score": "4"}).status_code == 200


def test_no_survey_when_csat_is_off_or_before_resolution(
    client: TestClient,
    engine: sa.Engine,
    settings: Settings,
    admin_api: Api,
    sms_inbox: dict[str, Any],
) -> None:
    conversation_id = UUID(start(client, admin_api, sms_inbox, "Hi"))
    rules = client.app.state.rules
    assert send_survey(engine, settings, rules, conversation_id, "http://x") is None  # open
    with engine.begin() as conn:
        conn.execute(conversations.update().values(status="resolved"))
    off = settings.model_copy(update={"inbox": settings.inbox.model_copy(update={"csat": False})})
    assert send_survey(engine, off, rules, conversation_id, "http://x") is None
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(messages.c.direction == "out")
        assert conn.execute(query).scalar_one() == 0
    sent = send_survey(engine, settings, rules, conversation_id, "http://x/")
    assert sent is not None
    assert "http://x/csat/" in sent["body"]


def test_the_public_url_names_the_link_behind_a_proxy(
    client: TestClient, engine: sa.Engine, settings: Settings, sms_inbox: dict[str, Any],
    admin_api: Api, twilio: ProviderServer,
) -> None:  # fmt: skip
    conversation_id = start(client, admin_api, sms_inbox, "Hi there")
    with engine.begin() as conn:
        conn.execute(conversations.update().values(status="resolved"))
    public = settings.model_copy(
        update={"server": settings.server.model_copy(update={"public_url": "https://help.shop"})}
    )
    state = SimpleNamespace(settings=public, engine=engine, rules=client.app.state.rules)
    on_resolved(state)(UUID(conversation_id), "http://10.0.0.7:8400/")
    with engine.connect() as conn:
        body = conn.execute(
            sa.select(messages.c.body).where(messages.c.direction == "out")
        ).scalar_one()
    assert LINK.search(body).group(1) == "https://help.shop"
