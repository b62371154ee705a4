"""Loading the shipped global catalog from its data file, idempotently."""

from pathlib import Path
from typing import Any

import yaml
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.columns import utcnow
from app.exercises.models import Exercise, catalog_id
from app.exercises.schemas import ExercisePublic

__all__ = ["CATALOG_FILE", "catalog_id", "load_catalog", "read_catalog"]

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")

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


def read_catalog(path: Path = CATALOG_FILE) -> dict[str, Any]:
    """The shipped data file: the global exercises and the templates built from them."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


async def load_catalog(session: AsyncSession, data: dict[str, Any]) -> dict[str, int]:
    """Bring the global catalog in line with the data file; running it twice changes nothing.

    An exercise whose content changed gets its version bumped; one that is new is added.
    Returns how many were created, updated and left unchanged.
    """
    entries: list[dict[str, Any]] = data["exercises"]
    existing = {
        e.slug: e
        for e in await session.exec(select(Exercise).where(col(Exercise.clinic_id).is_(None)))
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
    await session.flush()
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
    await session.flush()
    return counts
