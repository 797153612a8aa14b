"""Workflow id and recording time as columns, filled in for runs stored before.

The workflow id lets an operator go from a Temporal history to its stored run (and back)
without parsing every record; ``recorded_at`` tells when a retried save last wrote the row.
Old rows get their workflow id from their own evidence and no recording time (unknown).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("workflow_id", sa.Text, nullable=True))
    op.add_column("runs", sa.Column("recorded_at", sa.Float, nullable=True))
    op.create_index("runs_workflow", "runs", ["workflow_id"])
    runs = sa.table("runs", sa.column("run_id", sa.Text), sa.column("evidence", sa.Text),
                    sa.column("workflow_id", sa.Text))
    conn = op.get_bind()
    # Python's json reads the NaN the records keep for "no data"; the database's JSON functions would not.
    # One executemany per batch: a statement per row made a store of a thousand runs take seconds.
    update = (runs.update().where(runs.c.run_id == sa.bindparam("rid"))
              .values(workflow_id=sa.bindparam("wid")))
    result = conn.execute(sa.select(runs.c.run_id, runs.c.evidence))
    while batch := result.fetchmany(500):
        found = [{"rid": run_id, "wid": json.loads(evidence).get("workflow_id")} for run_id, evidence in batch]
        found = [f for f in found if f["wid"]]
        if found:
            conn.execute(update, found)


def downgrade() -> None:
    op.drop_index("runs_workflow", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("recorded_at")
        batch.drop_column("workflow_id")
