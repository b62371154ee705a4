"""adherence records and their versions

Revision ID: f5d015b2e59c
Revises: f4885b3da025
Create Date: 2026-11-23 20:57:59.993869
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.columns

revision: str = "f5d015b2e59c"
down_revision: str | None = "f4885b3da025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "adherence_record",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("performed_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("utc_offset_minutes", sa.Integer(), nullable=False),
        sa.Column("performed_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sets_done", sa.Integer(), nullable=True),
        sa.Column("reps_done", sa.Integer(), nullable=True),
        sa.Column("hold_seconds", sa.Integer(), nullable=True),
        sa.Column("pain", sa.Integer(), nullable=True),
        sa.Column("effort", sa.Integer(), nullable=True),
        sa.Column("skip_reason", sa.String(length=16), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("assistive_device", sa.String(length=8), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", app.core.columns.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_adherence_record_clinic_id_clinic")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_adherence_record_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plan.id"], name=op.f("fk_adherence_record_plan_id_plan")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adherence_record")),
    )
    with op.batch_alter_table("adherence_record", schema=None) as batch_op:
        batch_op.create_index(
            "ix_adherence_record_patient_day",
            ["clinic_id", "patient_id", "performed_on"],
            unique=False,
        )

    op.create_table(
        "adherence_record_version",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "content",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("replaced_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("replaced_by", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["adherence_record.id"],
            name=op.f("fk_adherence_record_version_record_id_adherence_record"),
        ),
        sa.PrimaryKeyConstraint("record_id", "version", name=op.f("pk_adherence_record_version")),
    )


def downgrade() -> None:
    op.drop_table("adherence_record_version")
    with op.batch_alter_table("adherence_record", schema=None) as batch_op:
        batch_op.drop_index("ix_adherence_record_patient_day")

    op.drop_table("adherence_record")
