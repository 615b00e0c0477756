"""The real Segment and RudderStack Python SDKs against a live ``plait serve``.

Each SDK is configured as a client instance (never the module-global client) pointed at the
live server. Every HTTP exchange the SDK makes is captured with a ``requests`` response hook
on the SDK's own session, so the test can compare what the SDK actually sent (URL, batch,
``sentAt``, ``timestamp``, ``messageId``) with what Plait stored.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
import rudderstack.analytics
import rudderstack.analytics.request
import segment.analytics
import segment.analytics.request
import sqlalchemy as sa
from rudderstack.analytics.version import VERSION as RUDDER_VERSION
from segment.analytics.version import VERSION as SEGMENT_VERSION

from plait.collect.event_store import events
from plait.core.clock import parse_timestamp

pytestmark = pytest.mark.slow

MS = timedelta(milliseconds=1)
EXTRA_TRACKS = 20
TRAITS = {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro", "age": 36}
ORDER = {
    "order_id": "o-1001",
    "revenue": 42.5,
    "currency": "EUR",
    "products": [{"sku": "sku-1", "quantity": 2, "price": 21.25}],
}
TRACK_CONTEXT = {
    "campaign": {"source": "google", "medium": "cpc", "name": "spring-sale"},
    "locale": "en-GB",
}
PAGE_PROPERTIES = {"title": "Pricing", "url": "https://shop.example.com/pricing"}
PAGE_CONTEXT = {
    "page": {
        "url": "https://shop.example.com/pricing",
        "path": "/pricing",
        "title": "Pricing",
        "referrer": "https://www.google.com/",
    },
    "locale": "en-GB",
}


@dataclass(frozen=True)
class Sdk:
    """What differs between the two SDKs."""

    name: str
    make_client: Callable[..., Any]
    session: requests.Session
    library: dict[str, str]
    # RudderStack's identify() moves the traits into context.traits.
    traits_in_context: bool


SDKS = [
    Sdk(
        name="segment",
        make_client=lambda write_key, host, on_error: segment.analytics.Client(
            write_key,
            host=host,
            on_error=on_error,
            max_retries=0,
            timeout=10,
            upload_size=100,
            upload_interval=0.5,
        ),
        session=segment.analytics.request._session,
        library={"name": "analytics-python", "version": SEGMENT_VERSION},
        traits_in_context=False,
    ),
    Sdk(
        name="rudderstack",
        make_client=lambda write_key, host, on_error: rudderstack.analytics.Client(
            write_key,
            host=host,
            on_error=on_error,
            max_retries=0,
            timeout=10,
            upload_size=100,
            upload_interval=0.5,
        ),
        session=rudderstack.analytics.request._session,
        library={"name": "analytics-python", "version": RUDDER_VERSION},
        traits_in_context=True,
    ),
]


@pytest.fixture(params=SDKS, ids=lambda sdk: sdk.name)
def sdk(request: pytest.FixtureRequest) -> Sdk:
    return request.param


@pytest.fixture
def captured(sdk: Sdk, monkeypatch: pytest.MonkeyPatch) -> list[requests.Response]:
    """Every response the SDK's HTTP session receives (with its request)."""
    responses: list[requests.Response] = []

    def hook(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        responses.append(response)

    monkeypatch.setitem(sdk.session.hooks, "response", [hook])
    return responses


def _request_body(request: requests.PreparedRequest) -> dict[str, Any]:
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    assert body is not None
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


def _basic_user(request: requests.PreparedRequest) -> str:
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode().partition(":")[0]


def _stored_events(url: str, token: str) -> dict[str, dict[str, Any]]:
    """Every event of the "Website" source via the management API, by messageId."""
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(20):
            params: dict[str, Any] = {"source": "Website", "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            response = http.get("/api/events", params=params, timeout=10)
            assert response.status_code == 200, response.text
            page = response.json()
            for event in page["events"]:
                assert event["messageId"] not in found, "an event was listed twice"
                found[event["messageId"]] = event
            cursor = page["next_cursor"]
            if not cursor:
                return found
    raise AssertionError("/api/events kept returning a next_cursor")


def _db_times(engine: sa.Engine, message_ids: list[str]) -> dict[str, sa.Row]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                events.c.message_id,
                events.c.timestamp,
                events.c.original_timestamp,
                events.c.sent_at,
                events.c.received_at,
            ).where(events.c.message_id.in_(message_ids))
        ).all()
    return {row.message_id: row for row in rows}


