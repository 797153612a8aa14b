"""The run store's schema as SQLAlchemy Core tables: one definition for SQLite and PostgreSQL.

Kept apart from ``store`` so that the Alembic environment can import the metadata without
opening anything. The migrations in ``migrations/versions`` are the source of truth for how a
database reaches this shape; this module is the shape the code reads and writes, and a test
checks the two agree.

Only what queries filter or sort on is a column; the ``RunRecord`` itself stays verbatim in
``evidence`` as text (not ``jsonb``: the record keeps ``NaN`` for "no data", which JSON
proper cannot hold). ``ended_ts`` is epoch seconds so ``since`` compares instants, not
strings in mixed time zones.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, MetaData, Table, Text

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("service", Text, nullable=False),
    Column("experiment", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("ended_at", Text, nullable=False),
    Column("ended_ts", Float, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("workflow_id", Text, nullable=True),
    Column("recorded_at", Float, nullable=True),
)
Index("runs_service_ended", runs.c.service, runs.c.ended_ts)
Index("runs_workflow", runs.c.workflow_id)

__all__ = ["metadata", "runs"]
