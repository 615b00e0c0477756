"""Alembic migrations for the operational database, and the functions that apply them."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from plait.core.db import write

_LOCK_KEY = 0x504C414954  # "PLAIT"


def alembic_config() -> Config:
    """An Alembic configuration pointing at Plait's migration scripts."""
    config = Config()
    config.set_main_option("script_location", "plait:migrations")
    return config


def head_revision() -> str | None:
    """The newest revision the installed code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema up to ``revision``; concurrent callers wait for each other."""
    if revision == "head" and current_revision(engine) == head_revision():
        return head_revision()
    config = alembic_config()
    with write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return current_revision(engine)
