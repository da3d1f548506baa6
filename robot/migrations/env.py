"""Alembic environment: the engine comes from the service's own settings."""

from __future__ import annotations

from alembic import context

from robot.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through robot.migrate
    raise RuntimeError("run migrations with `robot db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
