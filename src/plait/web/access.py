"""Who may see a page and who may submit a form: FastAPI dependencies for page handlers.

``viewer(permission)`` admits a signed-in user whose role grants the permission;
``editor(permission)`` also requires the form's CSRF token (field ``csrf_token`` or header
``X-CSRF-Token``), so every state-changing request of the dashboard is protected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import Request

from plait.core.errors import Forbidden, PlaitError
from plait.web.sessions import SignedIn, signed_in, tokens_match

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class SignInRequired(PlaitError):
    """Raised on a page request without a live session; pages answer with a redirect."""

    status, code = 401, "sign_in_required"


def sign_in_url(request: Request) -> str:
    """The sign-in page, returning to this request's page afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def viewer(permission: str) -> Callable[[Request], SignedIn]:
    """A dependency: the signed-in user, if their role grants ``permission``."""

    def dependency(request: Request) -> SignedIn:
        person = signed_in(request)
        if person is None:
            raise SignInRequired("sign in to see this page")
        request.state.viewer = person
        if not person.principal.can(permission):
            raise Forbidden(f"the {person.principal.role} role may not open this page")
        return person

    return dependency


def editor(permission: str) -> Callable[[Request], Awaitable[SignedIn]]:
    """A dependency for form posts: ``viewer(permission)`` plus a valid CSRF token."""
    allowed = viewer(permission)

    async def dependency(request: Request) -> SignedIn:
        person = allowed(request)
        await require_csrf(request, person.csrf_token)
        return person

    return dependency


async def require_csrf(request: Request, expected: str) -> None:
    """Refuse the request unless it carries ``expected`` as its CSRF token."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not tokens_match(expected, given):
        raise Forbidden(
            "this form has expired or did not come from Plait; reload the page and try again",
            code="csrf_failed",
        )
