"""Chained fine-tunes (issue 28): a foundation promoted from a succeeded job records its lineage
(parent foundation and sha256, job, dataset sha256s, E0 method, strategy).

Revision ID: 0013_promote
Revises: 0012_i28_runs
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_promote"
down_revision = "0012_i28_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("foundation_models") as batch:
        batch.add_column(sa.Column("lineage", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("foundation_models") as batch:
        batch.drop_column("lineage")
