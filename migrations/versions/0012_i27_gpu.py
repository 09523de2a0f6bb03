"""Sweeps that stop losers early (issue 27): the job state stopped_early and each job's verdicts
at the rungs of its sweep's successive halving.

Revision ID: 0012_i27_gpu
Revises: 0011_trust2
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_i27_gpu"
down_revision = "0011_trust2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # A new enum value cannot be used in the transaction that adds it: added on its own.
        with op.get_context().autocommit_block():
            op.execute("ALTER TYPE job_state ADD VALUE IF NOT EXISTS 'stopped_early'")
    # SQLite keeps the state as text without a constraint: nothing to change there.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("halving", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("halving")
    # PostgreSQL cannot drop an enum value; stopped_early stays known to the type, unused.
