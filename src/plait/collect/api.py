"""HTTP: the Segment-compatible tracking API (``/v1``) and the management API for events
and sources (``/api``)."""

from __future__ import annotations

import base64
import binascii
import time
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait.collect.event_store import EventFilter, list_events, list_rejected
from plait.collect.ingest import decode_body, ingest, ingest_one, suppression_reports
from plait.collect.messages import (
    SHORT_TYPES,
    TYPES,
    Envelope,
    InvalidMessage,
    check_no_nul,
    check_type,
)
from plait.collect.sources import add_source
from plait.core.auth import Principal, require
from plait.core.clock import optional_timestamp, utcnow
from plait.core.db import read, write
from plait.core.errors import InvalidInput, TooLarge, Unauthorized
from plait.core.sources import Source, list_sources, source_for_write_key

tracking = APIRouter(tags=["tracking"])
management = APIRouter(prefix="/api", tags=["events"])

KEY_CACHE_SECONDS = 10.0


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"a request may be at most {max_bytes} bytes", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"a request may be at most {max_bytes} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _basic_auth_user(request: Request) -> str | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, _, _password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized(
            "the Authorization header is malformed", code="invalid_write_key"
        ) from None
    return user


async def _source(request: Request, key: Any) -> Source:
    """The source a write key belongs to (cached briefly), or 401."""
    if not key or not isinstance(key, str):
        raise Unauthorized(
            "send the source's write key as the HTTP Basic user name or as writeKey",
            code="invalid_write_key",
        )
    cache: dict[str, tuple[float, Source | None]] = request.app.state.write_key_cache
    now = time.monotonic()
    hit = cache.get(key)
    if hit is None or hit[0] < now:
        source = await run_in_threadpool(_lookup_source, request.app.state.engine, key)
        if len(cache) > 10_000:
            cache.clear()
        cache[key] = (now + KEY_CACHE_SECONDS, source)
    else:
        source = hit[1]
    if source is None:
        raise Unauthorized("the write key is not valid", code="invalid_write_key")
    return source


def _lookup_source(engine: Any, key: str) -> Source | None:
    with read(engine) as conn:
        return source_for_write_key(conn, key)


async def _payload(request: Request) -> tuple[dict[str, Any], Source, datetime]:
    """The request's JSON object and its source; the key is checked before the body is read
    when it comes in the Authorization header."""
    received_at = utcnow()
    limit = request.app.state.settings.collect.max_request_bytes
    basic_user = _basic_auth_user(request)
    source = await _source(request, basic_user) if basic_user else None
    body = await _read_body(request, limit)
    payload = decode_body(
        body,
        content_type=request.headers.get("content-type", ""),
        content_encoding=request.headers.get("content-encoding", ""),
        max_bytes=limit,
    )
    if source is None:
        source = await _source(request, payload.get("writeKey"))
    return payload, source, received_at


def _object(payload: dict[str, Any], field: str) -> dict[str, Any] | None:
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be an object", field=field)
    try:
        check_no_nul(orjson.dumps(value))
    except InvalidMessage as exc:
        raise InvalidInput(exc.message, code=exc.code, field=field) from None
    return value


async def receive_batch(request: Request) -> JSONResponse:
    """``POST /v1/batch``: many messages; valid ones are stored, invalid ones reported."""
    payload, source, received_at = await _payload(request)
    items = payload.get("batch")
    if not isinstance(items, list):
        raise InvalidInput("a batch needs a 'batch' array of messages", field="batch")
    settings = request.app.state.settings
    if len(items) > settings.collect.max_batch_events:
        raise TooLarge(
            f"a batch may hold at most {settings.collect.max_batch_events} events",
            code="batch_too_large",
            field="batch",
        )
    envelope = Envelope(
        source=source,
        received_at=received_at,
        sent_at=optional_timestamp(payload.get("sentAt"), "sentAt"),
        context=_object(payload, "context"),
        integrations=_object(payload, "integrations"),
        ip=request.client.host if request.client else None,
    )
    state = request.app.state
    result = await run_in_threadpool(
        ingest, state.engine, items, envelope, state.rules, committer=state.committer
    )
    return JSONResponse(result.to_dict())


