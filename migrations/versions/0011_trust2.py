"""A job's progress without its learning curve (issue 17): status reads of a job leave out its
epochs and split, so the number of epochs trained and the newest validation record are kept in
columns of their own. Rows that exist are summarized from their epochs once, here.

Revision ID: 0011_trust2
Revises: 0011_scalestate
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_trust2"
down_revision = "0011_scalestate"
branch_labels = None
depends_on = None

jobs = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("epochs", sa.JSON),
    sa.column("epochs_done", sa.Integer),
    sa.column("latest_epoch", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("epochs_done", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("latest_epoch", sa.JSON(), nullable=True))
    connection = op.get_bind()
    for job_id, epochs in connection.execute(sa.select(jobs.c.id, jobs.c.epochs)).all():
        done, latest = summarize(epochs or [])
        connection.execute(
            jobs.update().where(jobs.c.id == job_id).values(epochs_done=done, latest_epoch=latest)
        )


def summarize(epochs: list[dict]) -> tuple[int, dict | None]:
    # As core.service.models._summarize_epochs at the time of writing: "epoch None" is the
    # validation before training, and replay jobs log every epoch once per head.
    trained = {
        entry["epoch"]
        for entry in epochs
        if entry.get("epoch") is not None and entry.get("head") != "replay"
    }
    latest = next((entry for entry in reversed(epochs) if entry.get("head") != "replay"), None)
    return len(trained), latest


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("latest_epoch")
        batch.drop_column("epochs_done")
