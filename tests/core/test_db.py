"""The database engine: PostgreSQL connections the server dropped are replaced before use,
connections say which Plait process they serve, and ``among`` finds the same rows however
many values it is given."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from tests.conftest import POSTGRES_ADMIN_URL

from plait.core import db
from plait.core.db import among, create_engine
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


def _application_name(url: str, home: str) -> str:
    engine = create_engine(Settings(home=home, database_url=url))
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT current_setting('application_name')").scalar_one()
    finally:
        engine.dispose()


def test_postgresql_connections_name_the_plait_process_they_serve(
    tmp_path, postgres_url: str
) -> None:
    assert _application_name(postgres_url, str(tmp_path)) == "plait"
    spawn = multiprocessing.get_context("spawn")
    for process, expected in (("plait-upkeep", "plait-upkeep"), ("SpawnProcess-1", "plait")):
        with spawn.Pool(1, initializer=_rename, initargs=(process,)) as pool:
            assert pool.apply(_application_name, (postgres_url, str(tmp_path))) == expected


def _rename(name: str) -> None:
    multiprocessing.current_process().name = name


@pytest.mark.parametrize("count", [3, 64, 65, 5000])
def test_among_finds_the_same_rows_for_short_and_long_lists(engine: sa.Engine, count: int) -> None:
    table = sa.Table(
        "among_probe",
        sa.MetaData(),
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        prefixes=["TEMPORARY"],
    )
    ids = [uuid.uuid4() for _ in range(2 * count)]
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), [{"id": i, "name": f"n{n}"} for n, i in enumerate(ids)])
        wanted = ids[::2]
        dialect = conn.dialect.name
        by_id = conn.execute(sa.select(table.c.name).where(among(table.c.id, wanted, dialect)))
        names = [f"n{n}" for n in range(0, 2 * count, 2)]
        by_name = conn.execute(sa.select(table.c.id).where(among(table.c.name, names, dialect)))
        found_names, found_ids = sorted(by_id.scalars()), sorted(by_name.scalars())
        table.drop(conn)  # a pooled connection keeps its temporary tables
    assert found_names == sorted(names)
    assert found_ids == sorted(wanted)


@pytest.fixture
def sqlite_engine(tmp_path) -> sa.Engine:
    engine = create_engine(Settings(home=tmp_path))
    yield engine
    engine.dispose()


def _temp_store(conn: sa.Connection, seen: set[int]) -> int:
    """The connection's temp_store; ``seen`` collects which driver connections answered."""
    seen.add(id(conn.connection.driver_connection))
    return conn.exec_driver_sql("PRAGMA temp_store").scalar_one()


def test_a_write_can_keep_sqlites_statement_journals_in_memory_for_itself_only(
    sqlite_engine: sa.Engine,
) -> None:
    seen: set[int] = set()
    with db.write(sqlite_engine, journal_in_memory=True) as conn:
        assert _temp_store(conn, seen) == 2  # MEMORY
        conn.exec_driver_sql("CREATE TABLE kept (n INTEGER)")

    def failing_write() -> None:
        with db.write(sqlite_engine, journal_in_memory=True) as conn:
            conn.exec_driver_sql("INSERT INTO kept VALUES (1)")
            raise RuntimeError("the transaction fails")

    with pytest.raises(RuntimeError):
        failing_write()
    with sqlite_engine.connect() as conn:
        assert _temp_store(conn, seen) == 0  # DEFAULT again, after success and after failure
        assert conn.exec_driver_sql("SELECT count(*) FROM kept").scalar_one() == 0
    with db.write(sqlite_engine) as conn:
        assert _temp_store(conn, seen) == 0
    assert len(seen) == 1  # one pooled connection throughout: what it was left with shows


def test_a_writer_waiting_for_sqlites_lock_holds_no_pooled_connection(
    sqlite_engine: sa.Engine,
) -> None:
    """Writers queued on the lock would otherwise take the pool's connections from readers."""
    waiting, done = threading.Event(), threading.Event()

    def second_writer() -> None:
        waiting.set()
        with db.write(sqlite_engine) as conn:
            conn.exec_driver_sql("SELECT 1")
        done.set()

    with db.write(sqlite_engine) as conn:
        conn.exec_driver_sql("CREATE TABLE kept (n INTEGER)")
        thread = threading.Thread(target=second_writer)
        thread.start()
        waiting.wait(5)
        time.sleep(0.2)  # long enough for it to reach the lock
        assert not done.is_set()
        assert sqlite_engine.pool.checkedout() == 1
    thread.join(5)
    assert done.is_set()


def test_a_write_on_a_kept_connection_leaves_it_open(sqlite_engine: sa.Engine) -> None:
    kept = sqlite_engine.connect()
    try:
        for n in range(2):
            with db.write(sqlite_engine, on=kept) as conn:
                assert conn is kept
                conn.exec_driver_sql(f"CREATE TABLE t{n} (n INTEGER)")
        assert not kept.closed
        assert not kept.in_transaction()
        assert sqlite_engine.pool.checkedout() == 1
    finally:
        kept.close()
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar_one() == 2
