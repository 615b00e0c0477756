"""Rendering pages: the Jinja2 environment, the navigation each role sees, and the
formatting filters templates share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from plait.web.sessions import SignedIn


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str
    permission: str


NAV = (
    NavItem("/overview", "Overview", "analytics:read"),
    NavItem("/channels", "Channels", "analytics:read"),
    NavItem("/journeys", "Journeys", "analytics:read"),
    NavItem("/customers", "Customers", "profiles:read"),
    NavItem("/inbox", "Inbox", "inbox:read"),
    NavItem("/inbox/reports", "Inbox reports", "inbox:read"),
    NavItem("/sources", "Sources", "sources:manage"),
    NavItem("/inbox/settings", "Inboxes", "inbox:manage"),
    NavItem("/quality", "Data quality", "quality:read"),
    NavItem("/users", "Users", "users:manage"),
)

CHANNEL_ICONS = {
    "Direct": "🌐",
    "Referral": "🔗",
    "Affiliates": "🔗",
    "Organic Search": "🔎",
    "Paid Search": "🔎",
    "Organic Shopping": "🛍️",
    "Paid Shopping": "🛍️",
    "Organic Social": "👥",
    "Paid Social": "👥",
    "Organic Video": "▶️",
    "Paid Video": "▶️",
    "Display": "🖼️",
    "Audio": "🎧",
    "Paid Other": "📣",
    "Email": "✉️",
    "SMS": "💬",
    "WhatsApp": "🟢",
    "Messenger": "💭",
    "Instagram": "📷",
    "Telegram": "✈️",
    "Live Chat": "🗨️",
    "Phone": "📞",
    "Store": "🏬",
    "App": "📱",
    "Mobile Push Notifications": "🔔",
}

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_URL = f"/static/plotly-{plotly.__version__}.min.js"
"""Versioned, so browsers may cache it for good."""

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.globals["plotly_url"] = PLOTLY_URL


MISSING = "\u2013"


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return MISSING
    return f"{value:,.{digits}f}"


def _percent(value: Any, digits: int = 1) -> str:
    return MISSING if value is None else f"{value * 100:.{digits}f} %"


def _json_script(value: Any) -> Markup:
    """Data for the page's script, safe inside ``<script type="application/json">``."""
    text = json.dumps(value, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
    return Markup(text.replace("&", "\\u0026"))


def channel_icon(channel: str | None) -> str:
    return CHANNEL_ICONS.get(channel or "", "•")


templates.env.filters.update(
    number=_number, percent=_percent, json_script=_json_script, channel_icon=channel_icon
)


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """Render a page with the layout's context: the viewer, their navigation, the CSRF
    token for forms and the page's active section."""
    person: SignedIn | None = getattr(request.state, "viewer", None)
    nav = [item for item in NAV if person and person.principal.can(item.permission)]
    path = request.url.path
    sections = [item.path for item in nav if path == item.path or path.startswith(item.path + "/")]
    base = {
        "viewer": person.principal if person else None,
        "csrf_token": person.csrf_token if person else None,
        "nav": nav,
        "path": path,
        "current_section": max(sections, key=len, default=None),
    }
    return templates.TemplateResponse(request, template, {**base, **(context or {})}, status)
