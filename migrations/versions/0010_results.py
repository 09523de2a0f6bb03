"""Progress inside a job's stage (MD steps done of total), issue 21.

Revision ID: 0010_results
Revises: 0009
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_results"
down_revision = "0010_robust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("stage_progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "stage_progress")
