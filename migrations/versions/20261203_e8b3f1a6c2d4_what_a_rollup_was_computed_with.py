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


# Plain ALTER TABLE, on SQLite too (3.35 and later drop columns): a batch operation would
# copy the table, and lose the expression index of the overview's order on the way.


def upgrade() -> None:
    op.add_column("adherence_rollup", sa.Column("time_zone", sa.String(length=64), nullable=True))
    op.add_column("adherence_rollup", sa.Column("pain_alert_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("adherence_rollup", "pain_alert_at")
    op.drop_column("adherence_rollup", "time_zone")
