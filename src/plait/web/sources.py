"""The Sources pages (admins): every source with its traffic, creating one (its write key is
shown once, in the creation response, never in a URL), set-up snippets pointing at this
server, and a live event debugger that polls for a source's newest events."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Connection

from plait.collect.event_store import event_dict, events, events_after
from plait.collect.sources import add_source, known_channels
from plait.core.db import read, write
from plait.core.errors import Forbidden, NotFound, PlaitError
from plait.core.sources import list_sources
from plait.web.access import editor, viewer
from plait.web.sessions import SignedIn
from plait.web.templating import MISSING, channel_icon, render

router = APIRouter(include_in_schema=False)

Manager = Annotated[SignedIn, Depends(viewer("sources:manage"))]
ManagerForm = Annotated[SignedIn, Depends(editor("sources:manage"))]

DEBUGGER_ROWS = 25
POLL_LIMIT = 50
SETTLE = timedelta(seconds=10)
"""Events received this recently may still be joined by ones with a lower ``seq`` whose
transaction commits later (PostgreSQL), so the debugger's cursor stays behind them."""

PLACEHOLDER_KEY = "YOUR_WRITE_KEY"
NO_TRAFFIC = {"events": 0, "last_received": None}


def debugger_reader(
    person: Annotated[SignedIn, Depends(viewer("events:read"))],
) -> SignedIn:
    """Reads events, and only from the admin-only source page."""
    if not person.principal.can("sources:manage"):
        raise Forbidden(f"the {person.principal.role} role may not open this page")
    return person


@router.get("/sources")
def sources_page(request: Request, _admin: Manager) -> Response:
    """Every source with its traffic, and a form to create one."""
    return _list_page(request)


@router.post("/sources")
def create_source_form(
    request: Request,
    _admin: ManagerForm,
    name: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "",
) -> Response:
    """Create a source and show its write key this once (status 201, no redirect, so the key
    never travels in a URL); bad input re-shows the form with the reason."""
    try:
        with write(request.app.state.engine) as conn:
            created = add_source(conn, request.app.state.settings, name, channel or None)
    except PlaitError as exc:
        return _list_page(request, error=exc.message, name=name, channel=channel, status=exc.status)
    source = {**created, **NO_TRAFFIC}
    write_key = source.pop("write_key")
    return _source_page(request, source, write_key=write_key, status=201)


@router.get("/sources/{ref}")
def source_page(request: Request, ref: str, _admin: Manager) -> Response:
    """One source: its facts, set-up snippets and the live debugger."""
    with read(request.app.state.engine) as conn:
        source = _find(conn, ref)
        source.update(_traffic(conn, UUID(source["id"])).get(source["id"], NO_TRAFFIC))
    return _source_page(request, source)


@router.get("/sources/{ref}/events.json")
def source_events(
    request: Request,
    ref: str,
    _reader: Annotated[SignedIn, Depends(debugger_reader)],
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> JSONResponse:
    """The debugger's feed: the source's events with ``seq`` above ``after``, newest first,
    and the cursor to ask with next."""
    with read(request.app.state.engine) as conn:
        source = _find(conn, ref)
        rows, cursor = newer_events(conn, UUID(source["id"]), after, POLL_LIMIT)
    body = {"events": rows, "after": cursor}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def newer_events(
    conn: Connection, source_id: UUID, after: int | None, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The debugger's rows above ``after`` and the cursor for the next poll."""
    found, cursor = events_after(conn, source_id, after, limit, settle=SETTLE)
    return [debugger_row(row) for row in found], cursor


def debugger_row(row: Any) -> dict[str, Any]:
    """One event as the debugger lists it: a summary line and its raw JSON."""
    event = event_dict(row)
    who = f"user {row['user_id']}" if row["user_id"] else f"anon {row['anonymous_id'] or MISSING}"
    return {
        "id": event["id"],
        "seq": row["seq"],
        "received": _moment(row["received_at"]),
        "type": row["type"],
        "label": row["event"] or row["name"] or "",
        "who": who,
        "channel": row["channel"] or "",
        "icon": channel_icon(row["channel"]) if row["channel"] else "",
        "raw": json.dumps(event, indent=2, ensure_ascii=False, default=str),
    }


def _moment(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else MISSING


def _find(conn: Connection, ref: str) -> dict[str, Any]:
    """A source by id or by name, or NotFound."""
    for source in list_sources(conn):
        if ref in (source["id"], source["name"]):
            return source
    raise NotFound(f"no source {ref!r}", field="source")


def _traffic(conn: Connection, source_id: UUID | None = None) -> dict[str, dict[str, Any]]:
    """Events per source (or of one) and when the newest was received, in one grouped query."""
    counts = sa.select(
        events.c.source_id,
        sa.func.count().label("events"),
        sa.func.max(events.c.seq).label("newest"),
    ).group_by(events.c.source_id)
    if source_id is not None:
        counts = counts.where(events.c.source_id == source_id)
    counts = counts.subquery()
    query = sa.select(counts.c.source_id, counts.c.events, events.c.received_at).join(
        events, events.c.seq == counts.c.newest
    )
    return {
        str(row.source_id): {"events": row.events, "last_received": row.received_at}
        for row in conn.execute(query)
    }


def _list_page(
    request: Request,
    *,
    error: str | None = None,
    name: str = "",
    channel: str = "",
    status: int = 200,
) -> Response:
    with read(request.app.state.engine) as conn:
        rows = list_sources(conn)
        traffic = _traffic(conn)
    for row in rows:
        row.update(traffic.get(row["id"], NO_TRAFFIC))
        row["created"] = row["created_at"][:10]
        row["last"] = _moment(row["last_received"]) if row["last_received"] else None
    context = {
        "title": "Sources",
        "sources": rows,
        "channels": known_channels(request.app.state.settings),
        "error": error,
        "name": name,
        "channel": channel,
    }
    return render(request, "sources.html", context, status)


def _source_page(
    request: Request, source: dict[str, Any], *, write_key: str | None = None, status: int = 200
) -> Response:
    with read(request.app.state.engine) as conn:
        rows, cursor = newer_events(conn, UUID(source["id"]), None, DEBUGGER_ROWS)
    context = {
        "title": f"Source {source['name']}",
        "source": source,
        "created": source["created_at"][:16].replace("T", " "),
        "last": _moment(source["last_received"]) if source["last_received"] else None,
        "write_key": write_key,
        "snippets": snippets(server_url(request), write_key or PLACEHOLDER_KEY),
        "rows": rows,
        "after": cursor,
    }
    return render(request, "source.html", context, status)


def server_url(request: Request) -> str:
    """Where senders reach this server: ``server.public_url`` if set, else this request's."""
    configured = request.app.state.settings.server.public_url
    return (configured or str(request.base_url)).rstrip("/")


def snippets(base: str, write_key: str) -> list[dict[str, str]]:
    """Copy-paste set-up for analytics.js (npm), segment-analytics-python and plain HTTP."""
    parts = urlsplit(base)
    api_host = f"{parts.netloc}{parts.path}/v1"
    protocol = parts.scheme or "https"
    return [
        {
            "id": "snippet-js",
            "title": "Website: analytics.js (@segment/analytics-next)",
            "note": (
                "Install with npm install @segment/analytics-next. The source's settings are"
                " given inline (cdnSettings), so nothing is fetched from Segment's CDN."
            ),
            "code": ANALYTICS_JS.format(
                key=_js(write_key), host=_js(api_host), protocol=_js(protocol)
            ),
        },
        {
            "id": "snippet-python",
            "title": "Server: Python (segment-analytics-python)",
            "note": "Install with pip install segment-analytics-python.",
            "code": PYTHON.format(key=_py(write_key), host=_py(base)),
        },
        {
            "id": "snippet-http",
            "title": "Plain HTTP (curl)",
            "note": (
                "HTTP Basic auth with the write key as user name and an empty password;"
                " one event to /v1/track, several to /v1/batch."
            ),
            "code": CURL.format(
                key=_sh(f"{write_key}:"),
                track=_sh(f"{base}/v1/track"),
                batch=_sh(f"{base}/v1/batch"),
            ),
        },
    ]


def _js(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _py(value: str) -> str:
    return repr(value)


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


ANALYTICS_JS = """\
import {{ AnalyticsBrowser }} from '@segment/analytics-next'

const writeKey = {key}

export const analytics = AnalyticsBrowser.load(
  {{
    writeKey,
    cdnSettings: {{ integrations: {{ 'Segment.io': {{ apiKey: writeKey }} }} }},
  }},
  {{
    integrations: {{
      'Segment.io': {{ apiHost: {host}, protocol: {protocol} }},
    }},
  }}
)

analytics.page()
analytics.track('Signed Up', {{ plan: 'pro' }})"""

PYTHON = """\
import segment.analytics as analytics

analytics.write_key = {key}
analytics.host = {host}

analytics.identify("user-123", {{"email": "ana@example.com"}})
analytics.track("user-123", "Signed Up", {{"plan": "pro"}})
analytics.flush()"""

CURL = """\
curl -u {key} {track} \\
  -H 'Content-Type: application/json' \\
  -d '{{"userId": "user-123", "event": "Signed Up", "properties": {{"plan": "pro"}}}}'

curl -u {key} {batch} \\
  -H 'Content-Type: application/json' \\
  -d '{{"batch": [
        {{"type": "identify", "userId": "user-123", "traits": {{"email": "ana@example.com"}}}},
        {{"type": "track", "userId": "user-123", "event": "Order Completed",
         "properties": {{"revenue": 42.5}}}}
      ]}}'"""
