"""No stranded work (issue 17): evaluations and replay sets get the leases jobs have, and every
work row records when its task reached the broker, so a sweeper re-sends those that never did.

Revision ID: 0010_robust
Revises: 0009
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_robust"
down_revision = "0010_trust"
branch_labels = None
depends_on = None

LEASED_TABLES = ("evaluations", "replay_sets")
WORK_TABLES = ("jobs", *LEASED_TABLES)


def upgrade() -> None:
    for table in LEASED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("attempts", sa.Integer(), nullable=False, server_default="0")
            )
            batch.add_column(sa.Column("lease_owner", sa.String(32), nullable=True))
            batch.add_column(
                sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
            )
        # Rows running before leases existed count as abandoned, so the next sweep takes them.
        op.execute(
            f"UPDATE {table} SET lease_expires_at = CURRENT_TIMESTAMP WHERE state = 'running'"
        )
    # NULL: the task was never confirmed sent. Queued rows left from before are re-sent once,
    # which is harmless: a task whose row is no longer queued does nothing.
    for table in WORK_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in WORK_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("enqueued_at")
    for table in LEASED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("lease_expires_at")
            batch.drop_column("lease_owner")
            batch.drop_column("attempts")
