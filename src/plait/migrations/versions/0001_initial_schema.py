"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 15:24:55.728544
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import plait.core.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hint", sa.String(length=20), nullable=False),
        sa.Column("created_at", plait.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", plait.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "lake_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("seq_from", sa.BigInteger(), nullable=False),
        sa.Column("seq_to", sa.BigInteger(), nullable=False),
        sa.Column("created_at", plait.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", plait.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lake_batches")),
    )
    op.create_table(
        "seen_messages",
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("received_at", plait.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source_id", "message_id", name=op.f("pk_seen_messages")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("seen_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_seen_messages_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "sources",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=True),
        sa.Column("write_key_hash", sa.String(length=64), nullable=False),
        sa.Column("write_key_hint", sa.String(length=20), nullable=False),
        sa.Column("created_at", plait.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_sources_name")),
        sa.UniqueConstraint("write_key_hash", name=op.f("uq_sources_write_key_hash")),
    )
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("event", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("anonymous_id", sa.Text(), nullable=True),
        sa.Column("group_id", sa.Text(), nullable=True),
        sa.Column("previous_id", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=100), nullable=True),
        sa.Column("traffic_source", sa.Text(), nullable=True),
        sa.Column("traffic_medium", sa.Text(), nullable=True),
        sa.Column("traffic_campaign", sa.Text(), nullable=True),
        sa.Column("device_type", sa.String(length=20), nullable=True),
        sa.Column("os", sa.String(length=100), nullable=True),
        sa.Column("browser", sa.String(length=100), nullable=True),
        sa.Column("timestamp", plait.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("original_timestamp", plait.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", plait.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("received_at", plait.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "traits",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "integrations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "warnings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_events_source_id_sources")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_anonymous_id", ["anonymous_id", "timestamp"], unique=False)
        batch_op.create_index("ix_events_source_id", ["source_id", "timestamp"], unique=False)
        batch_op.create_index("ix_events_timestamp", ["timestamp", "id"], unique=False)
        batch_op.create_index("ix_events_user_id", ["user_id", "timestamp"], unique=False)

    op.create_table(
        "rejected_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", plait.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(length=300), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=50), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_rejected_events_source_id_sources")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_events")),
    )
    with op.batch_alter_table("rejected_events", schema=None) as batch_op:
        batch_op.create_index("ix_rejected_events_received_at", ["received_at", "id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("rejected_events", schema=None) as batch_op:
        batch_op.drop_index("ix_rejected_events_received_at")

    op.drop_table("rejected_events")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_user_id")
        batch_op.drop_index("ix_events_timestamp")
        batch_op.drop_index("ix_events_source_id")
        batch_op.drop_index("ix_events_anonymous_id")

    op.drop_table("events")
    op.drop_table("sources")
    with op.batch_alter_table("seen_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seen_messages_received_at"))

    op.drop_table("seen_messages")
    op.drop_table("lake_batches")
    op.drop_table("api_tokens")
