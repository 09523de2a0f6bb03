"""Production shape (issue 7): projects, tokens, artifacts; job leases for crash recovery.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A running job is held by the worker that renews its lease; an expired lease means the
    # worker is gone and the job is re-queued or failed.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(32), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    # Jobs running before leases existed count as abandoned, so the next worker sweep takes them.
    op.execute("UPDATE jobs SET lease_expires_at = CURRENT_TIMESTAMP WHERE state = 'running'")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
