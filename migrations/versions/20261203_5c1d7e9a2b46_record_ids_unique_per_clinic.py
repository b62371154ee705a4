"""record ids unique per clinic: adherence records keyed by (clinic_id, id)

An adherence record's id is made by the patient's app, so it is unique within its clinic
only: another clinic may use the same id, and neither learns of the other's. The record's
primary key becomes (clinic_id, id); its kept versions gain the clinic and reference the
record by both columns. Downgrading fails if two clinics share a record id.

Revision ID: 5c1d7e9a2b46
Revises: 4f1d8c2a7e90
Create Date: 2026-12-03 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1d7e9a2b46"
down_revision: str | None = "4f1d8c2a7e90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_FK = "fk_adherence_record_version_record_id_adherence_record"
NEW_FK = "fk_adherence_record_version_clinic_id_adherence_record"


def upgrade() -> None:
    with op.batch_alter_table("adherence_record_version") as batch_op:
        batch_op.add_column(sa.Column("clinic_id", sa.Uuid(), nullable=True))
    op.execute(
        "UPDATE adherence_record_version SET clinic_id = (SELECT adherence_record.clinic_id"
        " FROM adherence_record WHERE adherence_record.id = adherence_record_version.record_id)"
    )
    # The record's key cannot change while a foreign key leans on it.
    with op.batch_alter_table("adherence_record_version", recreate="always") as batch_op:
        batch_op.drop_constraint(OLD_FK, type_="foreignkey")
        batch_op.alter_column("clinic_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_constraint("pk_adherence_record_version", type_="primary")
        batch_op.create_primary_key(
            "pk_adherence_record_version", ["clinic_id", "record_id", "version"]
        )
    with op.batch_alter_table("adherence_record", recreate="always") as batch_op:
        batch_op.drop_constraint("pk_adherence_record", type_="primary")
        batch_op.create_primary_key("pk_adherence_record", ["clinic_id", "id"])
    with op.batch_alter_table("adherence_record_version", recreate="always") as batch_op:
        batch_op.create_foreign_key(
            NEW_FK, "adherence_record", ["clinic_id", "record_id"], ["clinic_id", "id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("adherence_record_version", recreate="always") as batch_op:
        batch_op.drop_constraint(NEW_FK, type_="foreignkey")
    with op.batch_alter_table("adherence_record", recreate="always") as batch_op:
        batch_op.drop_constraint("pk_adherence_record", type_="primary")
        batch_op.create_primary_key("pk_adherence_record", ["id"])
    with op.batch_alter_table("adherence_record_version", recreate="always") as batch_op:
        batch_op.drop_constraint("pk_adherence_record_version", type_="primary")
        batch_op.create_primary_key("pk_adherence_record_version", ["record_id", "version"])
        batch_op.drop_column("clinic_id")
        batch_op.create_foreign_key(OLD_FK, "adherence_record", ["record_id"], ["id"])
