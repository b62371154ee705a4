"""what an adherence rollup was computed with

The overview notices by itself a patient's new time zone and the clinic's new pain alert
level: a rollup computed with others is recomputed before it is read. Rows from before
hold neither, so each is recomputed once.

Revision ID: e8b3f1a6c2d4
Revises: 7d2e9b41c6a0
Create Date: 2026-12-03 13:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e8b3f1a6c2d4"
down_revision: str | None = "7d2e9b41c6a0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("adherence_rollup", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pain_alert_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("adherence_rollup", schema=None) as batch_op:
        batch_op.drop_column("pain_alert_at")
        batch_op.drop_column("time_zone")
