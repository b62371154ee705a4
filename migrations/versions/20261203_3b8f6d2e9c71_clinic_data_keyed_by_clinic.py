"""clinic data keyed by clinic: patients, plans and plan versions by (clinic_id, id)

Patients, plans and plan versions are keyed by (clinic_id, id), as adherence records
already are, and what refers to a patient or a plan names its clinic too: a composite
foreign key (clinic_id, patient_id) or (clinic_id, plan_id). A row can then only point
into its own clinic, and the data can be distributed by clinic.

Revision ID: 3b8f6d2e9c71
Revises: 7e2a9c4b1d58
Create Date: 2026-12-03 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3b8f6d2e9c71"
down_revision: str | None = "7e2a9c4b1d58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, referring column, referred table): each becomes (clinic_id, column) -> (clinic_id, id).
REFERENCES = [
    ("plan", "patient_id", "patient"),
    ("plan_version", "plan_id", "plan"),
    ("adherence_record", "patient_id", "patient"),
    ("adherence_record", "plan_id", "plan"),
    ("adherence_rollup", "patient_id", "patient"),
    ("auth_session", "patient_id", "patient"),
    ("access_code", "patient_id", "patient"),
]
KEYED = ["patient", "plan", "plan_version"]


def _tables() -> list[str]:
    return list(dict.fromkeys(table for table, _, _ in REFERENCES))


def _foreign_keys(composite: bool, create: bool) -> None:
    """Create or drop, table by table, the one-column or the composite foreign keys."""
    for table in _tables():
        with op.batch_alter_table(table) as batch_op:
            for _, column, referred in (r for r in REFERENCES if r[0] == table):
                if composite:
                    name = f"fk_{table}_clinic_id_{referred}"
                    local, remote = ["clinic_id", column], ["clinic_id", "id"]
                else:
                    name = f"fk_{table}_{column}_{referred}"
                    local, remote = [column], ["id"]
                if create:
                    batch_op.create_foreign_key(name, referred, local, remote)
                else:
                    batch_op.drop_constraint(name, type_="foreignkey")
        if table == "adherence_rollup" and op.get_bind().dialect.name == "sqlite":
            # SQLite cannot tell an expression index when it rebuilds a table: made again.
            op.create_index(
                "ix_adherence_rollup_clinic_percent_7d",
                "adherence_rollup",
                ["clinic_id", sa.text("coalesce(percent_7d, 1000000000)"), "patient_id"],
            )


def _keys(columns: list[str]) -> None:
    for table in KEYED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(f"pk_{table}", type_="primary")
            batch_op.create_primary_key(f"pk_{table}", columns)


def upgrade() -> None:
    # A key cannot change while a foreign key leans on it.
    _foreign_keys(composite=False, create=False)
    _keys(["clinic_id", "id"])
    _foreign_keys(composite=True, create=True)


def downgrade() -> None:
    _foreign_keys(composite=True, create=False)
    _keys(["id"])
    _foreign_keys(composite=False, create=True)
