"""rollup figures computed ahead: each adherence rollup holds, beside its figures, the
next local day's, which the worker computes before the patient's midnight and which are
in force once it passes

Existing rows have none: each is recomputed at its next midnight as before, and the
worker computes the next day's figures from then on.

Revision ID: 6fe6c84673f3
Revises: 4f2a9c7e1b36
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.columns

revision: str = "6fe6c84673f3"
down_revision: str | None = "4f2a9c7e1b36"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain ALTER TABLE, on SQLite too (3.35 and later drop columns): a batch operation would
# copy the table, and lose the expression index of the overview's order on the way.
COLUMNS = (
    ("next_valid_until", app.core.columns.UTCDateTime(timezone=True)),
    ("next_as_of", sa.Date()),
    ("next_expected_7d", sa.Float()),
    ("next_credited_7d", sa.Float()),
    ("next_percent_7d", sa.Float()),
    ("next_expected_30d", sa.Float()),
    ("next_credited_30d", sa.Float()),
    ("next_percent_30d", sa.Float()),
    ("next_pain_alerts_7d", sa.Integer()),
    ("next_max_pain_7d", sa.Integer()),
)


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("adherence_rollup", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("adherence_rollup", name)
