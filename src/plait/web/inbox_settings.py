"""The inbox settings page (admins): inboxes with the webhook URL to give each provider,
connecting a new one with its provider options and secrets (those of ``plait inboxes
create``), canned replies, teams and their members, and agents' availability and capacity.

Changes go through the inbox API's functions (``plait.inbox.api``) with the signed-in admin
as the principal, as the workspace's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.engine import Connection

from plait.core.db import read, write
from plait.core.errors import InvalidInput, PlaitError
from plait.core.users import users
from plait.inbox.api import (
    Availability,
    CannedReply,
    InboxRequest,
    TeamMember,
    delete_canned,
    get_canned,
    post_canned,
    post_inbox,
    post_member,
    put_agent,
    with_webhook_url,
)
from plait.inbox.assignment import remove_from_team
from plait.inbox.conversations import list_teams
from plait.inbox.inboxes import EVENT_CHANNELS, list_inboxes
from plait.inbox.schema import agents, team_members, teams
from plait.web.access import editor, viewer
from plait.web.inbox import CHANNEL_LABELS, api_model, inbox_icon
from plait.web.sessions import SignedIn
from plait.web.templating import render

router = APIRouter(include_in_schema=False)

Manager = Annotated[SignedIn, Depends(viewer("inbox:manage"))]
ManagerForm = Annotated[SignedIn, Depends(editor("inbox:manage"))]

META = ("whatsapp", "messenger", "instagram")
MAX_VALUE = 2000


@dataclass(frozen=True)
class ProviderField:
    """A provider setting of the inbox form: its ``plait inboxes create`` option name (the
    form field), the options or secrets key it fills, and the channels it applies to."""

    name: str
    label: str
    key: str
    secret: bool
    channels: tuple[str, ...]
    hint: str = ""


PROVIDER_FIELDS = (
    ProviderField("twilio_account_sid", "Twilio Account SID", "account_sid", False, ("sms",)),
    ProviderField(
        "twilio_auth_token",
        "Twilio auth token",
        "auth_token",
        True,
        ("sms",),
        "Verifies X-Twilio-Signature on every webhook, and sends replies.",
    ),
    ProviderField(
        "phone_number", "Sender phone number", "phone_number", False, ("sms", "whatsapp")
    ),
    ProviderField(
        "meta_app_secret",
        "Meta app secret",
        "app_secret",
        True,
        META,
        "Verifies X-Hub-Signature-256 on every webhook.",
    ),
    ProviderField(
        "meta_verify_token",
        "Webhook verify token",
        "verify_token",
        True,
        META,
        "Any secret text; type the same in Meta's webhook settings (hub.verify_token).",
    ),
    ProviderField("meta_access_token", "Access token", "access_token", True, META),
    ProviderField(
        "phone_number_id", "WhatsApp phone number id", "phone_number_id", False, ("whatsapp",)
    ),
    ProviderField(
        "page_id", "Page or Instagram account id", "page_id", False, ("messenger", "instagram")
    ),
    ProviderField("telegram_bot_token", "Bot token", "bot_token", True, ("telegram",)),
    ProviderField(
        "telegram_secret_token",
        "Webhook secret token",
        "secret_token",
        True,
        ("telegram",),
        "Checked against X-Telegram-Bot-Api-Secret-Token; give it to setWebhook.",
    ),
    ProviderField(
        "address",
        "Email addresses",
        "addresses",
        False,
        ("email",),
        "The addresses this inbox receives, separated by commas; the first sends replies.",
    ),
    ProviderField(
        "api_url",
        "Provider API base URL",
        "api_url",
        False,
        ("sms", *META, "telegram"),
        "Leave empty for the provider's own API.",
    ),
    ProviderField(
        "callback_url", "Callback URL", "callback_url", False, ("api",), "Where replies go."
    ),
)

NOTICES = {
    "canned": "Canned reply saved.",
    "canned_deleted": "Canned reply deleted.",
    "member": "Team member added.",
    "member_removed": "Team member removed.",
    "agent": "Agent updated.",
}


@router.get("/inbox/settings")
def settings_page(
    request: Request, person: Manager, created: str | None = None, done: str | None = None
) -> Response:
    """Inboxes, canned replies, teams and agents."""
    return _page(request, person, created=created, notice=NOTICES.get(done or ""))


@router.post("/inbox/settings/inboxes")
async def create_inbox_form(request: Request, person: ManagerForm) -> Response:
    """Connect a channel account; bad input re-shows the form with the reason (secrets are
    never sent back)."""
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in _form_names()}
    if any(len(value) > MAX_VALUE for value in values.values()):
        raise InvalidInput(f"a setting may be at most {MAX_VALUE} characters long")
    channel = values["channel"]
    options = {
        f.key: values[f.name] for f in PROVIDER_FIELDS if not f.secret and channel in f.channels
    }
    secrets = {f.key: values[f.name] for f in PROVIDER_FIELDS if f.secret and channel in f.channels}
    try:
        body = api_model(
            InboxRequest,
            channel=channel,
            name=values["name"],
            team=values["team"] or None,
            options={k: v for k, v in options.items() if v},
            secrets={k: v for k, v in secrets.items() if v},
        )
        inbox = await run_in_threadpool(post_inbox, request, body, person.principal)
    except PlaitError as exc:
        kept = {f.name: values[f.name] for f in PROVIDER_FIELDS if not f.secret}
        kept.update(channel=channel, name=values["name"], team=values["team"])
        return await run_in_threadpool(
            _page, request, person, error=("inbox", exc.message), form=kept, status=exc.status
        )
    return RedirectResponse(f"/inbox/settings?created={inbox['id']}#inboxes", status_code=303)


@router.post("/inbox/settings/canned")
def create_canned_form(
    request: Request,
    person: ManagerForm,
    shortcut: Annotated[str, Form(max_length=200)] = "",
    body: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """Save a canned reply; agents insert it by typing ``/shortcut``."""
    try:
        reply = api_model(CannedReply, shortcut=shortcut.strip().lstrip("/"), body=body)
        post_canned(request, reply, person.principal)
    except PlaitError as exc:
        canned = {"shortcut": shortcut, "body": body}
        return _page(request, person, error=("canned", exc.message), canned=canned, status=400)
    return RedirectResponse("/inbox/settings?done=canned#canned", status_code=303)


@router.post("/inbox/settings/canned/{reply_id:uuid}/delete")
def delete_canned_form(request: Request, reply_id: UUID, person: ManagerForm) -> Response:
    delete_canned(request, reply_id, person.principal)
    return RedirectResponse("/inbox/settings?done=canned_deleted#canned", status_code=303)


@router.post("/inbox/settings/teams")
def add_member_form(
    request: Request,
    person: ManagerForm,
    team: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """Add an agent to a team (created if new): the team's inboxes assign to its members."""
    try:
        if not team.strip():
            raise InvalidInput("name the team", field="team")
        post_member(request, team.strip(), api_model(TeamMember, email=email), person.principal)
    except PlaitError as exc:
        member = {"team": team, "email": email}
        return _page(
            request, person, error=("teams", exc.message), member=member, status=exc.status
        )
    return RedirectResponse("/inbox/settings?done=member#teams", status_code=303)


