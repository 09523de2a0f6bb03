"""A job's verdicts on its row (issue 25): GET /jobs/{id} shows the report's opening verdicts,
the MD one with the length its runs lasted beside the study's, without loading the metrics.
Jobs that succeeded before have none (their report grades them when read).

Revision ID: 0012_i25_md
Revises: 0011_trust2
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_i25_md"
down_revision = "0012_i26_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("verdicts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("verdicts")
