"""Inbound messages in groups: concurrent webhooks share the store and routing transactions
(the server's Receiver), and a group routes exactly as one message at a time would."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.inbox.conftest import twilio_sms
from tests.inbox.test_conversations import agent

from plait.collect.ingest import rules_from_settings
from plait.core.db import read, write
from plait.core.errors import InvalidInput
from plait.core.settings import Settings
from plait.inbox import routing
from plait.inbox.connectors.twilio_sms import parse_inbound
from plait.inbox.inboxes import Inbox, get_inbox
from plait.inbox.receiving import Inbound, receive_many, store_messages
from plait.inbox.routing import route_pending
from plait.inbox.schema import conversations, messages


@pytest.fixture
def inbox(engine: sa.Engine, sms_inbox: dict[str, Any]) -> Inbox:
    with read(engine) as conn:
        return get_inbox(conn, sms_inbox["id"])


def _counts(engine: sa.Engine) -> tuple[int, int, int]:
    with read(engine) as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()
        unrouted = conn.execute(
            sa.select(sa.func.count()).where(messages.c.conversation_id.is_(None))
        ).scalar_one()
        opened = conn.execute(sa.select(sa.func.count()).select_from(conversations)).scalar_one()
    return stored, unrouted, opened


def test_concurrent_messages_are_each_stored_once_routed_and_threaded_per_customer(
    client: TestClient, engine: sa.Engine, inbox: Inbox
) -> None:
    app = client.app.state
    forms = [
        twilio_sms(f"+141555503{n % 10:02d}", f"message {n}", f"SM{n:032d}") for n in range(60)
    ]
    replays = forms[:15]  # Twilio retrying deliveries it thinks failed
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda form: app.receiver.receive(inbox, parse_inbound(form)), forms + replays)
        )
    assert _counts(engine) == (60, 0, 10)
    by_sid: dict[str, list[Any]] = {}
    for form, result in zip(forms + replays, results, strict=True):
        by_sid.setdefault(form["MessageSid"], []).append(result)
    for outcomes in by_sid.values():
        assert [r.duplicate for r in outcomes].count(False) == 1
        assert len({r.message_id for r in outcomes}) == 1
    fresh = [r for r in results if not r.duplicate]
    assert len({r.conversation_id for r in fresh}) == 10
    assert None not in {r.conversation_id for r in fresh}


def test_a_bad_message_is_refused_alone_and_writes_nothing(
    client: TestClient, engine: sa.Engine, inbox: Inbox
) -> None:
    app = client.app.state
    bad = Inbound(provider_id="SMbad", contact="+14155550300", body="nul \x00 byte")
    with pytest.raises(InvalidInput, match="NUL"):
        app.receiver.receive(inbox, bad)
    assert _counts(engine) == (0, 0, 0)
    good = app.receiver.receive(inbox, parse_inbound(twilio_sms("+14155550300", "hello")))
    assert not good.duplicate
    assert good.conversation_id is not None


def test_one_group_stores_a_repeated_provider_id_once(
    client: TestClient, engine: sa.Engine, inbox: Inbox
) -> None:
    app = client.app.state
    earlier = app.receiver.receive(inbox, parse_inbound(twilio_sms("+14155550301", "hi", "SMa")))
    group = [twilio_sms("+14155550301", "again", "SMa"), twilio_sms("+14155550302", "x", "SMb")]
    group.append(group[1])
    with write(engine) as conn:
        outcomes = store_messages(conn, app.rules, [(inbox, parse_inbound(f)) for f in group])
    assert outcomes[0].duplicate
    assert outcomes[0].message_id == earlier.message_id
    assert outcomes[0].conversation_id == earlier.conversation_id
    assert not outcomes[1].duplicate
    assert outcomes[2].duplicate
    assert outcomes[2].message_id == outcomes[1].message_id
    assert _counts(engine)[0] == 2


def test_one_routing_transaction_keeps_the_round_robin_and_capacities(
    client: TestClient, engine: sa.Engine, settings: Settings, inbox: Inbox
) -> None:
    app = client.app.state
    ann = agent(engine, "ann@example.com", capacity=2)
    ben = agent(engine, "ben@example.com", capacity=1)
    cat = agent(engine, "cat@example.com", capacity=5)
    forms = [twilio_sms(f"+141555504{n:02d}", f"customer {n}") for n in range(7)]
    with write(engine) as conn:
        stored = store_messages(conn, app.rules, [(inbox, parse_inbound(f)) for f in forms[:6]])
    route_pending(engine, settings, only=[s.message_id for s in stored])
    with read(engine) as conn:  # the server's delivery worker may have routed them first
        rows = conn.execute(
            sa.select(messages.c.id, conversations.c.assignee_id).join(
                conversations, conversations.c.id == messages.c.conversation_id
            )
        )
        assignee = {row.id: row.assignee_id for row in rows}
    order = [assignee[s.message_id] for s in stored]
    assert [str(a) for a in order] == [ann, ben, cat, ann, cat, cat]
    later = app.receiver.receive(inbox, parse_inbound(forms[6]))
    with read(engine) as conn:
        chosen = conn.execute(
            sa.select(conversations.c.assignee_id).where(
                conversations.c.id == later.conversation_id
            )
        ).scalar_one()
    assert str(chosen) == cat


def test_a_routing_failure_leaves_the_messages_stored_for_the_next_router(
    engine: sa.Engine, settings: Settings, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = rules_from_settings(settings)
    arrival = (inbox, parse_inbound(twilio_sms("+14155550301", "hello")))

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("routing is broken")

    monkeypatch.setattr(routing, "Router", broken)
    with pytest.raises(RuntimeError, match="routing is broken"):
        receive_many(engine, settings, rules, [arrival])
    assert _counts(engine) == (1, 1, 0)

    monkeypatch.undo()
    assert len(route_pending(engine, settings)) == 1
    assert _counts(engine) == (1, 0, 1)
    again = receive_many(engine, settings, rules, [arrival])
    assert again[0].duplicate
    assert again[0].conversation_id is not None
