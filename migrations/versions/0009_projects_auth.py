"""Projects and API tokens; every dataset, job, evaluation, sweep and replay set gets a project.

Rows that exist already belong to the default project, which is also the only project while the
service runs without an admin token.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DEFAULT_PROJECT_ID = "default"
OWNED_TABLES = ("datasets", "sweeps", "jobs", "evaluations", "replay_sets")


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(
        projects,
        [
            {
                "id": DEFAULT_PROJECT_ID,
                "name": DEFAULT_PROJECT_ID,
                "created_at": datetime.now(timezone.utc),
            }
        ],
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("project_id", sa.String(32), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_tokens_project_id", "api_tokens", ["project_id"])
    for table in OWNED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "project_id",
                    sa.String(32),
                    nullable=False,
                    server_default=DEFAULT_PROJECT_ID,
                )
            )
            batch.create_foreign_key(f"{table}_project_id_fkey", "projects", ["project_id"], ["id"])
            batch.create_index(f"ix_{table}_project_id", ["project_id"])


def downgrade() -> None:
    for table in OWNED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_project_id")
            batch.drop_constraint(f"{table}_project_id_fkey", type_="foreignkey")
            batch.drop_column("project_id")
    op.drop_index("ix_api_tokens_project_id", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("projects")
