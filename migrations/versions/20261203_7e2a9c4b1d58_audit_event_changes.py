"""audit event changes: what an admin or security action changed, before and after

Revision ID: 7e2a9c4b1d58
Revises: 5c1d7e9a2b46
Create Date: 2026-12-03 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7e2a9c4b1d58"
down_revision: str | None = "5c1d7e9a2b46"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event") as batch_op:
        batch_op.add_column(
            sa.Column(
                "changes",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch_op:
        batch_op.drop_column("changes")
