"""HTTP: merge suggestions (list, find, accept, reject) and the log of refused merges."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from plait.core.auth import Principal, require
from plait.core.db import read, write
from plait.identity.graph import list_refusals
from plait.identity.identifiers import identity_rules
from plait.identity.suggestions import decide, list_suggestions, suggest

identity_api = APIRouter(prefix="/api/identity", tags=["identity"])


class SuggestRequest(BaseModel):
    threshold: float = Field(0.9, gt=0, lt=1)


class AcceptRequest(BaseModel):
    force: bool = False


@identity_api.get("/suggestions")
def get_suggestions(
    request: Request,
    _principal: Annotated[Principal, Depends(require("profiles:read"))],
    status: str = "pending",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Probable duplicates, most probable first, with both customers summarised."""
    with read(request.app.state.engine) as conn:
        return {"suggestions": list_suggestions(conn, status=status, limit=limit)}


@identity_api.post("/suggestions/run")
async def post_suggest(
    request: Request,
    _principal: Annotated[Principal, Depends(require("profiles:merge"))],
    body: SuggestRequest | None = None,
) -> dict[str, Any]:
    """Look for probable duplicates now (Splink); new pairs become pending suggestions."""
    threshold = (body or SuggestRequest()).threshold
    report = await run_in_threadpool(suggest, request.app.state.engine, threshold=threshold)
    return {"customers": report.customers, "pairs": report.pairs, "new": report.new}


@identity_api.post("/suggestions/{suggestion_id}/accept")
def post_accept(
    request: Request,
    suggestion_id: UUID,
    principal: Annotated[Principal, Depends(require("profiles:merge"))],
    body: AcceptRequest | None = None,
) -> dict[str, Any]:
    """Merge the two customers of a suggestion."""
    rules = identity_rules(request.app.state.settings)
    force = (body or AcceptRequest()).force
    with write(request.app.state.engine) as conn:
        return decide(conn, rules, suggestion_id, True, by=principal.name, force=force)


@identity_api.post("/suggestions/{suggestion_id}/reject")
def post_reject(
    request: Request,
    suggestion_id: UUID,
    principal: Annotated[Principal, Depends(require("profiles:merge"))],
) -> dict[str, Any]:
    """Mark a suggestion wrong; the pair is not suggested again."""
    rules = identity_rules(request.app.state.settings)
    with write(request.app.state.engine) as conn:
        return decide(conn, rules, suggestion_id, False, by=principal.name)


@identity_api.get("/refusals")
def get_refusals(
    request: Request,
    _principal: Annotated[Principal, Depends(require("profiles:read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: UUID | None = None,
) -> dict[str, Any]:
    """Merges the rules refused and identifiers they left out, with event and reason."""
    with read(request.app.state.engine) as conn:
        page, next_cursor = list_refusals(conn, limit=limit, before=cursor)
    return {"refusals": page, "next_cursor": next_cursor}
