"""Alembic environment: always run programmatically with a connection (see `storage.engine.upgrade`)."""

from __future__ import annotations

from alembic import context

from xm_slurm.api.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "xm_slurm migrations run through xm_slurm.api.storage.engine.upgrade(), not the alembic CLI"
    )

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
