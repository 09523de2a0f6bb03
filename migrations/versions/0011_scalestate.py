"""Scale-out state (issue 20): the foundation registry and job log tails live in the database.

Revision ID: 0011_scalestate
Revises: 0010_bigmodel
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_scalestate"
down_revision = "0010_bigmodel"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "foundation_models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "log_lines",
        sa.Column("owner_id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("line", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("log_lines")
    op.drop_table("foundation_models")
