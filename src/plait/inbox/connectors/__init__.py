"""Channel connectors, one module per channel. Each parses its provider's webhooks into
:class:`~plait.inbox.receiving.Inbound` messages (in its own ``router``) and delivers
:class:`Outgoing` messages with a ``send`` function of the :data:`Sender` shape, through the
provider's real API at a configurable base URL."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from plait.core.settings import InboxSettings
from plait.inbox.inboxes import Inbox


@dataclass(frozen=True)
class Outgoing:
    """A message for a provider to deliver to ``contact``."""

    message_id: UUID
    contact: str
    body: str
    conversation_token: str
    subject: str | None = None
    email_message_id: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    attachments: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


class DeliveryFailed(Exception):
    """The provider did not take the message. ``permanent`` failures are not retried
    (a rejected recipient); others are (a timeout, a 5xx, a refused connection)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


Sender = Callable[[Inbox, Outgoing, InboxSettings, httpx.Client], str | None]
"""Deliver one message; returns the provider's message id (None if it gives none)."""

SENDERS: Mapping[str, str] = {
    "sms": "twilio_sms",
    "whatsapp": "meta",
    "messenger": "meta",
    "instagram": "meta",
    "telegram": "telegram",
    "email": "email",
    "web_chat": "web_chat",
    "api": "api",
    "phone": "phone",
}
"""Inbox channel → the connector module that delivers its messages."""


def sender_for(channel: str) -> Sender:
    """The ``send`` function of the channel's connector."""
    module = importlib.import_module(f"{__name__}.{SENDERS[channel]}")
    return module.send


def check_status(response: httpx.Response, provider: str) -> None:
    """Raise :class:`DeliveryFailed` for a provider's error response: 4xx (other than 408
    and 429) are permanent, the rest temporary."""
    if response.is_success:
        return
    permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
    detail = response.text[:300].strip()
    raise DeliveryFailed(
        f"{provider} answered {response.status_code}: {detail}", permanent=permanent
    )
