"""The identity map beside the event lake: every identifier and the customer it belongs to
now. Analytics join lake events to customers through it (on the event's anchor), so a merge
or a split changes past attribution without rewriting a single event."""

from __future__ import annotations

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from plait.core.db import read, write
from plait.core.lake import write_parquet
from plait.core.settings import Settings
from plait.identity.graph import identities, identity_progress, profiles, progress

IDENTITY_MAP_PATH = "identity_map/identity_map.parquet"
IDENTITY_MAP_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("value", pa.string()),
        ("profile_id", pa.string()),
        ("customer_id", pa.string()),
    ]
)


def export_identity_map(engine: Engine, settings: Settings, *, force: bool = False) -> bool:
    """Write the map if the graph changed since the last export; returns whether it did."""
    with read(engine) as conn:
        state = progress(conn) if _has_progress(conn) else None
        if state is None or (not force and state["version"] == state["exported_version"]):
            return False
        rows = conn.execute(
            sa.select(
                identities.c.kind, identities.c.value, identities.c.profile_id, profiles.c.root_id
            ).join(profiles, profiles.c.id == identities.c.profile_id)
        ).all()
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    table = pa.Table.from_arrays(
        [
            pa.array(columns[0], pa.string()),
            pa.array(columns[1], pa.string()),
            pa.array([str(value) for value in columns[2]], pa.string()),
            pa.array([str(value) for value in columns[3]], pa.string()),
        ],
        schema=IDENTITY_MAP_SCHEMA,
    )
    write_parquet(table, settings.lake, IDENTITY_MAP_PATH)
    with write(engine) as conn:
        conn.execute(
            identity_progress.update()
            .where(
                identity_progress.c.id == 1, identity_progress.c.exported_version < state["version"]
            )
            .values(exported_version=state["version"])
        )
    return True


def _has_progress(conn: sa.Connection) -> bool:
    return conn.execute(sa.select(sa.func.count()).select_from(identity_progress)).scalar() > 0
