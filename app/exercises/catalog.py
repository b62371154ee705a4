"""Loading the shipped global catalog from its data file, idempotently."""

import uuid
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, col, select

from app.core.columns import utcnow
from app.exercises.models import Exercise
from app.exercises.schemas import ExercisePublic
from app.plans.models import PlanTemplate
from app.plans.schemas import TemplateItemIn

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")
# Catalog ids are derived from slugs so that every installation shares them.
CATALOG_NAMESPACE = uuid.UUID("5b1f7c1e-8d0a-4c55-9a51-7d6f2f0c0d15")

CONTENT_FIELDS = (
    "name",
    "summary",
    "steps",
    "body_region",
    "movements",
    "mode",
    "position",
    "equipment",
    "default_dose",
    "cautions",
    "media",
    "references",
)


def catalog_id(slug: str) -> uuid.UUID:
    return uuid.uuid5(CATALOG_NAMESPACE, slug)


def load_catalog(session: Session, path: Path = CATALOG_FILE) -> dict[str, int]:
    """Bring the global catalog in line with the data file; running it twice changes nothing.

    An exercise whose content changed gets its version bumped; one that is new is added.
    Returns how many were created, updated and left unchanged.
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    entries: list[dict[str, Any]] = data["exercises"]
    existing = {
        e.slug: e for e in session.exec(select(Exercise).where(col(Exercise.clinic_id).is_(None)))
    }
    now = utcnow()
    wanted: dict[str, dict[str, Any]] = {}
    for entry in entries:
        content = {field: entry.get(field, []) for field in CONTENT_FIELDS}
        content["easier_variant_id"] = catalog_id(entry["easier"]) if entry["easier"] else None
        content["harder_variant_id"] = catalog_id(entry["harder"]) if entry["harder"] else None
        # Validate through the public schema so the file can never ship what the API rejects.
        ExercisePublic.model_validate(
            {
                **content,
                "id": catalog_id(entry["slug"]),
                "slug": entry["slug"],
                "easier_variant": None,
                "harder_variant": None,
                "owner": "global",
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
        )
        wanted[entry["slug"]] = content

    counts = {"created": 0, "updated": 0, "unchanged": 0}
    created: set[str] = set()
    # Rows first, links second: a link may point at an exercise added in this same load.
    links = ("easier_variant_id", "harder_variant_id")
    for slug, content in wanted.items():
        if slug not in existing:
            fields = {k: v for k, v in content.items() if k not in links}
            existing[slug] = Exercise(id=catalog_id(slug), slug=slug, created_at=now, **fields)
            session.add(existing[slug])
            created.add(slug)
    counts["created"] = len(created)
    session.flush()
    for slug, content in wanted.items():
        current = existing[slug]
        changed = {k: v for k, v in content.items() if getattr(current, k) != v}
        if not changed:
            continue
        for key, value in changed.items():
            setattr(current, key, value)
        if slug not in created:
            current.version += 1
            current.updated_at = now
            counts["updated"] += 1
        session.add(current)
    counts["unchanged"] = len(wanted) - counts["created"] - counts["updated"]
    session.flush()
    _load_templates(session, data.get("templates", []))
    return counts


def _load_templates(session: Session, templates: list[dict[str, Any]]) -> None:
    """The global plan templates; their items name exercises of this catalog by slug."""
    for entry in templates:
        template_id = catalog_id(f"template:{entry['slug']}")
        items = []
        for item in entry["items"]:
            fields = {k: v for k, v in item.items() if k != "exercise"}
            checked = TemplateItemIn.model_validate(
                {**fields, "exercise_id": catalog_id(item["exercise"])}
            )
            stored = checked.model_dump(mode="json")
            stored["id"] = str(catalog_id(f"template:{entry['slug']}:{item['exercise']}"))
            items.append(stored)
        current = session.get(PlanTemplate, template_id)
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
    session.flush()
