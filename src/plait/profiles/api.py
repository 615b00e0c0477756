"""HTTP: customer profiles (the 360, timeline, identities, lookup and search), manual merge
and split, and the privacy endpoints (export, erase)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from plait.collect.event_store import EventFilter
from plait.collect.messages import check_type
from plait.core.auth import Principal, require
from plait.core.clock import optional_timestamp
from plait.core.db import read, write
from plait.core.errors import InvalidInput
from plait.identity.identifiers import identity_rules
from plait.identity.merges import merge_customers, merge_log, split_merge
from plait.profiles.customer360 import profile_360
from plait.profiles.privacy import erase_person, export_person
from plait.profiles.search import (
    customer_identities,
    list_customers,
    lookup,
    require_customer,
    search,
    timeline,
)

profiles_api = APIRouter(prefix="/api/profiles", tags=["profiles"])


class MergeRequest(BaseModel):
    profile_ids: list[UUID] = Field(min_length=2, max_length=50)
    force: bool = False


class SplitRequest(BaseModel):
    merge_id: UUID


@profiles_api.get("")
def get_profiles(
    request: Request,
    _principal: Annotated[Principal, Depends(require("profiles:read"))],
    q: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: UUID | None = None,
) -> dict[str, Any]:
    """Search customers by any identifier or by name (``q``), or list the newest."""
    settings = request.app.state.settings
    with read(request.app.state.engine) as conn:
        if q is not None:
            return {"profiles": search(conn, identity_rules(settings), q, limit=limit)}
        return {"profiles": list_customers(conn, limit=limit, after=after)}


@profiles_api.get("/lookup")
def get_lookup(
    request: Request,
    _principal: Annotated[Principal, Depends(require("profiles:read"))],
    kind: str,
    value: str,
) -> dict[str, Any]:
    """The 360 of the customer holding one identifier (``kind=email&value=…``)."""
    settings = request.app.state.settings
    with read(request.app.state.engine) as conn:
        root_id = lookup(conn, identity_rules(settings), kind, value)
        return profile_360(conn, root_id, settings.profiles)


@profiles_api.post("/merge")
def post_merge(
    request: Request,
    body: MergeRequest,
    principal: Annotated[Principal, Depends(require("profiles:merge"))],
) -> dict[str, Any]:
    """Merge customers by hand (limits apply unless ``force``)."""
    settings = request.app.state.settings
    with write(request.app.state.engine) as conn:
        return merge_customers(
            conn, identity_rules(settings), body.profile_ids, by=principal.name, force=body.force
        )


@profiles_api.get("/{profile_id}")
def get_profile(
    request: Request,
    profile_id: str,
    _principal: Annotated[Principal, Depends(require("profiles:read"))],
) -> dict[str, Any]:
    """The customer 360: traits, identifiers and computed fields."""
    with read(request.app.state.engine) as conn:
        root_id = require_customer(conn, profile_id)
        return profile_360(conn, root_id, request.app.state.settings.profiles)


@profiles_api.get("/{profile_id}/timeline")
def get_timeline(
    request: Request,
    profile_id: str,
    _principal: Annotated[Principal, Depends(require("profiles:read"))],
    channel: str | None = None,
    type: Annotated[str | None, Query(alias="type")] = None,
    event: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Every event of the customer across channels and devices, newest first."""
    filters = EventFilter(
        type=check_type(type),
        event=event,
        channel=channel,
        since=optional_timestamp(since, "since"),
        until=optional_timestamp(until, "until"),
    )
    with read(request.app.state.engine) as conn:
        root_id = require_customer(conn, profile_id)
        page, next_cursor = timeline(conn, root_id, filters, limit=limit, cursor=cursor)
    return {"customer_id": str(root_id), "events": page, "next_cursor": next_cursor}


@profiles_api.get("/{profile_id}/identities")
def get_identities(
    request: Request,
    profile_id: str,
    _principal: Annotated[Principal, Depends(require("profiles:read"))],
) -> dict[str, Any]:
    """The customer's identifiers and the merges that joined them."""
    with read(request.app.state.engine) as conn:
        root_id = require_customer(conn, profile_id)
        return {
            "customer_id": str(root_id),
            "identities": customer_identities(conn, root_id),
            "merges": merge_log(conn, root_id),
        }


@profiles_api.post("/{profile_id}/split")
def post_split(
    request: Request,
    profile_id: str,
    body: SplitRequest,
    principal: Annotated[Principal, Depends(require("profiles:merge"))],
) -> dict[str, Any]:
    """Undo one merge: the merged profile becomes a customer of its own again."""
    with write(request.app.state.engine) as conn:
        root_id = require_customer(conn, profile_id)
        return split_merge(conn, root_id, body.merge_id, by=principal.name)


@profiles_api.get("/{profile_id}/export")
def get_export(
    request: Request,
    profile_id: str,
    _principal: Annotated[Principal, Depends(require("profiles:export"))],
) -> dict[str, Any]:
    """Everything held about the person (right of access)."""
    with read(request.app.state.engine) as conn:
        root_id = require_customer(conn, profile_id)
        return export_person(conn, root_id, request.app.state.settings)


@profiles_api.delete("/{profile_id}")
async def delete_profile(
    request: Request,
    profile_id: str,
    _principal: Annotated[Principal, Depends(require("profiles:erase"))],
) -> dict[str, Any]:
    """Erase the person from the database and the lake, and suppress their identifiers."""
    try:
        parsed = UUID(profile_id)
    except ValueError:
        raise InvalidInput("profile id must be a UUID", field="profile_id") from None
    state = request.app.state
    erasure = await run_in_threadpool(erase_person, state.engine, state.settings, parsed)
    return erasure.to_dict()
