"""Reading the exercise catalog, and loading the shipped catalog from its data file."""

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from sqlalchemy import or_, tuple_
from sqlmodel import Session, col, select

from app.core.columns import utcnow
from app.core.errors import NotFound
from app.core.pagination import decode_cursor, encode_cursor
from app.core.sql import json_array_contains
from app.exercises.models import Exercise
from app.exercises.schemas import ExercisePublic, ExerciseQuery, ExerciseRef

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


@dataclass(frozen=True, slots=True)
class Rendered:
    """A response body ready to send, with its strong ETag."""

    body: bytes
    etag: str


def render(payload: Any) -> Rendered:
    body = orjson.dumps(payload)
    return Rendered(body, '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"')


def to_public(exercise: Exercise, refs: dict[uuid.UUID, Exercise]) -> ExercisePublic:
    def ref(variant_id: uuid.UUID | None) -> ExerciseRef | None:
        if variant_id is None or variant_id not in refs:
            return None
        variant = refs[variant_id]
        return ExerciseRef(id=variant.id, slug=variant.slug, name=variant.name)

    return ExercisePublic.model_validate(
        {
            **exercise.model_dump(),
            "easier_variant": ref(exercise.easier_variant_id),
            "harder_variant": ref(exercise.harder_variant_id),
            "owner": "global" if exercise.clinic_id is None else "clinic",
        }
    )


def list_exercises(session: Session, query: ExerciseQuery) -> Rendered:
    """A page of the global catalog matching every given filter, in slug order."""
    statement = select(Exercise).where(col(Exercise.clinic_id).is_(None))
    for field in ("body_region", "mode", "position"):
        value = getattr(query, field)
        if value is not None:
            statement = statement.where(getattr(Exercise, field) == value)
    if query.movement is not None:
        statement = statement.where(json_array_contains(Exercise.movements, query.movement.value))
    if query.equipment is not None:
        statement = statement.where(json_array_contains(Exercise.equipment, query.equipment.value))
    if query.q is not None:
        statement = statement.where(
            or_(
                col(Exercise.name).icontains(query.q, autoescape=True),
                col(Exercise.summary).icontains(query.q, autoescape=True),
            )
        )
    if query.cursor is not None:
        slug, last_id = decode_cursor(query.cursor, 2)
        statement = statement.where(
            tuple_(col(Exercise.slug), col(Exercise.id)) > (str(slug), _uuid(last_id))
        )
    statement = statement.order_by(col(Exercise.slug), col(Exercise.id)).limit(query.limit + 1)
    rows = list(session.exec(statement).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    refs = _variants(session, rows)
    items = [to_public(row, refs).model_dump(mode="json") for row in rows]
    next_cursor = encode_cursor([rows[-1].slug, str(rows[-1].id)]) if more else None
    return render({"items": items, "next_cursor": next_cursor})


def get_exercise(session: Session, id_or_slug: str) -> Rendered:
    """One global exercise by id or slug."""
    statement = select(Exercise).where(col(Exercise.clinic_id).is_(None))
    try:
        statement = statement.where(Exercise.id == uuid.UUID(id_or_slug))
    except ValueError:
        statement = statement.where(Exercise.slug == id_or_slug)
    exercise = session.exec(statement).first()
    if exercise is None:
        raise NotFound(f"No exercise {id_or_slug!r}.")
    return render(to_public(exercise, _variants(session, [exercise])).model_dump(mode="json"))


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return uuid.UUID(int=0)


def _variants(session: Session, rows: list[Exercise]) -> dict[uuid.UUID, Exercise]:
    ids = {i for row in rows for i in (row.easier_variant_id, row.harder_variant_id) if i}
    if not ids:
        return {}
    return {e.id: e for e in session.exec(select(Exercise).where(col(Exercise.id).in_(ids)))}


def catalog_id(slug: str) -> uuid.UUID:
    return uuid.uuid5(CATALOG_NAMESPACE, slug)


def load_catalog(session: Session, path: Path = CATALOG_FILE) -> dict[str, int]:
    """Bring the global catalog in line with the data file; running it twice changes nothing.

    An exercise whose content changed gets its version bumped; one that is new is added.
    Returns how many were created, updated and left unchanged.
    """
    entries: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["exercises"]
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
    return counts
