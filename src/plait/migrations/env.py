"""Alembic environment: runs on the connection Plait hands it (see ``plait.migrations``)."""

from alembic import context

from plait.migrations.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    from plait.core.db import create_engine
    from plait.core.settings import get_settings

    connection = create_engine(get_settings()).connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