def test_sdk_batch_is_stored_as_sent(
    sdk: Sdk,
    captured: list[requests.Response],
    live_server: Any,
    source: dict[str, Any],
    admin_token: str,
    engine: sa.Engine,
) -> None:
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    suffix = uuid.uuid4().hex[:12]
    user_id, anonymous_id = f"user-{suffix}", f"anon-{suffix}"
    # An explicit time in the past, with sub-millisecond digits: Segment sends it to the
    # millisecond, RudderStack to the microsecond.
    past = (datetime.now(UTC) - timedelta(days=2, hours=3)).replace(microsecond=123_456)

    client = sdk.make_client(
        source["write_key"], live_server.url, lambda exc, batch: errors.append((exc, batch))
    )
    try:
        _, identify = client.identify(
            user_id=user_id, anonymous_id=anonymous_id, traits=copy.deepcopy(TRAITS)
        )
        _, track = client.track(
            user_id=user_id,
            anonymous_id=anonymous_id,
            event="Order Completed",
            properties=copy.deepcopy(ORDER),
            context=copy.deepcopy(TRACK_CONTEXT),
            timestamp=past,
        )
        _, page = client.page(
            user_id=user_id,
            anonymous_id=anonymous_id,
            name="Pricing",
            properties=copy.deepcopy(PAGE_PROPERTIES),
            context=copy.deepcopy(PAGE_CONTEXT),
        )
        extras = [
            client.track(
                anonymous_id=anonymous_id, event="Product Viewed", properties={"position": i}
            )[1]
            for i in range(EXTRA_TRACKS)
        ]
        client.flush()
    finally:
        client.join()

    assert errors == []
    sent_messages = [identify, track, page, *extras]

    # What went over the wire: POST {host}/v1/batch, authenticated with the write key, in
    # batches (not one request per call), every one acknowledged.
    assert captured, "the SDK made no HTTP request"
    sent_at_of: dict[str, datetime] = {}
    wire: dict[str, dict[str, Any]] = {}
    for response in captured:
        assert response.request.method == "POST"
        assert response.request.url == f"{live_server.url}/v1/batch"
        assert _basic_user(response.request) == source["write_key"]
        assert response.status_code == 200, response.text
        body = _request_body(response.request)
        answer = response.json()
        assert answer["success"] is True
        assert answer["accepted"] == len(body["batch"])
        assert answer["duplicates"] == 0
        assert answer["rejected"] == []
        for message in body["batch"]:
            wire[message["messageId"]] = message
            sent_at_of[message["messageId"]] = parse_timestamp(body["sentAt"])
    assert max(len(_request_body(r.request)["batch"]) for r in captured) > 1
    assert sorted(wire) == sorted(m["messageId"] for m in sent_messages)

    stored = _stored_events(live_server.url, admin_token)
    assert sorted(stored) == sorted(wire)

    # Identity, payloads and context.
    for message in sent_messages:
        event = stored[message["messageId"]]
        assert event["messageId"] == message["messageId"]
        assert event["source"] == "Website"
        assert event["type"] == message["type"]
        assert event["anonymousId"] == anonymous_id
        assert event["userId"] == message.get("userId")
        assert event["context"]["library"] == sdk.library
        assert event["context"]["ip"] == "127.0.0.1"
        assert event["warnings"] is None

    stored_identify = stored[identify["messageId"]]
    assert stored_identify["userId"] == user_id
    assert stored_identify["traits"] == TRAITS
    assert stored_identify["traits"]["email"] == "ada@example.com"
    expected_identify_context = {"library": sdk.library, "ip": "127.0.0.1"}
    if sdk.traits_in_context:
        expected_identify_context["traits"] = TRAITS
    assert stored_identify["context"] == expected_identify_context

    stored_track = stored[track["messageId"]]
    assert stored_track["userId"] == user_id
    assert stored_track["event"] == "Order Completed"
    assert stored_track["properties"] == ORDER
    assert stored_track["context"] == {**TRACK_CONTEXT, "library": sdk.library, "ip": "127.0.0.1"}
    assert stored_track["channel"] == "Paid Search"
    assert stored_track["traffic"] == {
        "source": "google",
        "medium": "cpc",
        "campaign": "spring-sale",
    }

    stored_page = stored[page["messageId"]]
    assert stored_page["name"] == "Pricing"
    assert stored_page["properties"] == PAGE_PROPERTIES
    assert stored_page["context"] == {**PAGE_CONTEXT, "library": sdk.library, "ip": "127.0.0.1"}
    assert stored_page["channel"] == "Organic Search"
    assert stored_page["traffic"]["source"] == "google"
    assert stored_page["traffic"]["medium"] == "organic"

    for i, message in enumerate(extras):
        event = stored[message["messageId"]]
        assert event["event"] == "Product Viewed"
        assert event["userId"] is None
        assert event["properties"] == {"position": i}

    # Clock-skew correction: timestamp = receivedAt - (sentAt - originalTimestamp), where
    # sentAt is the batch's and originalTimestamp the message's own timestamp.
    precise = _db_times(engine, list(wire))
    for message_id, message in wire.items():
        row = precise[message_id]
        sent_at = sent_at_of[message_id]
        original = parse_timestamp(message["timestamp"])
        assert row.sent_at == sent_at
        assert row.original_timestamp == original
        assert abs(row.timestamp - (row.received_at - (row.sent_at - row.original_timestamp))) < MS
        # The API shows the same instants, truncated to the millisecond (so its own
        # arithmetic can be off by less than two milliseconds).
        event = stored[message_id]
        api = {
            name: parse_timestamp(event[name])
            for name in ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
        }
        assert abs(api["sentAt"] - sent_at) < MS
        assert abs(api["originalTimestamp"] - original) < MS
        assert abs(api["timestamp"] - row.timestamp) < MS
        corrected = api["receivedAt"] - (api["sentAt"] - api["originalTimestamp"])
        assert abs(api["timestamp"] - corrected) < 2 * MS
        # The SDK and the server share a clock, so the corrected time is the one the SDK
        # gave (or took at enqueue time) give or take the request's latency.
        assert abs(api["timestamp"] - original) < timedelta(seconds=5)

    track_time = parse_timestamp(stored_track["timestamp"])
    assert abs(track_time - past) < timedelta(seconds=5)
    assert abs(parse_timestamp(stored_track["originalTimestamp"]) - past) < MS
    assert parse_timestamp(stored_track["receivedAt"]) - track_time > timedelta(days=2)
    for message in (identify, page, *extras):
        event = stored[message["messageId"]]
        received = parse_timestamp(event["receivedAt"])
        assert abs(parse_timestamp(event["timestamp"]) - received) < timedelta(seconds=5)


def test_sdk_reports_a_rejected_write_key_through_on_error(
    sdk: Sdk,
    captured: list[requests.Response],
    live_server: Any,
    source: dict[str, Any],
    admin_token: str,
) -> None:
    """The error path is surfaced, so the empty ``errors`` list above means something."""
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    client = sdk.make_client(
        "not-a-write-key", live_server.url, lambda exc, batch: errors.append((exc, batch))
    )
    try:
        _, message = client.track(user_id="u-1", event="Signed Up")
        client.flush()
    finally:
        client.join()

    assert [response.status_code for response in captured] == [401]
    assert captured[0].json()["error"]["code"] == "invalid_write_key"
    assert len(errors) == 1
    _exc, batch = errors[0]
    assert [item["messageId"] for item in batch] == [message["messageId"]]
    assert _stored_events(live_server.url, admin_token) == {}
