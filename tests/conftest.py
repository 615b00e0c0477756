"""Fixtures shared by the whole suite.

Storage-touching tests take the ``settings`` fixture, which runs them twice: on SQLite in
a temporary directory and on a throwaway PostgreSQL database (created once per test
session and emptied between tests) on the server at ``PLAIT_TEST_POSTGRES``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
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


class LiveServer:
    """A real ``plait serve`` process on loopback, which tests may kill and restart."""

    def __init__(self, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
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
            [sys.executable, "-m", "plait", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"plait serve exited: {self.process.stderr.read().decode()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("plait serve did not come up within 30 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

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