def _typed_endpoint(type_: str):  # type: ignore[no-untyped-def]
    async def receive(request: Request) -> JSONResponse:
        payload, source, received_at = await _payload(request)
        envelope = Envelope(
            source=source,
            received_at=received_at,
            ip=request.client.host if request.client else None,
        )
        state = request.app.state
        stored = await run_in_threadpool(
            ingest_one, state.engine, payload, envelope, state.rules, type_, state.committer
        )
        body = {"success": True, "accepted": stored.accepted, "duplicates": stored.duplicates}
        if stored.suppressed:
            body["rejected"] = suppression_reports(stored, [0])
        return JSONResponse(body)

    receive.__name__ = f"receive_{type_}"
    receive.__doc__ = f"``POST /v1/{type_}``: one {type_} message (Segment spec)."
    return receive


for _type in sorted(TYPES):
    _endpoint = _typed_endpoint(_type)
    tracking.add_api_route(f"/v1/{_type}", _endpoint, methods=["POST"], summary=f"{_type} call")
for _short, _type in SHORT_TYPES.items():
    tracking.add_api_route(
        f"/v1/{_short}", _typed_endpoint(_type), methods=["POST"], include_in_schema=False
    )
tracking.add_api_route("/v1/batch", receive_batch, methods=["POST"], summary="batch call")
tracking.add_api_route("/v1/b", receive_batch, methods=["POST"], include_in_schema=False)


@management.get("/events")
def get_events(
    request: Request,
    _principal: Annotated[Principal, Depends(require("events:read"))],
    source: str | None = None,
    type: Annotated[str | None, Query(alias="type")] = None,
    event: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Events newest first, filtered and keyset-paginated (``next_cursor``)."""
    filters = EventFilter(
        source=source,
        type=check_type(type),
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        since=optional_timestamp(since, "since"),
        until=optional_timestamp(until, "until"),
    )
    with read(request.app.state.engine) as conn:
        page, next_cursor = list_events(conn, filters, limit=limit, cursor=cursor)
    return {"events": page, "next_cursor": next_cursor}


@management.get("/events/rejected")
def get_rejected(
    request: Request,
    _principal: Annotated[Principal, Depends(require("events:read"))],
    source: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Rejected events newest first, with reason, position and raw payload."""
    with read(request.app.state.engine) as conn:
        page, next_cursor = list_rejected(conn, source=source, limit=limit, cursor=cursor)
    return {"rejected": page, "next_cursor": next_cursor}


class NewSource(BaseModel):
    name: str
    channel: str | None = None


@management.get("/sources", tags=["sources"])
def get_sources(
    request: Request, _principal: Annotated[Principal, Depends(require("sources:manage"))]
) -> dict[str, Any]:
    """Every source (write keys are never shown again after creation)."""
    with read(request.app.state.engine) as conn:
        return {"sources": list_sources(conn)}


@management.post("/sources", tags=["sources"], status_code=201)
def post_source(
    request: Request,
    body: NewSource,
    _principal: Annotated[Principal, Depends(require("sources:manage"))],
) -> dict[str, Any]:
    """Create a source; the response carries its write key, shown this once."""
    with write(request.app.state.engine) as conn:
        return add_source(conn, request.app.state.settings, body.name, body.channel)


CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, Last-Event-ID",
    "Access-Control-Max-Age": "86400",
}
"""Browsers may send events from any site (analytics.js runs on the brand's own domain), and
the web chat widget runs there too; the write key or the visitor's chat token, not a cookie,
authenticates, so no credentials are allowed. (A chat inbox's ``allowed_origins`` is checked
by its endpoints, which refuse other sites.)"""
CORS_PATHS = ("/v1/", "/chat/")


class TrackingCors:
    """ASGI middleware: answer CORS preflights for ``/v1/*`` and ``/chat/*`` and let browsers
    read replies. Plain ASGI (not ``BaseHTTPMiddleware``), so every other request passes
    straight through at no cost."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(CORS_PATHS):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await Response(status_code=204, headers=CORS_HEADERS)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in CORS_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_cors)
