"""The Customers pages: find a customer by any identifier or name, list customers with their
stage and last contact, and the customer 360 — facts, identifiers, the timeline across
channels and devices, the merge log (split) and merge suggestions (accept or reject)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.engine import Connection

from plait.collect.event_store import EventFilter
from plait.core.clock import parse_timestamp, utcnow
from plait.core.db import read, write
from plait.core.errors import Conflict, InvalidInput, NotFound
from plait.core.settings import Settings
from plait.identity.graph import root_of
from plait.identity.identifiers import identity_rules
from plait.identity.merges import merge_log, split_merge
from plait.identity.suggestions import decide, list_suggestions
from plait.profiles.customer360 import profile_360
from plait.profiles.customer_list import (
    add_activity,
    customer_channels,
    customer_suggestions,
    order_currency,
    pending_suggestion_count,
    suggestion_status,
)
from plait.profiles.search import (
    customer_identities,
    list_customers,
    require_customer,
    search,
    timeline,
)
from plait.web.access import editor, viewer
from plait.web.sessions import SignedIn
from plait.web.templating import MISSING, render

router = APIRouter(include_in_schema=False)

Reader = Annotated[SignedIn, Depends(viewer("profiles:read"))]
Merger = Annotated[SignedIn, Depends(editor("profiles:merge"))]

LIST_PAGE = 50
SEARCH_LIMIT = 50
TIMELINE_PAGE = 30
MAX_QUERY = 200
MAX_CHANNEL = 100
SUGGESTIONS_SHOWN = 5
MIN_RUN = 3
BROWSING_EVENTS = frozenset(
    {"Product Viewed", "Product List Viewed", "Products Searched", "Product Clicked"}
)

NOTICES = {
    "split": "Merge split: the profile is a customer of its own again.",
    "accepted": "Suggestion accepted: the two customers are now one.",
    "rejected": "Suggestion rejected: this pair will not be suggested again.",
}

STAGE_LABELS = {
    "visitor": "Visitor",
    "subscriber": "Subscriber",
    "lead": "Lead",
    "marketing_qualified_lead": "Marketing qualified lead",
    "sales_qualified_lead": "Sales qualified lead",
    "opportunity": "Opportunity",
    "customer": "Customer",
    "evangelist": "Evangelist",
}

KIND_LABELS = {
    "user_id": "User ID",
    "email": "Email",
    "phone": "Phone",
    "loyalty_card": "Loyalty card",
    "wa_id": "WhatsApp",
    "whatsapp_bsuid": "WhatsApp (BSUID)",
    "messenger_psid": "Messenger",
    "instagram_id": "Instagram",
    "telegram_id": "Telegram",
    "device_id": "Device ID",
    "anonymous_id": "Anonymous ID",
}

MERGE_REASONS = {
    "event": "Joined by an event",
    "manual": "Merged by hand",
    "suggestion": "Accepted suggestion",
}

DEVICE_ICONS = {"desktop": "🖥️", "mobile": "📱", "tablet": "📱", "tv": "📺"}

SUMMARY_KEYS = (
    "summary",
    "text",
    "email_subject",
    "subject",
    "topic",
    "form_name",
    "title",
    "name",
    "link_url",
    "path",
    "url",
)
"""Event properties that say best what an event was about, in order of preference."""

FACT_KEYS = {
    "direction": "Direction",
    "agent": "Agent",
    "duration_seconds": "Duration",
    "campaign_name": "Campaign",
    "order_id": "Order",
    "quantity": "Quantity",
    "rating": "Rating",
    "store_id": "Store",
    "visit_type": "Visit",
    "method": "Method",
    "lead_source": "Lead source",
    "product_interest": "Interest",
    "budget": "Budget",
}


# --- pages -----------------------------------------------------------------------------


@router.get("/customers")
def customers_page(
    request: Request, _person: Reader, q: str | None = None, after: str | None = None
) -> Response:
    """Search customers by any identifier or name, or list them newest first."""
    text = (q or "").strip()
    if len(text) > MAX_QUERY:
        raise InvalidInput(f"the search may be at most {MAX_QUERY} characters long", field="q")
    after_id = _uuid(after, "after") if after else None
    settings: Settings = request.app.state.settings
    with read(request.app.state.engine) as conn:
        if text:
            found = search(conn, identity_rules(settings), text, limit=SEARCH_LIMIT + 1)
            limit = SEARCH_LIMIT
        else:
            found = list_customers(conn, limit=LIST_PAGE + 1, after=after_id)
            limit = LIST_PAGE
        rows = add_activity(conn, found[:limit], settings.profiles)
        pending = pending_suggestion_count(conn)
        top = list_suggestions(conn, limit=SUGGESTIONS_SHOWN) if pending else []
    now = utcnow()
    more = len(found) > limit
    context = {
        "title": f"Customers matching “{text}”" if text else "Customers",
        "q": text,
        "after": after_id,
        "customers": [_row_view(row, now) for row in rows],
        "more_matches": bool(text) and more,
        "next_url": f"/customers?after={rows[-1]['id']}" if more and not text else None,
        "pending": pending,
        "suggestions": [_pair_view(suggestion) for suggestion in top],
    }
    return render(request, "customers.html", context)


@router.get("/customers/{customer_id}")
def customer_page(
    request: Request,
    customer_id: str,
    person: Reader,
    channel: str | None = None,
    cursor: str | None = None,
    done: str | None = None,
) -> Response:
    """The customer 360; a profile merged into another leads to the customer it is part of."""
    if done is not None and done not in NOTICES:
        raise InvalidInput(f"unknown notice {done!r}", field="done")
    with read(request.app.state.engine) as conn:
        root = require_customer(conn, customer_id)
        if str(root) != customer_id:
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/customers/{root}{query}", status_code=302)
        context = _customer_context(request, conn, person, root, channel or None, cursor or None)
    context["notice"] = NOTICES.get(done or "")
    return render(request, "customer.html", context)


@router.post("/customers/{customer_id}/split")
def split_page(
    request: Request,
    customer_id: str,
    person: Merger,
    merge_id: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Undo one merge of the customer, then show the customer again with a notice."""
    merge = _uuid(merge_id, "merge_id")
    with write(request.app.state.engine) as conn:
        root = require_customer(conn, customer_id)
        split_merge(conn, root, merge, by=person.principal.name)
    return RedirectResponse(f"/customers/{root}?done=split", status_code=303)


