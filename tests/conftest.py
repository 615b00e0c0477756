"""Fixtures shared by the whole suite.

Storage-touching tests take the ``settings`` fixture, which runs them twice: on SQLite in
a temporary directory and on a throwaway PostgreSQL database (created once per test
session and emptied between tests) on the server at ``PLAIT_TEST_POSTGRES``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from plait.collect.sources import add_source
from plait.core.auth import create_token
from plait.core.db import dispose_engines, get_engine, write
from plait.core.settings import Settings
from plait.migrations import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "PLAIT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database made for this test session (and this xdist worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"plait_test_{worker}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'plait.db'}"
    url = request.getfixturevalue("postgres_url")
    engine = get_engine(Settings(home=tmp_path, database_url=url))
    upgrade(engine)
    with engine.begin() as conn:
        tables = [name for name in sa.inspect(conn).get_table_names() if name != "alembic_version"]
        if tables:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test: its own data directory and database."""
    return Settings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture
def engine(settings: Settings) -> sa.Engine:
    engine = get_engine(settings)
    upgrade(engine)
    return engine


@pytest.fixture
def source(engine: sa.Engine, settings: Settings) -> dict:
    """A web source with its write key."""
    with write(engine) as conn:
        return add_source(conn, settings, "Website")


@pytest.fixture
def admin_token(engine: sa.Engine) -> str:
    with write(engine) as conn:
        return create_token(conn, "admin", "test admin")["token"]


