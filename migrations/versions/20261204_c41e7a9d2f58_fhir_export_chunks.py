"""fhir export chunks: an export file's NDJSON held in pieces, in order

A runner writes a file a batch at a time and a download reads it a piece at a time, so
neither holds a whole file (thousands of resources) in memory. Files already written
become one piece each.

Revision ID: c41e7a9d2f58
Revises: 6fe6c84673f3
Create Date: 2026-12-04 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c41e7a9d2f58"
down_revision: str | None = "6fe6c84673f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fhir_export_chunk",
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["fhir_export_file.id"],
            name=op.f("fk_fhir_export_chunk_file_id_fhir_export_file"),
        ),
        sa.PrimaryKeyConstraint("file_id", "number", name=op.f("pk_fhir_export_chunk")),
    )
    op.execute(
        "INSERT INTO fhir_export_chunk (file_id, number, content)"
        " SELECT id, 1, content FROM fhir_export_file"
    )
    with op.batch_alter_table("fhir_export_file", schema=None) as batch_op:
        batch_op.drop_column("content")


def downgrade() -> None:
    with op.batch_alter_table("fhir_export_file", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content", sa.Text(), nullable=False, server_default=""))
    # A file's pieces, in order, as its content again (string_agg and group_concat both
    # concatenate in the order the subquery gives).
    if op.get_bind().dialect.name == "postgresql":
        joined = "string_agg(c.content, '' ORDER BY c.number)"
        pieces = "fhir_export_chunk c WHERE c.file_id = fhir_export_file.id"
    else:
        joined = "group_concat(c.content, '')"
        pieces = (
            "(SELECT content FROM fhir_export_chunk WHERE file_id = fhir_export_file.id"
            " ORDER BY number) c"
        )
    op.execute(
        f"UPDATE fhir_export_file SET content = coalesce((SELECT {joined} FROM {pieces}), '')"  # noqa: S608
    )
    with op.batch_alter_table("fhir_export_file", schema=None) as batch_op:
        batch_op.alter_column("content", server_default=None)
    op.drop_table("fhir_export_chunk")
