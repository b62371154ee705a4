"""the clinic's audit list read newest first off an index

The admins' unfiltered list (newest first, by id) walked every event of the clinic and
sorted them; (clinic_id, id) serves it in order. It replaces the index on clinic_id alone,
which the two other composite indexes, both led by clinic_id, already covered.

Revision ID: 7d2e9b41c6a0
Revises: c3a7e1f04b52
Create Date: 2026-11-29 15:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7d2e9b41c6a0"
down_revision: str | None = "c3a7e1f04b52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_clinic", ["clinic_id", "id"], unique=False)
        batch_op.drop_index("ix_audit_event_clinic_id")


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_clinic_id", ["clinic_id"], unique=False)
        batch_op.drop_index("ix_audit_event_clinic")
