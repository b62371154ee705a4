"""item sources: where each template and plan item's dose and schedule came from

Items are JSON in `plan_template.items` and `plan_version.items`; each gains
`dose_source` (null when it gives no dose) and `schedule_source`: `article`, `default`
(Dorsi's) or `clinician`. An item's dose or schedule equal to the global template's item
of the same exercise takes that item's source (the global template's own items among
them); anything else was set by a clinician. `dorsi migrate` then loads the shipped
template with the sources its data file gives.

Revision ID: 4f2b8d6a1c37
Revises: 9a4c2e7d5b13
Create Date: 2026-12-03 16:00:00.000000
"""

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "4f2b8d6a1c37"
down_revision: str | None = "9a4c2e7d5b13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The catalog's ids are derived from its slugs in this namespace (app.exercises.catalog).
CATALOG_NAMESPACE = uuid.UUID("5b1f7c1e-8d0a-4c55-9a51-7d6f2f0c0d15")
DOSE = ("sets", "reps", "hold_seconds", "rest_seconds")
DAILY = {"days_of_week": [1, 2, 3, 4, 5, 6, 7], "sessions_per_week": None, "times_per_day": 1}
# The global template's items as shipped when this revision was written: exercise, dose,
# schedule, and where each came from.
SHIPPED: dict[str, tuple[dict[str, int], str | None, dict[str, Any], str]] = {
    "assisted-heel-raises": ({"reps": 10}, "article", DAILY, "default"),
    "ankle-dorsiflexion": (
        {"sets": 3, "reps": 10},
        "article",
        {"days_of_week": None, "sessions_per_week": 3, "times_per_day": 1},
        "article",
    ),
    "ankle-abduction-adduction": ({}, None, DAILY, "default"),
    "ankle-inversion": ({}, None, DAILY, "default"),
    "ankle-eversion": ({"reps": 10}, "article", DAILY, "default"),
    "hip-rotation": ({}, None, DAILY, "default"),
    "hip-abduction-adduction": ({}, None, DAILY, "default"),
}
BY_EXERCISE = {str(uuid.uuid5(CATALOG_NAMESPACE, slug)): item for slug, item in SHIPPED.items()}
ITEMS = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _sourced(item: dict[str, Any]) -> dict[str, Any]:
    shipped = BY_EXERCISE.get(item.get("exercise_id", ""))
    dose = {field: item.get(field) for field in DOSE if item.get(field) is not None}
    dose_source: str | None = None
    if dose:
        dose_source = "clinician"
        if shipped is not None and shipped[0] == dose:
            dose_source = shipped[1]
    schedule = {"days_of_week": None, "sessions_per_week": None, "times_per_day": 1}
    schedule |= item.get("schedule") or {}
    schedule_source = "clinician"
    if shipped is not None and shipped[2] == schedule:
        schedule_source = shipped[3]
    return {**item, "dose_source": dose_source, "schedule_source": schedule_source}


def _rewrite(table_name: str, change: Any) -> None:
    table = sa.table(table_name, sa.column("id", sa.Uuid()), sa.column("items", ITEMS))
    bind = op.get_bind()
    rows = bind.execute(sa.select(table.c.id, table.c["items"])).all()
    for row in rows:
        items = [change(item) for item in row._mapping["items"]]
        if items != row._mapping["items"]:
            bind.execute(
                table.update().where(table.c.id == row.id).values(items=items),
            )


def upgrade() -> None:
    for table_name in ("plan_template", "plan_version"):
        _rewrite(table_name, _sourced)


def downgrade() -> None:
    def without(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in ("dose_source", "schedule_source")}

    for table_name in ("plan_template", "plan_version"):
        _rewrite(table_name, without)
