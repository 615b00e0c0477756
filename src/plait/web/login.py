"""Sign in and sign out, with failed attempts counted in the database so that guessing is
rate-limited per email and per client address across every worker."""

from __future__ import annotations

import math
from datetime import timedelta

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.engine import Connection

from plait.core.clock import utcnow
from plait.core.db import UTCDateTime, metadata, read, write
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.core.users import verify_login
from plait.web.access import require_csrf
from plait.web.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    cookie_value,
    csrf_token_for,
    end_session,
    new_cookie_secret,
    set_cookie,
    signed_in,
    start_session,
)
from plait.web.templating import render

router = APIRouter(include_in_schema=False)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, index=True),
    sa.Column("address", sa.String(64), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    """The sign-in form (or straight on, for someone already signed in)."""
    if signed_in(request):
        return RedirectResponse(safe_next(next), status_code=303)
    return _form(request, next=safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    email: str = Form("", max_length=320),
    password: str = Form("", max_length=1024),
    next: str = Form("/"),
) -> Response:
    """Check the password; on success start a session and go where the user was headed."""
    nonce = cookie_value(request, LOGIN_COOKIE)
    await require_csrf(request, csrf_token_for(nonce) if nonce else "")
    settings: Settings = request.app.state.settings
    address = request.client.host if request.client else "unknown"
    email = email.strip().lower()
    engine = request.app.state.engine
    with read(engine) as conn:
        wait = _lockout(conn, settings, email, address)
    if wait is not None:
        minutes = math.ceil(wait.total_seconds() / 60)
        message = f"Too many failed sign-ins. Try again in {minutes} minute(s)."
        response = _form(request, next=next, email=email, error=message, status=429)
        response.headers["Retry-After"] = str(math.ceil(wait.total_seconds()))
        return response
    with write(engine) as conn:
        principal = verify_login(conn, email, password)
        if principal is None:
            row = {"id": uuid7(), "email": email[:320], "address": address[:64], "at": utcnow()}
            conn.execute(login_failures.insert(), row)
        else:
            conn.execute(login_failures.delete().where(login_failures.c.email == email))
            secret = start_session(conn, settings, principal)
    if principal is None:
        return _form(request, next=next, email=email, error="Wrong email or password.", status=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, LOGIN_COOKIE, None)
    set_cookie(request, response, SESSION_COOKIE, secret)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session on the server and forget the cookie."""
    person = signed_in(request)
    if person is not None:
        await require_csrf(request, person.csrf_token)
        with write(request.app.state.engine) as conn:
            end_session(conn, person.secret)
    response = RedirectResponse("/login", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, None)
    return response


def _form(
    request: Request, *, next: str, email: str = "", error: str | None = None, status: int = 200
) -> Response:
    nonce = cookie_value(request, LOGIN_COOKIE) or new_cookie_secret(LOGIN_COOKIE)
    context = {"next": next, "email": email, "error": error, "form_token": csrf_token_for(nonce)}
    response = render(request, "login.html", context, status)
    set_cookie(request, response, LOGIN_COOKIE, nonce)
    return response


def _lockout(conn: Connection, settings: Settings, email: str, address: str) -> timedelta | None:
    """How long until this email and address may try again, or None if they may now."""
    window = timedelta(minutes=settings.server.login_window_minutes)
    since = utcnow() - window
    waits = []
    for column, value, limit in (
        (login_failures.c.email, email, settings.server.login_max_failures),
        (login_failures.c.address, address, settings.server.login_max_failures_per_address),
    ):
        recent = (
            sa.select(login_failures.c.at)
            .where(column == value, login_failures.c.at > since)
            .order_by(login_failures.c.at.desc())
            .limit(limit)
        )
        times = conn.execute(recent).scalars().all()
        if len(times) >= limit:
            waits.append(times[-1] + window - utcnow())
    return max(waits) if waits else None


def purge_login_failures(conn: Connection, settings: Settings) -> None:
    """Forget failures older than the window; they no longer count."""
    window = timedelta(minutes=settings.server.login_window_minutes)
    conn.execute(login_failures.delete().where(login_failures.c.at < utcnow() - window))
