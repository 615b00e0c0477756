"""Signing in and out of the dashboard: sessions, CSRF, rate limiting, roles, users."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import PASSWORD, WebSession, add_user, csrf_of

from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.users import set_disabled, users
from plait.web.login import login_failures
from plait.web.sessions import web_sessions


def sign_in(client: TestClient, email: str, password: str = PASSWORD, **form: str):
    token = csrf_of(client.get("/login").text)
    data = {"email": email, "password": password, "csrf_token": token, **form}
    return client.post("/login", data=data, follow_redirects=False)


def failures(engine: sa.Engine) -> int:
    with read(engine) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(login_failures)).scalar()


def test_pages_send_strangers_to_sign_in_and_back(client: TestClient, engine: sa.Engine) -> None:
    response = client.get("/users?x=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fusers%3Fx%3D1"
    email = add_user(engine, "admin")
    signed = sign_in(client, email, next="/users?x=1")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/users?x=1"
    page = client.get("/users")
    assert page.status_code == 200
    assert email in page.text


def test_wrong_password_is_refused_and_counted(client: TestClient, engine: sa.Engine) -> None:
    email = add_user(engine, "marketer")
    response = sign_in(client, email, "not the password")
    assert response.status_code == 401
    assert "Wrong email or password" in response.text
    assert "plait_session" not in response.cookies
    assert failures(engine) == 1
    assert client.get("/users", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_sign_in_never_redirects_off_site(
    client: TestClient, engine: sa.Engine, target: str
) -> None:
    response = sign_in(client, add_user(engine, "admin"), next=target)
    assert response.headers["location"] == "/"


def test_sign_in_form_needs_its_csrf_token(client: TestClient, engine: sa.Engine) -> None:
    email = add_user(engine, "admin")
    client.get("/login")
    missing = client.post("/login", data={"email": email, "password": PASSWORD})
    assert missing.status_code == 403
    forged = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": "0" * 64}
    )
    assert forged.status_code == 403
    assert "plait_session" not in client.cookies


def test_repeated_failures_lock_the_email_for_the_window(
    client: TestClient, engine: sa.Engine, settings
) -> None:
    email = add_user(engine, "admin")
    other = add_user(engine, "agent")
    limit = settings.server.login_max_failures
    for _ in range(limit):
        assert sign_in(client, email, "guess guess guess").status_code == 401
    locked = sign_in(client, email)  # even the right password waits
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in locked.text
    assert failures(engine) == limit  # a refused attempt does not extend the lock
    assert sign_in(client, other).status_code == 303
    with write(engine) as conn:
        window = timedelta(minutes=settings.server.login_window_minutes, seconds=1)
        conn.execute(login_failures.update().values(at=utcnow() - window))
    assert sign_in(TestClient(client.app), email).status_code == 303
    assert failures(engine) == 0  # success clears the email's failures


def test_failures_from_one_address_lock_it_across_emails(
    client: TestClient, engine: sa.Engine, settings
) -> None:
    email = add_user(engine, "admin")
    for n in range(settings.server.login_max_failures_per_address):
        assert sign_in(client, f"nobody{n}@example.com", "guess guess").status_code == 401
    assert sign_in(client, email).status_code == 429


def test_sign_out_ends_the_session_everywhere(client: TestClient, engine: sa.Engine) -> None:
    session = WebSession(TestClient(client.app), add_user(engine, "admin"))
    stolen = dict(session.client.cookies)
    assert session.post("/logout").status_code == 303
    copy = TestClient(client.app, cookies=stolen)
    assert copy.get("/users", follow_redirects=False).status_code == 303
    with read(engine) as conn:
        assert conn.execute(sa.select(web_sessions.c.ended_at)).scalar() is not None


def test_sign_out_needs_the_csrf_token(client: TestClient, engine: sa.Engine) -> None:
    session = WebSession(TestClient(client.app), add_user(engine, "admin"))
    response = session.client.post("/logout", follow_redirects=False)
    assert response.status_code == 403
    assert session.get("/users").status_code == 200


def test_expired_sessions_and_disabled_users_are_signed_out(
    client: TestClient, engine: sa.Engine
) -> None:
    first = WebSession(TestClient(client.app), add_user(engine, "admin"))
    second = WebSession(TestClient(client.app), add_user(engine, "marketer"))
    with write(engine) as conn:
        conn.execute(web_sessions.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    assert first.get("/users", follow_redirects=False).status_code == 303
    third = WebSession(TestClient(client.app), add_user(engine, "agent"))
    with write(engine) as conn:
        agent_id = conn.execute(sa.select(users.c.id).where(users.c.role == "agent")).scalar()
        set_disabled(conn, agent_id, True)
    assert third.get("/users", follow_redirects=False).status_code == 303
    assert second.get("/users", follow_redirects=False).status_code == 303  # expired above
    assert sign_in(TestClient(client.app), "agent@example.com").status_code == 401


def test_a_forged_cookie_signs_nobody_in(client: TestClient, engine: sa.Engine) -> None:
    session = WebSession(TestClient(client.app), add_user(engine, "admin"))
    value = session.client.cookies["plait_session"]
    # change a character that carries signature bits only (the last one may be padding bits)
    swapped = "A" if value[-5] != "A" else "B"
    tampered = TestClient(client.app, cookies={"plait_session": value[:-5] + swapped + value[-4:]})
    assert tampered.get("/users", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("role", ["marketer", "agent"])
def test_only_admins_manage_users(web_as, engine: sa.Engine, role: str) -> None:
    session = web_as(role)
    page = session.get("/users")
    assert page.status_code == 403
    assert "text/html" in page.headers["content-type"]
    attempt = session.post(
        "/users", {"email": "x@example.com", "role": "admin", "password": "p" * 12}
    )
    assert attempt.status_code == 403
    with read(engine) as conn:
        assert (
            conn.execute(sa.select(users.c.id).where(users.c.email == "x@example.com")).first()
            is None
        )


@pytest.mark.parametrize(
    ("form", "message", "status"),
    [
        ({"email": "not-an-email", "role": "agent", "password": "p" * 12}, "not an email", 400),
        ({"email": "n@example.com", "role": "owner", "password": "p" * 12}, "unknown role", 400),
        ({"email": "n@example.com", "role": "agent", "password": "short"}, "at least 10", 400),
        ({"email": "admin@example.com", "role": "agent", "password": "p" * 12}, "already", 409),
    ],
)
def test_the_users_page_refuses_bad_input_and_writes_nothing(
    web_as, engine: sa.Engine, form: dict, message: str, status: int
) -> None:
    session = web_as("admin")
    response = session.post("/users", form)
    assert response.status_code == status
    assert message in response.text
    with read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() == 1


def test_an_admin_adds_a_user_who_can_then_sign_in(web_as, client: TestClient) -> None:
    session = web_as("admin")
    form = {"email": "New.Person@Example.com", "role": "agent", "password": "a long password"}
    response = session.post("/users", form)
    assert response.status_code == 303
    assert "new.person@example.com" in session.get("/users").text
    assert (
        sign_in(TestClient(client.app), "new.person@example.com", "a long password").status_code
        == 303
    )


def test_passwords_are_stored_as_argon2_hashes(cli, engine: sa.Engine) -> None:
    done = cli(
        "users",
        "create",
        "ops@example.com",
        "--role",
        "admin",
        "--password-stdin",
        stdin="s3cret password\n",
    )
    assert done.returncode == 0, done.stderr
    with read(engine) as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar()
    assert stored.startswith("$argon2id$")
    assert "s3cret" not in stored
    listed = cli("users", "list", "--json")
    assert "ops@example.com" in listed.stdout
    assert "argon2" not in listed.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ("users", "create", "x@example.com", "--role", "boss", "--password-stdin"),
            "long enough pw\n",
            "unknown role",
        ),
        (
            ("users", "create", "nope", "--role", "agent", "--password-stdin"),
            "long enough pw\n",
            "not an email",
        ),
        (
            ("users", "create", "x@example.com", "--role", "agent", "--password-stdin"),
            "short\n",
            "at least 10",
        ),
    ],
)
def test_users_create_refuses_bad_input(cli, engine: sa.Engine, args, stdin, message) -> None:
    done = cli(*args, stdin=stdin)
    assert done.returncode == 2
    assert message in done.stderr
    with read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() == 0


def test_users_create_refuses_a_second_user_with_the_same_email(cli) -> None:
    args = ("users", "create", "x@example.com", "--role", "agent", "--password-stdin")
    assert cli(*args, stdin="long enough pw\n").returncode == 0
    again = cli(*args, stdin="another long pw\n")
    assert again.returncode == 2
    assert "already exists" in again.stderr


def test_pages_carry_security_headers(client: TestClient) -> None:
    response = client.get("/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie


def test_api_errors_stay_json_and_page_errors_are_pages(client: TestClient) -> None:
    assert client.get("/api/nothing-here").headers["content-type"].startswith("application/json")
    page = client.get("/nothing-here")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")


def test_upkeep_forgets_finished_sessions_and_old_failures(
    client: TestClient, engine: sa.Engine, settings
) -> None:
    from plait.upkeep import upkeep_once

    email = add_user(engine, "admin")
    old, live = (WebSession(TestClient(client.app), email) for _ in range(2))
    assert old.post("/logout").status_code == 303
    sign_in(client, email, "a wrong password")
    with write(engine) as conn:
        two_days_ago = utcnow() - timedelta(days=2)
        conn.execute(
            web_sessions.update()
            .where(web_sessions.c.ended_at.is_not(None))
            .values(ended_at=two_days_ago)
        )
        conn.execute(login_failures.update().values(at=two_days_ago))
    upkeep_once(engine, settings)
    with read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar() == 1
    assert failures(engine) == 0
    assert live.get("/users").status_code == 200
