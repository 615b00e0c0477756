"""The one place Plait reads the time and parses timestamps; everything is UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from plait.core.errors import InvalidInput


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def parse_timestamp(value: object) -> datetime:
    """Parse an ISO 8601 string into an aware UTC datetime; naive values are taken as UTC.

    Raises ``ValueError`` for anything else, so callers can report the field.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("expected an ISO 8601 timestamp string")
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def optional_timestamp(value: object, field: str, label: str | None = None) -> datetime | None:
    """Parse a user-supplied timestamp that may be absent; a bad one is a clear InvalidInput
    naming ``field`` (shown as ``label``, e.g. ``--since``)."""
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise InvalidInput(
            f"{label or field} is not an ISO 8601 timestamp: {value!r}", field=field
        ) from None


def isoformat(moment: datetime | None) -> str | None:
    """Render a UTC datetime the way the Segment spec does: ``2026-01-02T03:04:05.678Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
