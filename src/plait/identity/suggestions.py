"""Merge suggestions: customers who share no identifier but are probably one person.

Found by :func:`plait.identity.duplicates.find_duplicates` (Splink) over each customer's
name, e-mail, phone and address, stored with their match probability, and merged only when
a person accepts them; a rejected pair is remembered and not suggested again.
"""

from __future__ import annotations

import sqlalchemy as sa

from plait.core.db import UTCDateTime, metadata

identity_suggestions = sa.Table(
    "identity_suggestions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("left_id", sa.Uuid, nullable=False),
    sa.Column("right_id", sa.Uuid, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("decided_at", UTCDateTime),
    sa.Column("decided_by", sa.String(200)),
    sa.Column("merge_id", sa.Uuid),
    sa.UniqueConstraint("left_id", "right_id"),
    sa.Index("ix_identity_suggestions_status", "status", "probability"),
)
"""Suggested pairs of customers (``left_id < right_id``): pending, accepted or rejected."""
