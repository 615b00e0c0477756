"""The dashboard's place in the application: its routers, its static files (Plotly.js comes
from the installed ``plotly`` package, so nothing is fetched from a CDN), security headers,
and errors rendered as pages for people instead of JSON for programs."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait.core.errors import PlaitError
from plait.web import login
from plait.web.access import SignInRequired, sign_in_url
from plait.web.sessions import signed_in
from plait.web.templating import PLOTLY_JS, PLOTLY_URL, render

STATIC = Path(__file__).parent / "static"
NOT_PAGES = (
    "/api/",
    "/v1/",
    "/webhooks/",
    "/chat/",
    "/health",
    "/static/",
    "/docs",
    "/openapi.json",
    "/redoc",
)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard's pages and assets on ``app``."""
    for router in _routers():
        app.include_router(router)

    @app.get(PLOTLY_URL, include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(
            PLOTLY_JS,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        person = signed_in(request)
        if person is None:
            return RedirectResponse("/login", status_code=303)
        if person.principal.can("analytics:read"):
            first = "/overview"
        elif person.principal.can("inbox:read"):
            first = "/inbox"
        else:
            first = "/customers"
        return RedirectResponse(first, status_code=303)

    app.add_middleware(SecurityHeaders)


class SecurityHeaders:
    """ASGI middleware: the headers every response gets (no MIME sniffing, same-origin
    referrers) and, on pages, the content security policy, no framing and no caching."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                    headers.setdefault("X-Frame-Options", "DENY")
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _routers() -> list:  # type: ignore[type-arg]
    from plait.web import (
        channels,
        customers,
        inbox,
        inbox_reports,
        inbox_settings,
        journeys,
        overview,
        quality,
        sources,
        users,
    )

    return [
        login.router,
        overview.router,
        channels.router,
        journeys.router,
        customers.router,
        inbox.router,
        inbox_reports.router,
        inbox_settings.router,
        sources.router,
        quality.router,
        users.router,
    ]


def is_page_request(request: Request) -> bool:
    """Whether a request came from a person's browser page rather than a program."""
    return not request.url.path.startswith(NOT_PAGES)


def page_error(request: Request, status: int, code: str, message: str) -> Response:
    """An error as a page: sign-in for a missing session, otherwise the error explained."""
    if code == SignInRequired.code and request.method == "GET":
        return RedirectResponse(sign_in_url(request), status_code=303)
    if code == SignInRequired.code:
        status = 401
    if status >= 500:
        message = "Something went wrong on our side. The error has been logged."
    if not hasattr(request.state, "viewer"):
        request.state.viewer = signed_in(request)
    context = {"status": status, "code": code, "message": message, "title": _TITLES.get(status)}
    return render(request, "error.html", context, status)


def page_error_for(request: Request, exc: PlaitError) -> Response:
    return page_error(request, exc.status, exc.code, exc.message)


_TITLES = {
    400: "That did not work",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    429: "Slow down",
    500: "Server error",
}
