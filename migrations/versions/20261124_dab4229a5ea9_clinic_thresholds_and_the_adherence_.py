"""clinic thresholds and the adherence rollup

Every patient gets a rollup row, stale, carrying the time of their last upload.

Revision ID: dab4229a5ea9
Revises: 182d8acc3f92
Create Date: 2026-11-24 08:54:26.042849
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import app.core.columns

revision: str = "dab4229a5ea9"
down_revision: str | None = "182d8acc3f92"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "adherence_rollup",
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("valid_until", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=True),
        sa.Column("expected_7d", sa.Float(), nullable=False),
        sa.Column("credited_7d", sa.Float(), nullable=False),
        sa.Column("percent_7d", sa.Float(), nullable=True),
        sa.Column("expected_30d", sa.Float(), nullable=False),
        sa.Column("credited_30d", sa.Float(), nullable=False),
        sa.Column("percent_30d", sa.Float(), nullable=True),
        sa.Column("pain_alerts_7d", sa.Integer(), nullable=False),
        sa.Column("max_pain_7d", sa.Integer(), nullable=True),
        sa.Column("last_upload_at", app.core.columns.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_adherence_rollup_clinic_id_clinic")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_adherence_rollup_patient_id_patient")
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_adherence_rollup")),
    )
    with op.batch_alter_table("adherence_rollup", schema=None) as batch_op:
        batch_op.create_index(
            "ix_adherence_rollup_clinic_valid", ["clinic_id", "valid_until"], unique=False
        )

    with op.batch_alter_table("clinic", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "adherence_threshold_percent", sa.Integer(), server_default="70", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("pain_alert_at", sa.Integer(), server_default="7", nullable=False)
        )

    rollup = sa.table(
        "adherence_rollup",
        *(sa.column(name) for name in ("patient_id", "clinic_id", "generation")),
        sa.column("valid_until", app.core.columns.UTCDateTime()),
        *(sa.column(name) for name in ("expected_7d", "credited_7d", "expected_30d")),
        *(sa.column(name) for name in ("credited_30d", "pain_alerts_7d", "last_upload_at")),
    )
    patient = sa.table("patient", sa.column("id"), sa.column("clinic_id"))
    record = sa.table("adherence_record", sa.column("patient_id"), sa.column("created_at"))
    last_upload = (
        sa.select(sa.func.max(record.c.created_at))
        .where(record.c.patient_id == patient.c.id)
        .scalar_subquery()
    )
    stale = sa.literal(datetime(1970, 1, 1, tzinfo=UTC), app.core.columns.UTCDateTime())
    op.execute(
        rollup.insert().from_select(
            [c.name for c in rollup.c],
            sa.select(
                patient.c.id,
                patient.c.clinic_id,
                sa.literal(0),
                stale,
                *(sa.literal(0.0) for _ in range(4)),
                sa.literal(0),
                last_upload,
            ),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("clinic", schema=None) as batch_op:
        batch_op.drop_column("pain_alert_at")
        batch_op.drop_column("adherence_threshold_percent")

    with op.batch_alter_table("adherence_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_adherence_rollup_clinic_valid")

    op.drop_table("adherence_rollup")
