"""inbox: an index of conversations by assignee and status, so auto-assignment counts each
agent's open conversations from the index instead of reading every one they ever had

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_conversations_assignee_status", "conversations", ["assignee_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_conversations_assignee_status", table_name="conversations")
