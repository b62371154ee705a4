"""rate limit hits: sign-in, pairing and refresh attempts counted in the database

Every API process of a deployment then counts against the same limits.

Revision ID: 4f1d8c2a7e90
Revises: 4f2b8d6a1c37
Create Date: 2026-12-03 16:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.columns

revision: str = "4f1d8c2a7e90"
down_revision: str | None = "4f2b8d6a1c37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_hit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("at", app.core.columns.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_hit")),
    )
    op.create_index("ix_rate_limit_hit_key_at", "rate_limit_hit", ["key", "at"], unique=False)
    op.create_index(op.f("ix_rate_limit_hit_at"), "rate_limit_hit", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_limit_hit_at"), table_name="rate_limit_hit")
    op.drop_index("ix_rate_limit_hit_key_at", table_name="rate_limit_hit")
    op.drop_table("rate_limit_hit")
