"""The database engine: PostgreSQL connections the server dropped are replaced before use."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.conftest import POSTGRES_ADMIN_URL

from plait.core import db
from plait.core.db import create_engine
from plait.core.settings import Settings


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def _terminate(pid: int) -> None:
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar_one()
    admin.dispose()


@pytest.fixture
def pg_engine(tmp_path, postgres_url: str) -> sa.Engine:
    engine = create_engine(Settings(home=tmp_path, database_url=postgres_url))
    engine.pool = engine.pool.recreate()  # one pooled connection, so each checkout reuses it
    yield engine
    engine.dispose()


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    pg_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend_pid(pg_engine)
    _terminate(first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    second = _backend_pid(pg_engine)
    assert second != first


def test_a_connection_in_steady_use_is_not_pinged(
    pg_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    sa.event.listen(pg_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    pings: list[object] = []
    ping = pg_engine.dialect.do_ping
    monkeypatch.setattr(pg_engine.dialect, "do_ping", lambda conn: pings.append(conn) or ping(conn))
    for _ in range(3):
        _backend_pid(pg_engine)
    assert pings == []
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    _backend_pid(pg_engine)
    assert len(pings) == 1
