"""change horizon: how far each clinic's change feed was pruned

Changes older than DORSI_CHANGE_RETENTION_DAYS may be pruned; per clinic, the newest
pruned change id is kept so that a feed cursor from before it answers 410. On SQLite the
change table is rebuilt with AUTOINCREMENT, so that pruning the newest changes never lets
their ids be drawn again.

Revision ID: 9a4c2e7d5b13
Revises: e8b3f1a6c2d4
Create Date: 2026-12-10 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a4c2e7d5b13"
down_revision: str | None = "e8b3f1a6c2d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change_horizon",
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_change_horizon_clinic_id_clinic")
        ),
        sa.PrimaryKeyConstraint("clinic_id", name=op.f("pk_change_horizon")),
    )
    _sqlite_autoincrement(True)


def _sqlite_autoincrement(on: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "change", recreate="always", table_kwargs={"sqlite_autoincrement": on}
        ):
            pass


def downgrade() -> None:
    _sqlite_autoincrement(False)
    op.drop_table("change_horizon")
