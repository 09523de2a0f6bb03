"""Runs a researcher can find (issue 28): jobs and sweeps get a name and tags (a string-to-string
map), copied from their specs; the lists filter on them.

Revision ID: 0012_i28_runs
Revises: 0011_trust2
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_i28_runs"
down_revision = "0011_trust2"
branch_labels = None
depends_on = None

TABLES = ("jobs", "sweeps")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("name", sa.String(255), nullable=True))
            batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="{}"))
            batch.create_index(f"ix_{table}_name", ["name"])
    # The lists sort newest first on every page.
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_sweeps_created_at", "sweeps", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sweeps_created_at", "sweeps")
    op.drop_index("ix_jobs_created_at", "jobs")
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_name")
            batch.drop_column("tags")
            batch.drop_column("name")
