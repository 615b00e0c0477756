"""Dashboard sign-ins: a server-side session row per sign-in, named by a random secret that
travels in a signed, HttpOnly cookie; and CSRF tokens derived from it.

Keeping sessions in the database (not only in the cookie) means sign-out, an expired
session or a disabled user takes effect at once on every worker.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.engine import Connection

from plait.core.auth import Principal
from plait.core.clock import utcnow
from plait.core.db import UTCDateTime, metadata, read
from plait.core.ids import uuid7
from plait.core.secrets import digest, new_secret, signing_key
from plait.core.settings import Settings
from plait.core.users import active_user

SESSION_COOKIE = "plait_session"
LOGIN_COOKIE = "plait_login"
"""A nonce that lets the sign-in form carry a CSRF token before anyone is signed in."""

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.Uuid, nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
)


@dataclass(frozen=True)
class SignedIn:
    """The person behind a page request, and the secret their CSRF token derives from."""

    principal: Principal
    secret: str

    @property
    def csrf_token(self) -> str:
        return csrf_token_for(self.secret)


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(signing_key(settings.home, settings.secret_key), salt="plait-web")


def csrf_token_for(secret: str) -> str:
    """The CSRF token of a session or sign-in nonce (an HMAC, so nothing is stored)."""
    return hmac.new(secret.encode(), b"plait-csrf", hashlib.sha256).hexdigest()


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected, given or "")


def start_session(conn: Connection, settings: Settings, principal: Principal) -> str:
    """Record a new sign-in and return its secret (for the cookie)."""
    secret = new_cookie_secret(SESSION_COOKIE)
    now = utcnow()
    conn.execute(
        web_sessions.insert(),
        {
            "id": uuid7(),
            "secret_hash": digest(secret),
            "user_id": principal.id,
            "created_at": now,
            "expires_at": now + timedelta(hours=settings.server.session_hours),
        },
    )
    return secret


def end_session(conn: Connection, secret: str) -> None:
    """Sign out: the session's cookie no longer works, wherever it was copied."""
    conn.execute(
        web_sessions.update()
        .where(web_sessions.c.secret_hash == digest(secret), web_sessions.c.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def signed_in(request: Request) -> SignedIn | None:
    """Who is signed in on this request, if anyone (and their session is still live)."""
    secret = cookie_value(request, SESSION_COOKIE)
    if secret is None:
        return None
    with read(request.app.state.engine) as conn:
        row = conn.execute(
            sa.select(web_sessions.c.user_id).where(
                web_sessions.c.secret_hash == digest(secret),
                web_sessions.c.ended_at.is_(None),
                web_sessions.c.expires_at > utcnow(),
            )
        ).first()
        principal = active_user(conn, row.user_id) if row else None
    return SignedIn(principal, secret) if principal else None


def cookie_value(request: Request, name: str) -> str | None:
    """The verified value of one of Plait's signed cookies, or None if absent or forged."""
    raw = request.cookies.get(name)
    if not raw:
        return None
    try:
        value = _serializer(request.app.state.settings).loads(raw)
    except BadSignature:
        return None
    return value if isinstance(value, str) and value.startswith(name) else None


def set_cookie(request: Request, response: Response, name: str, secret: str | None) -> None:
    """Set (or, with None, delete) one of Plait's signed cookies."""
    secure = request.url.scheme == "https"
    if secret is None:
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="lax")
        return
    value = _serializer(request.app.state.settings).dumps(secret)
    response.set_cookie(name, value, path="/", secure=secure, httponly=True, samesite="lax")


def new_cookie_secret(name: str) -> str:
    """A random cookie secret, prefixed with the cookie's name so one cannot pose as another."""
    return f"{name}:{new_secret(43)}"


def purge_sessions(conn: Connection) -> None:
    """Forget sessions that ended or expired more than a day ago."""
    cutoff = utcnow() - timedelta(days=1)
    conn.execute(
        web_sessions.delete().where(
            sa.or_(web_sessions.c.expires_at < cutoff, web_sessions.c.ended_at < cutoff)
        )
    )
