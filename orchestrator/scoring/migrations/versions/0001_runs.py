"""The runs table as the first store created it (``PRAGMA user_version = 1``).

A SQLite file made before the store moved to Alembic already has exactly this shape; the
store stamps such a file at this revision instead of running it.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("service", sa.Text, nullable=False),
        sa.Column("experiment", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("ended_at", sa.Text, nullable=False),
        sa.Column("ended_ts", sa.Float, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
    )
    op.create_index("runs_service_ended", "runs", ["service", "ended_ts"])


def downgrade() -> None:
    op.drop_index("runs_service_ended", table_name="runs")
    op.drop_table("runs")