@router.post("/inbox/settings/teams/{team_id:uuid}/members/{user_id:uuid}/remove")
def remove_member_form(
    request: Request, team_id: UUID, user_id: UUID, _person: ManagerForm
) -> Response:
    with write(request.app.state.engine) as conn:
        remove_from_team(conn, team_id, user_id)
    return RedirectResponse("/inbox/settings?done=member_removed#teams", status_code=303)


@router.post("/inbox/settings/agents/{user_id:uuid}")
def agent_form(
    request: Request,
    user_id: UUID,
    person: ManagerForm,
    available: Annotated[str, Form(max_length=1)] = "",
    capacity: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Set an agent's availability for auto-assignment and their capacity."""
    try:
        change = api_model(
            Availability,
            available=available == "1" if available else None,
            capacity=capacity or None,
        )
        put_agent(request, user_id, change, person.principal)
    except PlaitError as exc:
        return _page(request, person, error=("agents", exc.message), status=exc.status)
    return RedirectResponse("/inbox/settings?done=agent#agents", status_code=303)


def _form_names() -> list[str]:
    return ["channel", "name", "team", *(f.name for f in PROVIDER_FIELDS)]


def _page(
    request: Request,
    person: SignedIn,
    *,
    created: str | None = None,
    notice: str | None = None,
    error: tuple[str, str] | None = None,
    form: dict[str, str] | None = None,
    canned: dict[str, str] | None = None,
    member: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    with read(request.app.state.engine) as conn:
        inboxes = [with_webhook_url(request, inbox) for inbox in list_inboxes(conn)]
        team_list = _teams(conn)
        people = _people(conn, request.app.state.settings.inbox.agent_capacity)
    replies = get_canned(request, person.principal)["canned_replies"]
    for inbox in inboxes:
        inbox["label"] = CHANNEL_LABELS.get(inbox["channel"], inbox["channel"])
        inbox["icon"] = inbox_icon(inbox["channel"])
    new = next((inbox for inbox in inboxes if inbox["id"] == created), None)
    context = {
        "title": "Inbox settings",
        "inboxes": inboxes,
        "created": new,
        "notice": notice,
        "error": dict([error]) if error else {},
        "channels": [(key, CHANNEL_LABELS[key], inbox_icon(key)) for key in EVENT_CHANNELS],
        "fields": PROVIDER_FIELDS,
        "form": form or {"channel": "sms"},
        "canned_replies": replies,
        "canned": canned or {},
        "teams": team_list,
        "member": member or {},
        "people": people,
    }
    return render(request, "inbox_settings.html", context, status)


def _teams(conn: Connection) -> list[dict[str, Any]]:
    """Teams with their members' emails."""
    found = {team["id"]: {**team, "members": []} for team in list_teams(conn)}
    rows = conn.execute(
        sa.select(team_members.c.team_id, users.c.id, users.c.email)
        .join(users, users.c.id == team_members.c.user_id)
        .join(teams, teams.c.id == team_members.c.team_id)
        .order_by(users.c.email)
    )
    for team_id, user_id, email in rows:
        found[str(team_id)]["members"].append({"id": str(user_id), "email": email})
    return list(found.values())


def _people(conn: Connection, default_capacity: int) -> list[dict[str, Any]]:
    """Agents and admins with their availability and capacity."""
    rows = conn.execute(
        sa.select(
            users.c.id,
            users.c.email,
            users.c.role,
            users.c.disabled_at,
            agents.c.available,
            agents.c.capacity,
        )
        .outerjoin(agents, agents.c.user_id == users.c.id)
        .where(users.c.role.in_(("agent", "admin")))
        .order_by(users.c.email)
    )
    return [
        {
            "id": str(row.id),
            "email": row.email,
            "role": row.role,
            "disabled": row.disabled_at is not None,
            "available": bool(row.available),
            "capacity": row.capacity or default_capacity,
        }
        for row in rows
    ]
