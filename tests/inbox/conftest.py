"""Fixtures for the inbox: inboxes created through the API, local provider servers, and
signed webhook calls."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import Api
from tests.inbox.providers import ProviderServer, Received

from plait.core.settings import InboxSettings, Settings
from plait.inbox.connectors.twilio_sms import signature

TWILIO_ACCOUNT = "AC" + "0" * 32
TWILIO_TOKEN = "twilio-auth-token-for-tests"
SHOP_NUMBER = "+15005550006"


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """``check()``'s first truthy result, polling until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "condition not met in time"
            return result
        time.sleep(0.05)


def _twilio_answer(request: Received) -> tuple[int, Any]:
    if request.path != f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages.json":
        return 404, {"code": 20404, "message": "The requested resource was not found"}
    form = request.form
    if not form.get("To", "").startswith("+"):
        return 400, {"code": 21211, "message": f"The 'To' number {form.get('To')} is not valid"}
    sid = "SM" + uuid.uuid4().hex
    return 201, {"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Test settings with quick outbox retries."""
    inbox = InboxSettings(retry_seconds=0.2, max_attempts=3, provider_timeout_seconds=3)
    return Settings(home=tmp_path / "home", database_url=database_url, inbox=inbox)


@pytest.fixture
def twilio() -> Iterator[ProviderServer]:
    """Twilio's Messages API on loopback."""
    server = ProviderServer(_twilio_answer)
    yield server
    server.close()


@pytest.fixture
def sms_inbox(admin_api: Api, twilio: ProviderServer) -> dict[str, Any]:
    return admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": "sms",
            "name": "Shop SMS",
            "team": "Support",
            "options": {
                "account_sid": TWILIO_ACCOUNT,
                "phone_number": SHOP_NUMBER,
                "api_url": twilio.url,
            },
            "secrets": {"auth_token": TWILIO_TOKEN},
        },
        status=201,
    )


def twilio_sms(sender: str, body: str, sid: str | None = None) -> dict[str, str]:
    """The parameters of Twilio's inbound-message webhook."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": SHOP_NUMBER,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": TWILIO_ACCOUNT,
        "From": sender,
        "ApiVersion": "2010-04-01",
        "Body": body,
    }


def post_twilio(
    client: TestClient, inbox: dict[str, Any], params: dict[str, str], token: str = TWILIO_TOKEN
) -> Any:
    """POST a webhook to the inbox as Twilio does, signed with ``token``."""
    url = f"http://testserver/webhooks/twilio/{inbox['id']}"
    return client.post(
        url, data=params, headers={"X-Twilio-Signature": signature(token, url, params)}
    )
