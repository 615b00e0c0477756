"""events: PostgreSQL no longer checks each event's source against ``sources``

The check was a trigger firing once per inserted event, 8 to 13 µs of PostgreSQL's CPU per event
(about 15 % of what storing one costs it). Every event is stored for a source the tracking API
or importer has just looked up, and sources are never deleted, so it guarded nothing. SQLite
keeps its constraint: there it is one look-up in a tiny index, and dropping it would mean
rebuilding the events table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 04:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "fk_events_source_id_sources"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(CONSTRAINT, "events", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(CONSTRAINT, "events", "sources", ["source_id"], ["id"])
