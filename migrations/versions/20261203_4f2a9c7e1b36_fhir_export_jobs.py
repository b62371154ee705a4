"""fhir export jobs: FHIR Bulk Data `$export` jobs and their NDJSON output files

Jobs are queued by the kick-off request and run by any process (the app in-process for
now, `dorsi worker` later); their files are kept until the job is cancelled (deleted).

Revision ID: 4f2a9c7e1b36
Revises: b6d1f0c4a8e2
Create Date: 2026-12-03 15:54:22.106342
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.columns

revision: str = "4f2a9c7e1b36"
down_revision: str | None = "b6d1f0c4a8e2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fhir_export_job",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column(
            "types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("since", app.core.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("request_url", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.String(length=200), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("transaction_time", app.core.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("change_cursor", sa.BigInteger(), nullable=True),
        sa.Column("created_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_fhir_export_job_clinic_id_clinic")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_export_job")),
    )
    with op.batch_alter_table("fhir_export_job", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fhir_export_job_clinic_id"), ["clinic_id"], unique=False
        )
        batch_op.create_index("ix_fhir_export_job_status", ["status", "created_at"], unique=False)

    op.create_table(
        "fhir_export_file",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fhir_export_job.id"],
            name=op.f("fk_fhir_export_file_job_id_fhir_export_job"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_export_file")),
    )
    with op.batch_alter_table("fhir_export_file", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fhir_export_file_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fhir_export_file", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fhir_export_file_job_id"))

    op.drop_table("fhir_export_file")
    with op.batch_alter_table("fhir_export_job", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_export_job_status")
        batch_op.drop_index(batch_op.f("ix_fhir_export_job_clinic_id"))

    op.drop_table("fhir_export_job")
