"""Segment-spec messages in, event rows out: validation, clock-skew correction and enrichment.

Pure functions over plain data. One message becomes one row for the ``events`` table, or an
:class:`InvalidMessage` that names the field at fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from plait.collect.channels import DEFAULT_RULES, ChannelRules, event_channel
from plait.collect.devices import device_of
from plait.core.clock import isoformat, parse_timestamp
from plait.core.errors import InvalidInput
from plait.core.ids import uuid7
from plait.core.settings import IdentitySettings
from plait.core.sources import Source
from plait.identity.identifiers import IdentityRules, anchor_of, identifiers_of

TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
SHORT_TYPES = {
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
MAX_ID_LENGTH = 1024
_OBJECT_FIELDS = ("traits", "properties", "context", "integrations")


def check_type(value: str | None, label: str = "type") -> str | None:
    """A message type given as a filter or option: None, or one of :data:`TYPES`."""
    if value is not None and value not in TYPES:
        raise InvalidInput(f"{label} must be one of {', '.join(sorted(TYPES))}", field="type")
    return value


class InvalidMessage(Exception):
    """A message that cannot be stored, with a stable code and the field at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


@dataclass(frozen=True)
class Envelope:
    """What a request adds to each of its messages: who sent it, when, and shared fields."""

    source: Source
    received_at: datetime
    sent_at: datetime | None = None
    context: Mapping[str, Any] | None = None
    integrations: Mapping[str, Any] | None = None
    ip: str | None = None


DEFAULT_IDENTITY = IdentityRules.from_settings(IdentitySettings())


@dataclass(frozen=True)
class Rules:
    """The settings normalisation depends on."""

    channels: ChannelRules = DEFAULT_RULES
    max_event_bytes: int = 32 * 1024
    future_tolerance: timedelta = timedelta(minutes=5)
    identity: IdentityRules = DEFAULT_IDENTITY


_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def check_no_nul(encoded: bytes) -> None:
    """Refuse JSON holding the NUL character, which PostgreSQL cannot store in text."""
    if b"\\u0000" in encoded and _NUL.search(encoded):
        raise InvalidMessage(
            "invalid_character", "strings may not contain the NUL character (\\u0000)"
        )


def random_message_id(_message: Mapping[str, Any]) -> str:
    """A fresh message id for a message that came without one."""
    return str(uuid7())


