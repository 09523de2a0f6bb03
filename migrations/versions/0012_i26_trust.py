"""Foundation models kept in their safe form (issue 26): every registered model is read once in
the sandbox and stored as safetensors weights with its architecture as JSON; its row records the
facts a request needs (elements, heads, E0s, r_max, size, dtype) and the sha256 of the file as
it was registered. Rows that exist are converted here: their pickle is read from artifact storage
in the sandbox (core.registry.model_sandbox), the safe file stored, the row repointed. A row whose
file the sandbox refuses (not a ScaleShiftMACE mace can fine-tune, or a pickle naming anything
else) is removed, with the reason printed: it could only ever be loaded by running its code.

Revision ID: 0012_i26_trust
Revises: 0011_trust2
Create Date: 2026-12-07
"""

import tempfile
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0012_i26_trust"
down_revision = "0011_trust2"
branch_labels = None
depends_on = None

foundations = sa.table(
    "foundation_models",
    sa.column("name", sa.String),
    sa.column("sha256", sa.String),
    sa.column("storage_key", sa.String),
    sa.column("size_bytes", sa.BigInteger),
    sa.column("facts", sa.JSON),
    sa.column("upload_sha256", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("foundation_models") as batch:
        batch.add_column(sa.Column("facts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("upload_sha256", sa.String(64), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(foundations.c.name, foundations.c.sha256, foundations.c.storage_key)
    ).all()
    if rows:
        convert_rows(connection, rows)


def convert_rows(connection: sa.Connection, rows: list) -> None:
    # Imported here: a fresh database (every test run) has no rows and needs none of this.
    from core.artifacts.storage import storage_from_settings
    from core.config import get_settings
    from core.errors import ArtifactMissingError, InvalidModelFileError
    from core.registry.catalogue import file_sha256
    from core.registry.foundation_store import foundation_key
    from core.registry.model_sandbox import SandboxLimits, convert_in_sandbox

    settings = get_settings()
    storage = storage_from_settings(settings)
    limits = SandboxLimits(settings.model_sandbox_memory_mb, settings.model_sandbox_cpu_s)
    for name, sha256, key in rows:
        with tempfile.TemporaryDirectory(prefix="mlft-migrate-") as folder:
            safe = Path(folder) / "model.safetensors"
            try:
                original = storage.local_path(key)
                if file_sha256(original) != sha256:
                    raise InvalidModelFileError("its stored file is not the pinned one")
                facts = convert_in_sandbox(original, safe, sha256, limits)
            except (ArtifactMissingError, InvalidModelFileError) as error:
                print(f"foundation {name}: removed, not convertible to its safe form: {error}")
                connection.execute(foundations.delete().where(foundations.c.name == name))
                continue
            safe_sha256 = file_sha256(safe)
            storage.put_file(foundation_key(safe_sha256), safe)
            connection.execute(
                foundations.update()
                .where(foundations.c.name == name)
                .values(
                    sha256=safe_sha256,
                    storage_key=foundation_key(safe_sha256),
                    size_bytes=safe.stat().st_size,
                    facts=facts.model_dump(),
                    upload_sha256=sha256,
                )
            )
            print(f"foundation {name}: converted to its safe form sha256={safe_sha256}")


def downgrade() -> None:
    # The pickles stay in storage under their old keys; the safe forms are not pickles.
    with op.batch_alter_table("foundation_models") as batch:
        batch.drop_column("upload_sha256")
        batch.drop_column("facts")
