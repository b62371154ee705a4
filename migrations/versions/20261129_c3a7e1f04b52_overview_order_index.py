"""an index for the overview's default order

The first overview page (lowest 7-day adherence first) is read off this index instead of
sorting every rollup row of the clinic.

Revision ID: c3a7e1f04b52
Revises: dab4229a5ea9
Create Date: 2026-11-29 14:25:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3a7e1f04b52"
down_revision: str | None = "dab4229a5ea9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("adherence_rollup", schema=None) as batch_op:
        batch_op.create_index(
            "ix_adherence_rollup_clinic_percent_7d",
            ["clinic_id", sa.text("coalesce(percent_7d, 1000000000)"), "patient_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("adherence_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_adherence_rollup_clinic_percent_7d")
