"""Loading the shipped global plan templates, whose items name catalog exercises by slug."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.columns import utcnow
from app.exercises.catalog import catalog_id
from app.plans.models import PlanTemplate, Provenance
from app.plans.schemas import TemplateItemIn

# What a shipped item says beside a template item's fields.
SHIPPED = ("exercise", "dose_source", "schedule_source")


async def load_templates(session: AsyncSession, templates: list[dict[str, Any]]) -> None:
    """The global plan templates; their items name exercises of this catalog by slug."""
    for entry in templates:
        template_id = catalog_id(f"template:{entry['slug']}")
        items = []
        for item in entry["items"]:
            fields = {k: v for k, v in item.items() if k not in SHIPPED}
            checked = TemplateItemIn.model_validate(
                {**fields, "exercise_id": catalog_id(item["exercise"])}
            )
            stored = checked.model_dump(mode="json")
            stored["id"] = str(catalog_id(f"template:{entry['slug']}:{item['exercise']}"))
            # Where the shipped dose and schedule came from, as the data file says.
            dose = item.get("dose_source")
            stored["dose_source"] = None if dose is None else Provenance(dose).value
            stored["schedule_source"] = Provenance(item["schedule_source"]).value
            items.append(stored)
        current = await session.get(PlanTemplate, template_id)
        if current is None:
            session.add(
                PlanTemplate(
                    id=template_id,
                    name=entry["name"],
                    description=entry["description"],
                    items=items,
                )
            )
        elif (current.name, current.description, current.items) != (
            entry["name"],
            entry["description"],
            items,
        ):
            current.name, current.description, current.items = (
                entry["name"],
                entry["description"],
                items,
            )
            current.version += 1
            current.updated_at = utcnow()
            session.add(current)
    await session.flush()
