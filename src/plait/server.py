"""The ASGI application: mounts each area's routers, renders every error as JSON, and runs
the group writers that make concurrent requests (tracking calls, inbound messages) share
transactions."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from plait import __version__
from plait.analytics.api import analytics_api
from plait.collect.api import TrackingCors, management, tracking
from plait.collect.ingest import rules_from_settings
from plait.collect.writer_process import event_writer
from plait.core.db import get_engine
from plait.core.errors import PlaitError
from plait.core.settings import Settings, get_settings
from plait.identity.api import identity_api
from plait.inbox.api import inbox_api
from plait.inbox.connectors.webhook_routers import webhook_routers
from plait.inbox.csat import on_resolved
from plait.inbox.csat import router as csat_router
from plait.inbox.outbox import DeliveryWorker
from plait.inbox.receiving import Receiver
from plait.migrations import upgrade
from plait.profiles.api import profiles_api
from plait.web.app import install_dashboard, is_page_request, page_error, page_error_for
from plait.web.warmup import start_warming

log = logging.getLogger("plait.server")


def create_app(
    settings: Settings | None = None,
    *,
    migrate: bool = True,
    warm: bool = False,
    writer_process: bool = False,
) -> FastAPI:
    """The Plait application for ``settings`` (``plait serve`` adds the upkeep process and,
    with ``warm``, keeps the dashboard's default views computed; with ``writer_process``, on
    SQLite it stores events from a process of its own: :mod:`plait.collect.writer_process`)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await run_in_threadpool(upgrade, app.state.engine)
        app.state.committer = await run_in_threadpool(
            event_writer, app.state.engine, settings, own_process=writer_process
        )
        app.state.receiver = Receiver(app.state.engine, settings, app.state.rules)
        app.state.delivery = DeliveryWorker(app.state.engine, settings).start()
        warming = start_warming(app.state.engine, settings) if warm else None
        try:
            yield
        finally:
            if warming is not None:
                warming.set()
            await run_in_threadpool(app.state.delivery.stop)
            await run_in_threadpool(app.state.committer.close)
            await run_in_threadpool(app.state.receiver.close)

    app = FastAPI(title="Plait", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = get_engine(settings)
    app.state.rules = rules_from_settings(settings)
    app.state.write_key_cache = {}
    app.state.on_resolved = on_resolved(app.state)
    app.include_router(tracking)
    app.include_router(management)
    app.include_router(profiles_api)
    app.include_router(identity_api)
    app.include_router(analytics_api)
    app.include_router(inbox_api)
    app.include_router(csat_router)
    for router in webhook_routers():
        app.include_router(router)
    install_dashboard(app)
    app.add_middleware(TrackingCors)
    _install_error_handlers(app)

    @app.get("/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PlaitError)
    async def plait_error(request: Request, exc: PlaitError) -> Response:
        if is_page_request(request):
            return page_error_for(request, exc)
        body = exc.to_dict()
        if request.url.path.startswith("/v1/"):
            # The Segment and RudderStack SDKs read a top-level code and message.
            body = {**body, "code": exc.code, "message": exc.message}
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ())]
        if location[:1] in (["body"], ["query"]):
            location = location[1:]  # keep a field itself called "body" (a message's text)
        error = PlaitError(
            first.get("msg", "invalid request"),
            code="invalid_input",
            field=".".join(location) or None,
        )
        if is_page_request(request):
            return page_error_for(request, error)
        return JSONResponse(error.to_dict(), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        if is_page_request(request):
            return page_error(request, exc.status_code, code, str(exc.detail))
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        if is_page_request(request):
            return page_error(request, 500, "internal_error", "")
        body = {"error": {"code": "internal_error", "message": "an unexpected error occurred"}}
        return JSONResponse(body, status_code=500)
