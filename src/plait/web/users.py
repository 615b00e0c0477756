"""The Users page (admins): who can sign in, with which role; add, disable or enable."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from plait.core.auth import ROLES
from plait.core.db import read, write
from plait.core.errors import InvalidInput, PlaitError
from plait.core.users import create_user, list_users, set_disabled
from plait.web.access import editor, viewer
from plait.web.sessions import SignedIn
from plait.web.templating import render

router = APIRouter(include_in_schema=False)

Admin = Annotated[SignedIn, Depends(viewer("users:manage"))]
AdminForm = Annotated[SignedIn, Depends(editor("users:manage"))]


@router.get("/users")
def users_page(request: Request, _admin: Admin, created: str | None = None) -> Response:
    """Every user, and a form to add one."""
    return _page(request, notice=f"Created {created}." if created else None)


@router.post("/users")
def add_user(
    request: Request,
    _admin: AdminForm,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form()] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Create a user; a bad email, role or password re-shows the form with the reason."""
    try:
        with write(request.app.state.engine) as conn:
            user = create_user(conn, email, role, password)
    except PlaitError as exc:
        return _page(request, error=exc.message, email=email, role=role, status=exc.status)
    return RedirectResponse(f"/users?created={user['email']}", status_code=303)


@router.post("/users/{user_id}/disable")
def disable_user(request: Request, user_id: UUID, admin: AdminForm) -> Response:
    """Disable a user: their sessions stop working at once."""
    if user_id == admin.principal.id:
        raise InvalidInput("you cannot disable yourself")
    with write(request.app.state.engine) as conn:
        set_disabled(conn, user_id, True)
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{user_id}/enable")
def enable_user(request: Request, user_id: UUID, _admin: AdminForm) -> Response:
    """Let a disabled user sign in again."""
    with write(request.app.state.engine) as conn:
        set_disabled(conn, user_id, False)
    return RedirectResponse("/users", status_code=303)


def _page(
    request: Request,
    *,
    notice: str | None = None,
    error: str | None = None,
    email: str = "",
    role: str = "marketer",
    status: int = 200,
) -> Response:
    with read(request.app.state.engine) as conn:
        people = list_users(conn)
    context = {
        "title": "Users",
        "users": people,
        "roles": ROLES,
        "notice": notice,
        "error": error,
        "email": email,
        "role": role,
    }
    return render(request, "users.html", context, status)
