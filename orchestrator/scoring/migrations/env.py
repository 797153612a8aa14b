"""Alembic environment: always online, on the connection ``store.migrate`` opened and locked.

There is no ``alembic.ini``: the store builds the configuration in code, so the same
migrations run from the worker, the CLI and the tests without a file to find.
"""

from __future__ import annotations

from alembic import context

from orchestrator.scoring.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
