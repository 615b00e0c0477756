"""Inboxes: one per connected channel account (a Twilio number, a WhatsApp business number,
a Facebook page, a bot, a support address, the web chat). Each has its own source, so its
messages are events like any other, and its own provider options and secrets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plait.core.clock import isoformat, utcnow
from plait.core.errors import Conflict, InvalidInput, NotFound
from plait.core.ids import uuid7
from plait.core.sources import create_source
from plait.inbox.schema import inboxes, teams

EVENT_CHANNELS: Mapping[str, str] = {
    "email": "Email",
    "web_chat": "Live Chat",
    "sms": "SMS",
    "whatsapp": "WhatsApp",
    "messenger": "Messenger",
    "instagram": "Instagram",
    "telegram": "Telegram",
    "phone": "Phone",
    "api": "Unassigned",
}
"""Inbox channel → the channel its messages carry as events (and in attribution)."""

CONTACT_KINDS: Mapping[str, str] = {
    "email": "email",
    "sms": "phone",
    "whatsapp": "wa_id",
    "messenger": "messenger_psid",
    "instagram": "instagram_id",
    "telegram": "telegram_id",
    "phone": "phone",
    "web_chat": "anonymous_id",
}
"""Inbox channel → the identifier kind of a customer's address on it."""

WEBHOOK_PATHS: Mapping[str, str] = {
    "sms": "/webhooks/twilio/{id}",
    "whatsapp": "/webhooks/meta/{id}",
    "messenger": "/webhooks/meta/{id}",
    "instagram": "/webhooks/meta/{id}",
    "telegram": "/webhooks/telegram/{id}",
    "api": "/api/inbox/inboxes/{id}/messages",
    "phone": "/api/inbox/inboxes/{id}/calls",
}


@dataclass(frozen=True)
class Inbox:
    """An inbox as connectors need it."""

    id: UUID
    name: str
    channel: str
    source_id: UUID
    team_id: UUID | None
    options: Mapping[str, Any]
    secrets: Mapping[str, Any]

    @property
    def event_channel(self) -> str:
        return EVENT_CHANNELS[self.channel]

    def option(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value in (None, "") else value


def check_channel(channel: str) -> str:
    """Return ``channel`` if inboxes can be made for it, else raise a clear error."""
    if channel not in EVENT_CHANNELS:
        raise InvalidInput(
            f"unknown channel {channel!r}; use one of {', '.join(EVENT_CHANNELS)}",
            field="channel",
        )
    return channel


def create_inbox(
    conn: Connection,
    channel: str,
    name: str,
    *,
    options: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    team: str | None = None,
) -> dict[str, Any]:
    """Create an inbox (and its source); ``team`` names a team, created if new."""
    check_channel(channel)
    name = (name or "").strip()
    if not name or len(name) > 90 or any(ord(char) < 32 for char in name):
        raise InvalidInput("an inbox name is 1 to 90 printable characters", field="name")
    if conn.execute(sa.select(inboxes.c.id).where(inboxes.c.name == name)).first():
        raise Conflict(f"an inbox named {name!r} exists already", field="name")
    source = create_source(conn, f"inbox: {name}", EVENT_CHANNELS[channel])
    row = {
        "id": uuid7(),
        "name": name,
        "channel": channel,
        "source_id": UUID(source["id"]),
        "team_id": ensure_team(conn, team) if team else None,
        "options": {k: v for k, v in (options or {}).items() if v not in (None, "")},
        "secrets": {k: v for k, v in (secrets or {}).items() if v not in (None, "")},
        "created_at": utcnow(),
    }
    conn.execute(inboxes.insert(), row)
    return public_inbox(row, team)


def ensure_team(conn: Connection, name: str) -> UUID:
    """The id of the team called ``name``, created if it does not exist."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a team name is 1 to 100 characters", field="team")
    found = conn.execute(sa.select(teams.c.id).where(teams.c.name == name)).scalar()
    if found is not None:
        return found
    team_id = uuid7()
    conn.execute(teams.insert(), {"id": team_id, "name": name, "created_at": utcnow()})
    return team_id


def get_inbox(conn: Connection, inbox_id: UUID | str) -> Inbox:
    """The enabled inbox with this id, or NotFound."""
    try:
        key = inbox_id if isinstance(inbox_id, UUID) else UUID(str(inbox_id))
    except ValueError:
        raise NotFound("no such inbox", field="inbox_id") from None
    row = conn.execute(
        sa.select(inboxes).where(inboxes.c.id == key, inboxes.c.disabled_at.is_(None))
    ).first()
    if row is None:
        raise NotFound("no such inbox", field="inbox_id")
    return inbox_of(row)


def inbox_of(row: Any) -> Inbox:
    return Inbox(
        id=row.id,
        name=row.name,
        channel=row.channel,
        source_id=row.source_id,
        team_id=row.team_id,
        options=row.options or {},
        secrets=row.secrets or {},
    )


def list_inboxes(conn: Connection) -> list[dict[str, Any]]:
    """Every inbox, without its secrets."""
    rows = conn.execute(
        sa.select(inboxes, teams.c.name.label("team"))
        .select_from(inboxes.outerjoin(teams, teams.c.id == inboxes.c.team_id))
        .order_by(inboxes.c.name)
    ).mappings()
    return [public_inbox(row, row["team"]) for row in rows]


def public_inbox(row: Mapping[str, Any], team: str | None) -> dict[str, Any]:
    """An inbox as the API shows it: options, and which secrets are set (not their values)."""
    path = WEBHOOK_PATHS.get(row["channel"])
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "channel": row["channel"],
        "team": team,
        "options": dict(row["options"] or {}),
        "secrets_set": sorted(row["secrets"] or {}),
        "webhook_path": path.format(id=row["id"]) if path else None,
        "created_at": isoformat(row["created_at"]),
        "disabled": row.get("disabled_at") is not None,
    }