def normalize(
    message: Any,
    envelope: Envelope,
    rules: Rules,
    *,
    type_: str | None = None,
    message_id: Callable[[Mapping[str, Any]], str] = random_message_id,
    check_size: bool = True,
) -> dict[str, Any]:
    """Validate one message and turn it into an ``events`` row (enriched, skew-corrected).

    ``type_`` is the type fixed by the endpoint (``/v1/track``); for batch items it is None
    and the message's own ``type`` decides.
    """
    if not isinstance(message, dict):
        raise InvalidMessage("invalid_event", "an event must be a JSON object")
    encoded = orjson.dumps(message)
    if check_size and len(encoded) > rules.max_event_bytes:
        raise InvalidMessage(
            "event_too_large", f"an event may be at most {rules.max_event_bytes} bytes"
        )
    check_no_nul(encoded)
    kind = type_ or message.get("type")
    if kind not in TYPES:
        raise InvalidMessage(
            "invalid_type", f"type must be one of {', '.join(sorted(TYPES))}", "type"
        )
    for name in _OBJECT_FIELDS:
        value = message.get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidMessage("invalid_field", f"{name} must be an object", name)

    user_id = _identifier(message, "userId")
    anonymous_id = _identifier(message, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidMessage("missing_id", "userId or anonymousId is required", "userId")
    event = name = group_id = previous_id = None
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise InvalidMessage("missing_field", "track calls need an event name", "event")
        if len(event) > 500:
            raise InvalidMessage("invalid_field", "event names are at most 500 characters", "event")
    elif kind in ("page", "screen"):
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidMessage("invalid_field", "name must be a string", "name")
    elif kind == "group":
        group_id = _identifier(message, "groupId")
        if group_id is None:
            raise InvalidMessage("missing_field", "group calls need a groupId", "groupId")
    elif kind == "alias":
        previous_id = _identifier(message, "previousId")
        if previous_id is None:
            raise InvalidMessage("missing_field", "alias calls need a previousId", "previousId")

    context = _merged(envelope.context, message.get("context"))
    if envelope.ip and "ip" not in context:
        context["ip"] = envelope.ip
    integrations = _merged(envelope.integrations, message.get("integrations"))
    properties = message.get("properties") or {}
    category = message.get("category")
    if kind == "page" and isinstance(category, str) and category and "category" not in properties:
        properties = {**properties, "category": category}
    traits = message.get("traits")
    if traits is None and kind == "identify" and isinstance(context.get("traits"), dict):
        traits = context["traits"]

    timestamp, original, sent_at, warnings = _timestamps(message, envelope, rules)
    channel, traffic = event_channel(
        context, properties, kind, envelope.source.channel, rules.channels
    )
    device = device_of(context)
    raw_id = message.get("messageId")
    if raw_id is None or raw_id == "":
        msg_id = message_id(message)
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
        msg_id = str(raw_id)
        if len(msg_id) > MAX_ID_LENGTH:
            raise InvalidMessage("invalid_field", "messageId is too long", "messageId")
    else:
        raise InvalidMessage("invalid_field", "messageId must be a string", "messageId")

    row = {
        "id": uuid7(),
        "message_id": msg_id,
        "source_id": envelope.source.id,
        "type": kind,
        "event": event,
        "name": name,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "group_id": group_id,
        "previous_id": previous_id,
        "channel": channel,
        "traffic_source": traffic.source if traffic else None,
        "traffic_medium": traffic.medium if traffic else None,
        "traffic_campaign": traffic.campaign if traffic else None,
        "device_type": device.type,
        "os": device.os,
        "browser": device.browser,
        "timestamp": timestamp,
        "original_timestamp": original,
        "sent_at": sent_at,
        "received_at": envelope.received_at,
        "traits": traits,
        "properties": properties,
        "context": context,
        "integrations": integrations or None,
        "warnings": warnings or None,
    }
    identifiers = identifiers_of(row, rules.identity)
    row["identity_kind"], row["identity_value"] = anchor_of(identifiers) or (None, None)
    row["identifiers"] = identifiers
    return row


def _identifier(message: Mapping[str, Any], field: str) -> str | None:
    value = message.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidMessage("invalid_field", f"{field} must be a string", field)
    text = str(value).strip()
    if len(text) > MAX_ID_LENGTH:
        raise InvalidMessage("invalid_field", f"{field} is longer than {MAX_ID_LENGTH}", field)
    return text or None


def _timestamp_field(message: Mapping[str, Any], field: str) -> datetime | None:
    value = message.get(field)
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError):
        raise InvalidMessage(
            "invalid_timestamp", f"{field} is not an ISO 8601 timestamp: {value!r}", field
        ) from None


def _timestamps(
    message: Mapping[str, Any], envelope: Envelope, rules: Rules
) -> tuple[datetime, datetime | None, datetime | None, list[str]]:
    """The event's corrected time: ``receivedAt - (sentAt - originalTimestamp)``."""
    original = _timestamp_field(message, "originalTimestamp") or _timestamp_field(
        message, "timestamp"
    )
    sent_at = _timestamp_field(message, "sentAt") or envelope.sent_at
    received = envelope.received_at
    if original is not None and sent_at is not None:
        timestamp = received - (sent_at - original)
    else:
        timestamp = original or received
    warnings = []
    if timestamp - received > rules.future_tolerance:
        warnings.append(f"timestamp {isoformat(timestamp)} was in the future; set to receivedAt")
        timestamp = received
    return timestamp, original, sent_at, warnings


def _merged(base: Mapping[str, Any] | None, own: Mapping[str, Any] | None) -> dict[str, Any]:
    """``own`` over ``base``, merging nested objects key by key."""
    if not base:
        return dict(own) if own else {}
    merged = dict(base)
    for key, value in (own or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged
