"""The Data quality page (admins): rejected events with their reasons, merges the identity
rules refused, and the suppression list of erased people's identifiers — each counted and
paged newest first through its service's cursor."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from plait.collect.event_store import list_rejected, rejected_events
from plait.core.db import read
from plait.core.errors import InvalidInput
from plait.core.sources import list_sources, sources
from plait.identity.graph import identity_refusals, list_refusals
from plait.identity.suppression import list_suppressed, suppressed_identifiers
from plait.web.access import viewer
from plait.web.sessions import SignedIn
from plait.web.templating import MISSING, render

router = APIRouter(include_in_schema=False)

Reader = Annotated[SignedIn, Depends(viewer("quality:read"))]

PAGE = 25
EXCERPT_CHARS = 90
PAYLOAD_SHOWN = 8000


@router.get("/quality")
def quality_page(
    request: Request,
    _admin: Reader,
    source: str | None = None,
    rejected_cursor: str | None = None,
    refusals_cursor: str | None = None,
    suppressed_cursor: str | None = None,
) -> Response:
    """Rejected events (filterable by source), merge refusals and suppressed identifiers."""
    source = source or None
    refusals_before = _uuid_cursor(refusals_cursor)
    with read(request.app.state.engine) as conn:
        names = [row["name"] for row in list_sources(conn)]
        if source is not None and source not in names:
            raise InvalidInput(f"no source named {source!r}", field="source")
        rejected, rejected_next = list_rejected(
            conn, source=source, limit=PAGE, cursor=rejected_cursor or None
        )
        refusals, refusals_next = list_refusals(conn, limit=PAGE, before=refusals_before)
        suppressed, suppressed_next = list_suppressed(conn, limit=PAGE, cursor=suppressed_cursor)
        suppressed = [{**row, "created": _moment_text(row["created_at"])} for row in suppressed]
        counts = _counts(conn, source)
    params = {
        "source": source,
        "rejected_cursor": rejected_cursor,
        "refusals_cursor": refusals_cursor,
        "suppressed_cursor": suppressed_cursor,
    }
    context = {
        "title": "Data quality",
        **params,
        "sources": names,
        "counts": counts,
        "rejected": [_rejected_row(row) for row in rejected],
        "refusals": [_refusal_row(row) for row in refusals],
        "suppressed": suppressed,
        "older": {
            "rejected": rejected_next and _link(params, "rejected", rejected_cursor=rejected_next),
            "refusals": refusals_next and _link(params, "refusals", refusals_cursor=refusals_next),
            "suppressed": suppressed_next
            and _link(params, "suppressed", suppressed_cursor=suppressed_next),
        },
        "newest": {
            "rejected": rejected_cursor and _link(params, "rejected", rejected_cursor=None),
            "refusals": refusals_cursor and _link(params, "refusals", refusals_cursor=None),
            "suppressed": suppressed_cursor and _link(params, "suppressed", suppressed_cursor=None),
        },
    }
    return render(request, "quality.html", context)


def _uuid_cursor(cursor: str | None) -> UUID | None:
    if not cursor:
        return None
    try:
        return UUID(cursor)
    except ValueError:
        raise InvalidInput(
            "the cursor is not one this page gave out", field="refusals_cursor"
        ) from None


def _counts(conn: Connection, source: str | None) -> dict[str, Any]:
    """How many of each there are, and rejected events per reason."""
    by_code = sa.select(rejected_events.c.code, sa.func.count().label("n")).group_by(
        rejected_events.c.code
    )
    if source is not None:
        by_code = by_code.join(sources, sources.c.id == rejected_events.c.source_id).where(
            sources.c.name == source
        )
    reasons = sorted(conn.execute(by_code).all(), key=lambda row: (-row.n, row.code))
    return {
        "rejected": sum(row.n for row in reasons),
        "reasons": [{"code": row.code, "n": row.n} for row in reasons],
        "refusals": _count(conn, identity_refusals),
        "suppressed": _count(conn, suppressed_identifiers),
    }


def _count(conn: Connection, table: sa.Table) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _rejected_row(row: dict[str, Any]) -> dict[str, Any]:
    payload = row["payload"]
    return {
        **row,
        "received": _moment_text(row["received_at"]),
        "excerpt": _excerpt(payload),
        "pretty": _pretty(payload),
    }


def _refusal_row(row: dict[str, Any]) -> dict[str, Any]:
    identifiers = [
        {"kind": pair[0], "value": pair[1]}
        for pair in row["identifiers"] or []
        if isinstance(pair, list | tuple) and len(pair) == 2
    ]
    return {**row, "created": _moment_text(row["created_at"]), "left_out": identifiers}


def _excerpt(payload: str) -> str:
    flat = " ".join(payload.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _pretty(payload: str) -> str:
    """The payload indented when it is JSON, cut to what a page can reasonably show."""
    text = payload
    if len(payload) <= PAYLOAD_SHOWN:
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    if len(text) > PAYLOAD_SHOWN:
        return f"{text[:PAYLOAD_SHOWN]}\n… ({len(payload):,} characters in all)"
    return text


def _moment_text(value: str | None) -> str:
    """An ISO timestamp as ``2026-11-22 20:46:25`` (UTC)."""
    return (value or "")[:19].replace("T", " ") or MISSING


def _link(params: dict[str, str | None], section: str, **changes: str | None) -> str:
    """This page with one section's cursor changed, scrolled to that section."""
    merged = {**params, **changes}
    return "/quality?" + urlencode({k: v for k, v in merged.items() if v}) + f"#{section}"