@pytest.fixture
def client(settings: Settings, engine: sa.Engine) -> Iterator[TestClient]:
    """The application in-process (no upkeep process: tests sync the lake themselves)."""
    from plait.server import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_stat(pid: int) -> list[str]:
    """State, parent pid, ... of a process (``/proc/<pid>/stat`` after the command name);
    empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def child_pids(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and process_stat(int(entry.name))[1:2] == [str(pid)]
    ]


def is_alive(pid: int) -> bool:
    return process_stat(pid)[:1] not in ([], ["Z"])


class LiveServer:
    """A real ``plait serve`` process on loopback, which tests may kill and restart."""

    def __init__(
        self,
        settings: Settings,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PLAIT_HOME": str(settings.home),
            "PLAIT_DATABASE_URL": settings.database_url,
            "PLAIT_LAKE": settings.lake,
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "plait", "serve", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 90  # a loaded two-core CI machine can take a while
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"plait serve exited: {self.process.stderr.read().decode()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("plait serve did not come up within 90 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing. Returns once the server's children (its
        upkeep, its workers), which notice and stop by themselves, are gone too (or after
        30 s), so that none of them is still at work when the next test empties the database."""
        if self.process is not None:
            children = child_pids(self.process.pid)
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
            deadline = time.monotonic() + 30
            while any(is_alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


@pytest.fixture
def cli(settings: Settings, engine: sa.Engine):  # type: ignore[no-untyped-def]
    """Run the real ``plait`` command against the test's database."""
    env = {
        **os.environ,
        "PLAIT_HOME": str(settings.home),
        "PLAIT_DATABASE_URL": settings.database_url,
        "PLAIT_LAKE": settings.lake,
        "COLUMNS": "200",
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plait", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def live_server(settings: Settings, engine: sa.Engine) -> Iterator[LiveServer]:
    """``plait serve`` running on a free loopback port against the test's database."""
    server = LiveServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def send_events(client: TestClient, source: dict) -> Callable[..., dict]:
    """Send messages to ``/v1/batch`` with the test source's write key; returns the reply."""

    def send(*messages: dict, expect_rejected: bool = False) -> dict:
        auth = base64.b64encode(f"{source['write_key']}:".encode()).decode()
        response = client.post(
            "/v1/batch",
            content=orjson.dumps({"batch": list(messages)}),
            headers={"content-type": "application/json", "authorization": f"Basic {auth}"},
        )
        assert response.status_code == 200, response.text
        if not expect_rejected:
            assert response.json()["rejected"] == [], response.text
        return response.json()

    return send


class Api:
    """The management API as one token holder sees it."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.headers = client, {"authorization": f"Bearer {token}"}

    def get(self, path: str, status: int = 200) -> Any:
        return self._check(self.client.get(path, headers=self.headers), status)

    def post(self, path: str, body: Any = None, status: int = 200) -> Any:
        return self._check(self.client.post(path, json=body, headers=self.headers), status)

    def delete(self, path: str, status: int = 200) -> Any:
        return self._check(self.client.delete(path, headers=self.headers), status)

    @staticmethod
    def _check(response: Any, status: int) -> Any:
        assert response.status_code == status, response.text
        return response.json()


@pytest.fixture
def admin_api(client: TestClient, admin_token: str) -> Api:
    return Api(client, admin_token)


@pytest.fixture
def token_api(client: TestClient, engine: sa.Engine) -> Callable[[str], Api]:
    """An Api for a fresh token of the given role."""

    def make(role: str) -> Api:
        with write(engine) as conn:
            return Api(client, create_token(conn, role, f"test {role}")["token"])

    return make


# --- the dashboard ---------------------------------------------------------------------

PASSWORD = "correct horse battery staple"
PLAIT = (sys.executable, "-m", "plait")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebSession:
    """The dashboard in-process, as one signed-in user sees it (its own cookie jar)."""

    def __init__(self, client: TestClient, email: str, password: str = PASSWORD) -> None:
        self.client = client
        form = client.get("/login")
        response = client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf_of(form.text)},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        self.csrf_token = csrf_of(self.get_page("/customers"))

    def get_page(self, path: str) -> str:
        """Any page's HTML (the CSRF token is on every signed-in page, even error pages)."""
        return self.client.get(path).text

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs: Any) -> httpx.Response:
        """A form post carrying the session's CSRF token."""
        form = {"csrf_token": self.csrf_token, **(data or {})}
        return self.client.post(path, data=form, follow_redirects=False, **kwargs)


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def add_user(engine: sa.Engine, role: str, email: str | None = None) -> str:
    """A dashboard user of ``role`` with the test password; returns the email."""
    from plait.core.users import create_user

    email = email or f"{role}@example.com"
    with write(engine) as conn:
        create_user(conn, email, role, PASSWORD)
    return email


@pytest.fixture
def web_as(client: TestClient, engine: sa.Engine) -> Callable[[str], WebSession]:
    """A signed-in dashboard session for a new user of the given role."""
    made: dict[str, WebSession] = {}

    def make(role: str) -> WebSession:
        if role not in made:
            email = add_user(engine, role)
            made[role] = WebSession(TestClient(client.app), email)
        return made[role]

    return make


@dataclass
class DemoSite:
    """``plait demo`` built once per test session (SQLite) and served by ``plait serve``."""

    settings: Settings
    server: LiveServer
    summary: dict[str, Any]
    emails: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, path: str, **params: Any) -> Any:
        token = self.summary["admin_token"]
        response = httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="session")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    """A demo world (400 customers, 60 days) behind a real server, with one user per role."""
    home = tmp_path_factory.mktemp("demo-site")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'plait.db'}")
    env = {**os.environ, "PLAIT_HOME": str(home), "PLAIT_DATABASE_URL": settings.database_url}
    built = subprocess.run(
        [*PLAIT, "demo", "--no-serve", "--json", "--customers", "400", "--days", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    summary = orjson.loads(built.stdout)
    emails = {"admin": summary["dashboard"]["email"]}
    for role in ("marketer", "agent"):
        emails[role] = f"{role}@example.com"
        subprocess.run(
            [*PLAIT, "users", "create", emails[role], "--role", role, "--password-stdin"],
            env=env,
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    summary["passwords"] = {"admin": summary["dashboard"]["password"]}
    server = LiveServer(settings).start()
    try:
        yield DemoSite(settings, server, summary, emails)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_as(browser: Any, demo_site: DemoSite) -> Iterator[Callable[[str], Any]]:
    """A browser page signed in to the demo site as the given role (1280 by 800)."""
    contexts: list[Any] = []

    def make(role: str) -> Any:
        context = browser.new_context(
            viewport={"width": 1280, "height": 800}, base_url=demo_site.url, accept_downloads=True
        )
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(demo_site.emails[role])
        password = demo_site.summary["passwords"].get(role, PASSWORD)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        return page

    yield make
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> None:
    """Save the page at desktop width and at phone width into artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(size)
    page.wait_for_timeout(200)
