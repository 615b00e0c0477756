"""How ``plait serve`` sets up each process that serves requests."""

from __future__ import annotations

import multiprocessing
import sys

import sqlalchemy as sa

from plait.core.settings import Settings
from plait.server_runner import SQLITE_SWITCH_INTERVAL


def _switch_interval_of_a_started_server(home: str, database_url: str) -> float:
    import os

    os.environ["PLAIT_HOME"] = home
    os.environ["PLAIT_DATABASE_URL"] = database_url
    from plait.server_runner import app_factory

    app_factory()
    return sys.getswitchinterval()


def test_a_server_on_sqlite_hands_the_interpreter_lock_round_sooner(
    settings: Settings, engine: sa.Engine
) -> None:
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        interval = pool.apply(
            _switch_interval_of_a_started_server, (str(settings.home), settings.database_url)
        )
    expected = SQLITE_SWITCH_INTERVAL if engine.dialect.name == "sqlite" else 0.005
    assert interval == expected
    assert SQLITE_SWITCH_INTERVAL < 0.005
