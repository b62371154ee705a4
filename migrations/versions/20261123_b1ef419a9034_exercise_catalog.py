"""exercise catalog

Revision ID: b1ef419a9034
Revises:
Create Date: 2026-11-23 19:42:50.863800
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.columns

revision: str = "b1ef419a9034"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exercise",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=True),
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("summary", sa.String(length=2000), nullable=False),
        sa.Column(
            "steps",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("body_region", sa.String(length=32), nullable=False),
        sa.Column(
            "movements",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("position", sa.String(length=32), nullable=True),
        sa.Column(
            "equipment",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "default_dose",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "cautions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("easier_variant_id", sa.Uuid(), nullable=True),
        sa.Column("harder_variant_id", sa.Uuid(), nullable=True),
        sa.Column(
            "media",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "references",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["easier_variant_id"],
            ["exercise.id"],
            name=op.f("fk_exercise_easier_variant_id_exercise"),
        ),
        sa.ForeignKeyConstraint(
            ["harder_variant_id"],
            ["exercise.id"],
            name=op.f("fk_exercise_harder_variant_id_exercise"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exercise")),
    )
    with op.batch_alter_table("exercise", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exercise_body_region"), ["body_region"], unique=False)
        batch_op.create_index(batch_op.f("ix_exercise_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_exercise_mode"), ["mode"], unique=False)
        batch_op.create_index("uq_exercise_clinic_slug", ["clinic_id", "slug"], unique=True)
        batch_op.create_index(
            "uq_exercise_global_slug",
            ["slug"],
            unique=True,
            sqlite_where=sa.text("clinic_id IS NULL"),
            postgresql_where=sa.text("clinic_id IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("exercise", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_exercise_global_slug",
            sqlite_where=sa.text("clinic_id IS NULL"),
            postgresql_where=sa.text("clinic_id IS NULL"),
        )
        batch_op.drop_index("uq_exercise_clinic_slug")
        batch_op.drop_index(batch_op.f("ix_exercise_mode"))
        batch_op.drop_index(batch_op.f("ix_exercise_clinic_id"))
        batch_op.drop_index(batch_op.f("ix_exercise_body_region"))

    op.drop_table("exercise")
