"""Job warnings, strategy checks, effective hyperparameters and the multihead model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("warnings", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("checks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("effective_hyperparameters", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("multihead_model_key", sa.String(512), nullable=True))
        batch.add_column(sa.Column("replay_dataset_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "replay_dataset_id",
            "multihead_model_key",
            "effective_hyperparameters",
            "checks",
            "warnings",
        ):
            batch.drop_column(column)
