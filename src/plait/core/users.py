"""People who sign in to the dashboard: email, role and an argon2 password hash.

API tokens (``plait.core.auth``) serve programs; users serve people. Both resolve to a
``Principal`` with a role, so one permission table governs the API and the pages.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Connection

from plait.core.auth import Principal, check_role
from plait.core.clock import utcnow
from plait.core.db import UTCDateTime, metadata
from plait.core.errors import Conflict, InvalidInput, NotFound
from plait.core.ids import uuid7

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_login_at", UTCDateTime),
    sa.Column("disabled_at", UTCDateTime),
)

_hasher = PasswordHasher()
_UNKNOWN_USER_HASH = _hasher.hash("a password nobody has")


def normalise_email(email: str) -> str:
    """The stored form of a user's email, or a clear error if it is not an address."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInput(f"{email!r} is not an email address: {exc}", field="email") from None


def check_password(password: str) -> str:
    """Return ``password`` if it is long enough to be worth hashing, else raise."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("that password is too long", field="password")
    return password


def create_user(conn: Connection, email: str, role: str, password: str) -> dict[str, Any]:
    """Add a dashboard user; only the argon2 hash of the password is kept."""
    row = {
        "id": uuid7(),
        "email": normalise_email(email),
        "role": check_role(role),
        "password_hash": _hasher.hash(check_password(password)),
        "created_at": utcnow(),
    }
    taken = conn.execute(sa.select(users.c.id).where(users.c.email == row["email"])).first()
    if taken:
        raise Conflict(f"a user {row['email']} already exists", field="email")
    conn.execute(users.insert(), row)
    return _public(row)


def list_users(conn: Connection) -> list[dict[str, Any]]:
    """Every user, by email, without hashes."""
    rows = conn.execute(sa.select(users).order_by(users.c.email))
    return [_public(row._mapping) for row in rows]


def set_password(conn: Connection, email: str, password: str) -> None:
    """Replace a user's password."""
    done = conn.execute(
        users.update()
        .where(users.c.email == normalise_email(email))
        .values(password_hash=_hasher.hash(check_password(password)))
    )
    if done.rowcount == 0:
        raise NotFound(f"no user {email}", field="email")


def set_disabled(conn: Connection, user_id: UUID, disabled: bool) -> None:
    """Disable a user (their sessions stop working at once) or enable them again."""
    done = conn.execute(
        users.update()
        .where(users.c.id == user_id)
        .values(disabled_at=utcnow() if disabled else None)
    )
    if done.rowcount == 0:
        raise NotFound(f"no user {user_id}")


def verify_login(conn: Connection, email: str, password: str) -> Principal | None:
    """The principal for an email and password, or None. Unknown emails cost as much time
    as wrong passwords, so timing does not reveal who has an account."""
    try:
        address = normalise_email(email)
    except InvalidInput:
        address = None
    row = (
        conn.execute(sa.select(users).where(users.c.email == address)).first() if address else None
    )
    if row is None or row.disabled_at is not None:
        _verify(_UNKNOWN_USER_HASH, password)
        return None
    if not _verify(row.password_hash, password):
        return None
    changes: dict[str, Any] = {"last_login_at": utcnow()}
    if _hasher.check_needs_rehash(row.password_hash):
        changes["password_hash"] = _hasher.hash(password)
    conn.execute(users.update().where(users.c.id == row.id).values(**changes))
    return Principal("user", row.id, row.email, row.role)


def active_user(conn: Connection, user_id: UUID) -> Principal | None:
    """The principal of an enabled user, or None."""
    row = conn.execute(
        sa.select(users.c.id, users.c.email, users.c.role).where(
            users.c.id == user_id, users.c.disabled_at.is_(None)
        )
    ).first()
    return Principal("user", row.id, row.email, row.role) if row else None


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _public(row: Any) -> dict[str, Any]:
    def when(name: str) -> str | None:
        value = row.get(name)
        return value.isoformat() if value else None

    return {
        "id": str(row["id"]),
        "email": row["email"],
        "role": row["role"],
        "created_at": when("created_at"),
        "last_login_at": when("last_login_at"),
        "disabled_at": when("disabled_at"),
    }
