"""Roles, API tokens and the request principal.

Roles are enforced from the start: every management endpoint names the permission it
needs, and a token's role either grants it or the request is refused with 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.engine import Connection

from plait.core.clock import utcnow
from plait.core.db import UTCDateTime, metadata
from plait.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from plait.core.ids import uuid7
from plait.core.secrets import digest, hint, new_secret

ROLES = ("admin", "marketer", "agent")

PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    "marketer": frozenset({"events:read", "analytics:read", "profiles:read"}),
    "agent": frozenset({"profiles:read", "inbox:read", "inbox:write"}),
}

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("token_hint", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
)


@dataclass(frozen=True)
class Principal:
    """Who is making a request, and with which role."""

    kind: str
    id: UUID
    name: str
    role: str

    def can(self, permission: str) -> bool:
        granted = PERMISSIONS.get(self.role, frozenset())
        return "*" in granted or permission in granted


def check_role(role: str) -> str:
    """Return ``role`` if it is one Plait knows, else raise a clear error."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; choose one of {', '.join(ROLES)}", field="role")
    return role


def create_token(conn: Connection, role: str, name: str | None = None) -> dict[str, Any]:
    """Create an API token; the secret is returned once and only its digest is kept."""
    check_role(role)
    secret = new_secret(40, prefix="plt_")
    row = {
        "id": uuid7(),
        "name": (name or f"{role} token").strip()[:200],
        "role": role,
        "token_hash": digest(secret),
        "token_hint": hint(secret),
        "created_at": utcnow(),
    }
    conn.execute(api_tokens.insert(), row)
    return {**_public(row), "token": secret}


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every token, newest first, without secrets."""
    rows = conn.execute(sa.select(api_tokens).order_by(api_tokens.c.created_at.desc()))
    return [_public(row._mapping) for row in rows]


def revoke_token(conn: Connection, token_id: UUID) -> None:
    """Revoke a token; requests using it are refused from then on."""
    done = conn.execute(
        api_tokens.update()
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if done.rowcount == 0:
        raise NotFound(f"no active token {token_id}")


def principal_for_token(conn: Connection, secret: str) -> Principal | None:
    """The principal an API token stands for, or None if unknown or revoked."""
    row = conn.execute(
        sa.select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role).where(
            api_tokens.c.token_hash == digest(secret), api_tokens.c.revoked_at.is_(None)
        )
    ).first()
    return Principal("token", row.id, row.name, row.role) if row else None


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "role": row["role"],
        "hint": row["token_hint"],
        "created_at": row["created_at"].isoformat(),
        "revoked_at": row["revoked_at"].isoformat() if row.get("revoked_at") else None,
    }


def authenticate(request: Request) -> Principal:
    """The principal of a management API request (``Authorization: Bearer <token>``)."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send an API token as 'Authorization: Bearer <token>'")
    with request.app.state.engine.connect() as conn:
        principal = principal_for_token(conn, secret.strip())
    if principal is None:
        raise Unauthorized("the API token is unknown or revoked", code="invalid_token")
    return principal


def require(permission: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the request's principal, if its role grants ``permission``."""

    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        if not principal.can(permission):
            raise Forbidden(f"the {principal.role} role may not do this ({permission})")
        return principal

    return dependency
