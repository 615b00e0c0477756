"""inbox: a partial index of open conversations for the queue counts; drop the assignee
index that ix_conversations_assignee_recent makes redundant

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status != 'resolved'")


def upgrade() -> None:
    op.create_index(
        "ix_conversations_open",
        "conversations",
        ["inbox_id", "assignee_id", "first_response_due", "next_response_due", "resolution_due"],
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    op.drop_index("ix_conversations_assignee_id", table_name="conversations")


def downgrade() -> None:
    op.create_index("ix_conversations_assignee_id", "conversations", ["assignee_id"])
    op.drop_index("ix_conversations_open", table_name="conversations")