@router.post("/suggestions/{suggestion_id}/accept")
def accept_suggestion(
    request: Request,
    suggestion_id: str,
    person: Merger,
    customer: Annotated[str, Form(max_length=100)] = "",
    force: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Merge the two customers of a suggestion. If the merge would break an identifier
    limit, the 360 explains why and offers to merge anyway."""
    suggestion = _suggestion_id(suggestion_id)
    back = _uuid(customer, "customer") if customer else None
    if force not in ("", "0", "1"):
        raise InvalidInput("force must be 0 or 1", field="force")
    state = request.app.state
    rules = identity_rules(state.settings)
    try:
        with write(state.engine) as conn:
            result = decide(
                conn, rules, suggestion, True, by=person.principal.name, force=force == "1"
            )
    except Conflict as exc:
        return _confirm_merge(request, person, suggestion, back, exc)
    return RedirectResponse(f"/customers/{result['customer_id']}?done=accepted", status_code=303)


@router.post("/suggestions/{suggestion_id}/reject")
def reject_suggestion(
    request: Request,
    suggestion_id: str,
    person: Merger,
    customer: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Mark a suggestion wrong, then go back to the customer it was shown on."""
    suggestion = _suggestion_id(suggestion_id)
    back = _uuid(customer, "customer") if customer else None
    state = request.app.state
    with write(state.engine) as conn:
        result = decide(
            conn, identity_rules(state.settings), suggestion, False, by=person.principal.name
        )
    target = f"/customers/{back}" if back else "/customers"
    return RedirectResponse(f"{target}?done={result['status']}", status_code=303)


def _confirm_merge(
    request: Request, person: SignedIn, suggestion: UUID, back: UUID | None, exc: Conflict
) -> Response:
    """The 360 again, asking whether to merge despite the limit the merge would break."""
    with read(request.app.state.engine) as conn:
        if back is None or suggestion_status(conn, suggestion) != "pending":
            raise exc
        root = root_of(conn, back)
        context = _customer_context(request, conn, person, root, None, None)
    reason = exc.message.split(";")[0]
    context["confirm"] = {
        "suggestion_id": str(suggestion),
        "reason": reason[:1].upper() + reason[1:],
    }
    return render(request, "customer.html", context, status=409)


# --- the 360's content -----------------------------------------------------------------


def _customer_context(
    request: Request,
    conn: Connection,
    person: SignedIn,
    root: UUID,
    channel: str | None,
    cursor: str | None,
) -> dict[str, Any]:
    """Everything the 360 shows, read in one transaction."""
    settings: Settings = request.app.state.settings
    if channel is not None and len(channel) > MAX_CHANNEL:
        raise InvalidInput("that is not a channel name", field="channel")
    channels = customer_channels(conn, root)
    if channel is not None and channel not in {c["channel"] for c in channels}:
        raise InvalidInput(
            f"this customer has no events on the channel {channel!r}", field="channel"
        )
    profile = profile_360(conn, root, settings.profiles)
    found = customer_identities(conn, root)
    merges = merge_log(conn, root)
    suggestions = customer_suggestions(conn, root)
    events, next_cursor = timeline(
        conn, root, EventFilter(channel=channel), limit=TIMELINE_PAGE, cursor=cursor
    )
    view = _profile_view(profile, utcnow())
    profile_id = str(root)
    return {
        "title": view["display_name"],
        "customer": view,
        "currency": order_currency(conn, root, settings.profiles),
        "traits": [(_label(name), _value(value)) for name, value in profile["traits"].items()],
        "identifiers": _identifier_groups(found),
        "merges": [_merge_view(merge, found) for merge in reversed(merges)],
        "suggestions": [_suggestion_view(s, utcnow()) for s in suggestions],
        "channels": channels,
        "channel": channel,
        "events": _day_groups(_browsing_runs([_event_view(event) for event in events])),
        "older_url": _timeline_url(profile_id, channel, next_cursor) if next_cursor else None,
        "newest_url": _timeline_url(profile_id, channel, None) if cursor else None,
        "can_merge": person.principal.can("profiles:merge"),
        "confirm": None,
    }


def _timeline_url(profile_id: str, channel: str | None, cursor: str | None) -> str:
    query = {key: value for key, value in (("channel", channel), ("cursor", cursor)) if value}
    return f"/customers/{profile_id}" + (f"?{urlencode(query)}" if query else "") + "#timeline"


def _profile_view(profile: dict[str, Any], now: datetime) -> dict[str, Any]:
    identifiers = profile["identifiers"]
    email, phone = _first(identifiers, "email"), _first(identifiers, "phone")
    return {
        **profile,
        "display_name": _display_name(profile["name"], email, phone, profile["id"]),
        "initials": _initials(profile["name"] or email),
        "hue": _hue(profile["id"]),
        "email": email,
        "phone": phone,
        "user_id": _first(identifiers, "user_id"),
        "stage": _stage_view(profile["lifecycle_stage"]),
        "contact": _contact_view(profile["last_contact"], now),
        "since": _date(profile["first_seen"]),
        "first_seen_text": _when(profile["first_seen"]),
        "last_seen_text": _when(profile["last_seen"]),
        "last_seen_ago": _ago(profile["last_seen"], now),
        "device_list": [
            {
                "icon": DEVICE_ICONS.get(device["type"] or "", "💻"),
                "label": " · ".join(
                    part for part in (device["type"], device["os"], device["browser"]) if part
                ),
                "events": device["events"],
            }
            for device in profile["devices"]
        ],
    }


def _identifier_groups(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Identifiers grouped by kind, the strongest kinds first."""
    order = list(KIND_LABELS)
    groups: dict[str, list[dict[str, Any]]] = {}
    for identifier in found:
        groups.setdefault(identifier["kind"], []).append(
            {**identifier, "first_seen_text": _when(identifier["first_seen"])}
        )
    kinds = sorted(groups, key=lambda kind: (order.index(kind) if kind in order else 99, kind))
    return [{"kind": kind, "label": _kind_label(kind), "entries": groups[kind]} for kind in kinds]


def _merge_view(merge: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
    brought = [
        f"{_kind_label(i['kind'])} {i['value']}"
        for i in found
        if i["profile_id"] == merge["from_id"]
    ]
    return {
        **merge,
        "title": MERGE_REASONS.get(merge["reason"], merge["reason"].capitalize()),
        "via": ", ".join(f"{_kind_label(kind)} {value}" for kind, value in merge["identifiers"]),
        "brought": brought,
        "short_from": _short(merge["from_id"]),
        "when": _when(merge["created_at"]),
        "split_when": _when(merge["split_at"]),
    }


def _suggestion_view(suggestion: dict[str, Any], now: datetime) -> dict[str, Any]:
    other = suggestion["other"]
    view = {**suggestion, "percent": match_percent(suggestion["probability"])}
    if other is not None:
        view["other_name"] = _summary_name(other)
        view["other_details"] = [
            *other["emails"],
            *other["phones"],
            *(f"User ID {user_id}" for user_id in other["user_ids"]),
        ]
        view["other_seen"] = _ago(other["last_seen"], now)
    return view


def _event_view(event: dict[str, Any]) -> dict[str, Any]:
    properties = event["properties"] if isinstance(event["properties"], dict) else {}
    device = event["device"]
    return {
        "id": event["id"],
        "type": event["type"],
        "channel": event["channel"],
        "day": _day(event["timestamp"]),
        "time": _time(event["timestamp"]),
        "iso": event["timestamp"],
        "title": _event_title(event),
        "summary": _event_summary(event, properties),
        "facts": _facts(properties),
        "device": " · ".join(
            part for part in (device["type"], device["os"], device["browser"]) if part
        ),
        "device_icon": DEVICE_ICONS.get(device["type"] or "", ""),
        "source": event["source"],
        "browsing": event["type"] in ("page", "screen") or event["event"] in BROWSING_EVENTS,
        "subject": _subject(event, properties),
    }


def _subject(event: dict[str, Any], properties: dict[str, Any]) -> str | None:
    """What a page, screen or product view was of: the product, else the page's title."""
    for value in (properties.get("name"), properties.get("title"), event["name"]):
        if isinstance(value, str) and value.strip():
            return value.split(" | ")[0].strip()
    return None


def _event_title(event: dict[str, Any]) -> str:
    kind, name = event["type"], event["name"]
    if kind == "track":
        return event["event"] or "Event"
    if kind == "page":
        return f"Viewed {name} page" if name else "Viewed a page"
    if kind == "screen":
        return f"Opened {name} screen" if name else "Opened a screen"
    return {"identify": "Identified", "group": "Joined a group", "alias": "Alias"}.get(kind, kind)


def _event_summary(event: dict[str, Any], properties: dict[str, Any]) -> str | None:
    if event["type"] == "identify":
        traits = event["traits"] if isinstance(event["traits"], dict) else {}
        shown = [f"{_label(k)}: {_value(v)}" for k, v in traits.items() if v not in (None, "")]
        return " · ".join(shown[:4]) or None
    skip = {"page": {"name"}, "screen": {"name"}}.get(event["type"], set())
    for key in SUMMARY_KEYS:
        value = properties.get(key)
        if key not in skip and value not in (None, "") and not isinstance(value, dict | list):
            return str(value)[:200]
    return None


def _facts(properties: dict[str, Any]) -> list[str]:
    facts = []
    amount = next(
        (
            properties[k]
            for k in ("revenue", "total", "value", "price")
            if _is_number(properties.get(k))
        ),
        None,
    )
    if amount is not None:
        facts.append(f"{amount:,.2f} {properties.get('currency') or ''}".strip())
    products = properties.get("products")
    if isinstance(products, list) and products:
        facts.append(f"{len(products)} product{'s' if len(products) != 1 else ''}")
    for key, label in FACT_KEYS.items():
        value = properties.get(key)
        if value in (None, "") or isinstance(value, dict | list):
            continue
        if key == "duration_seconds" and _is_number(value):
            value = _duration(value)
        elif key == "direction":
            value = str(value).capitalize()
        facts.append(f"{label}: {value}")
    return facts[:5]


def _day_groups(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive timeline items of the same day under one heading."""
    days: list[dict[str, Any]] = []
    for item in items:
        if not days or days[-1]["day"] != item["day"]:
            days.append({"day": item["day"], "items": []})
        days[-1]["items"].append(item)
    return days


def _browsing_runs(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline with each run of page, screen and product views (same day, channel and
    device) folded into one item, so conversations and orders are not lost among clicks."""
    items: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []

    def close() -> None:
        if len(run) >= MIN_RUN:
            items.append(_run_view(list(run)))
        else:
            items.extend(run)
        run.clear()

    for view in views:
        key = (view["day"], view["channel"], view["device"], view["source"])
        if run and (not view["browsing"] or key != run[0]["key"]):
            close()
        if view["browsing"]:
            run.append({**view, "key": key})
        else:
            items.append(view)
    close()
    return items


def _run_title(run: list[dict[str, Any]]) -> str:
    nouns = {"page": "page", "screen": "screen", "track": "product view"}
    counts = {noun: sum(view["type"] == kind for view in run) for kind, noun in nouns.items()}
    parts = [f"{n} {noun}{'s' if n != 1 else ''}" for noun, n in counts.items() if n]
    return "Browsed " + " and ".join(parts)


def _run_view(run: list[dict[str, Any]]) -> dict[str, Any]:
    """One timeline item for a run of views (newest first, as the timeline is)."""
    newest, oldest = run[0], run[-1]
    seen = list(dict.fromkeys(view["subject"] for view in reversed(run) if view["subject"]))
    shown = ", ".join(seen[:4]) + (f" and {len(seen) - 4} more" if len(seen) > 4 else "")
    span = f"{oldest['time']}\u2013{newest['time']}"
    return {
        **newest,
        "run": run,
        "type": "browse",
        "title": _run_title(run),
        "summary": shown or None,
        "time": newest["time"] if oldest["time"] == newest["time"] else span,
        "facts": [],
    }


# --- the list's content ----------------------------------------------------------------


def _row_view(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    email, phone = (row["emails"] or [None])[0], (row["phones"] or [None])[0]
    name = _summary_name(row)
    return {
        **row,
        "display_name": name,
        "subtitle": next((value for value in (email, phone) if value and value != name), None),
        "named": bool(row["name"]),
        "initials": _initials(row["name"] or email),
        "hue": _hue(row["id"]),
        "email": email,
        "phone": phone,
        "stage": _stage_view(row["lifecycle_stage"]),
        "contact": _contact_view(row["last_contact"], now),
        "last_seen_ago": _ago(row["last_seen"], now),
        "last_seen_text": _when(row["last_seen"]),
    }


def _pair_view(suggestion: dict[str, Any]) -> dict[str, Any]:
    sides = []
    for side in (suggestion["left"], suggestion["right"]):
        if side is not None:
            sides.append({"id": side["id"], "name": _summary_name(side)})
    return {**suggestion, "sides": sides, "percent": match_percent(suggestion["probability"])}


# --- shared formatting -----------------------------------------------------------------


def _uuid(value: str, field: str) -> UUID:
    """An id from a form or query; a clear 400 if it is not one."""
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(f"{field} must be an id, not {value[:60]!r}", field=field) from None


def _suggestion_id(value: str) -> UUID:
    """A suggestion id from the URL; anything else names no suggestion (404)."""
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(f"no suggestion {value[:60]!r}") from None


def match_percent(probability: float) -> str:
    """A match probability as a whole percentage; only a certainty shows as 100 %."""
    percent = round(probability * 100)
    return f"{min(percent, 99) if probability < 1 else 100} %"


def _stage_view(stage: str) -> dict[str, str]:
    """A lifecycle stage's label and the key its badge colour is chosen by."""
    return {"key": stage, "label": STAGE_LABELS.get(stage, stage)}


def _contact_view(contact: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    if contact is None:
        return None
    direction = contact["direction"]
    return {
        **contact,
        "direction_label": {"inbound": "Inbound", "outbound": "Outbound"}.get(direction or ""),
        "arrow": {"inbound": "↙", "outbound": "↗"}.get(direction or "", ""),
        "when": _when(contact["time"]),
        "ago": _ago(contact["time"], now),
    }


def _display_name(name: str | None, email: str | None, phone: str | None, profile_id: str) -> str:
    return name or email or phone or f"Visitor {_short(profile_id)}"


def _summary_name(summary: dict[str, Any]) -> str:
    """The name to show for a customer summary (``customer_summaries``)."""
    email, phone = (summary["emails"] or [None])[0], (summary["phones"] or [None])[0]
    return _display_name(summary["name"], email, phone, summary["id"])


def _first(identifiers: dict[str, list[str]], kind: str) -> str | None:
    values = identifiers.get(kind) or []
    return values[0] if values else None


def _initials(text: str | None) -> str:
    if not text:
        return "?"
    words = [word for word in text.replace("@", " ").replace(".", " ").split() if word]
    return "".join(word[0] for word in words[:2]).upper() or "?"


def _hue(profile_id: str) -> int:
    """A stable colour for the customer's avatar."""
    return int(hashlib.sha256(profile_id.encode()).hexdigest()[:4], 16) % 360


def _short(profile_id: str) -> str:
    return "…" + profile_id.replace("-", "")[-8:]


def _kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


def _label(name: str) -> str:
    spaced = "".join(f" {c.lower()}" if c.isupper() else c for c in name).replace("_", " ")
    return spaced.strip().capitalize()


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{_label(k)}: {_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return MISSING if value is None else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _moment(iso: str | None) -> datetime | None:
    return parse_timestamp(iso) if iso else None


def _when(iso: str | None) -> str | None:
    moment = _moment(iso)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC" if moment else None


def _date(iso: str | None) -> str | None:
    moment = _moment(iso)
    return f"{moment.day} {moment:%b %Y}" if moment else None


def _day(iso: str) -> str:
    moment = parse_timestamp(iso)
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def _time(iso: str) -> str:
    return f"{parse_timestamp(iso):%H:%M}"


def _ago(iso: str | None, now: datetime) -> str | None:
    """How long ago, in the largest unit that fits."""
    moment = _moment(iso)
    if moment is None:
        return None
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    for size, unit in (
        (86400 * 365, "year"),
        (86400 * 30, "month"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"
