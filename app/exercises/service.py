"""Reading exercises (the global catalog and the caller's clinic's own) and writing the
clinic's own. The global catalog is read-only here; it changes only by `dorsi migrate`."""

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import ColumnElement, or_, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.columns import utcnow
from app.core.db import flush_or
from app.core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
)
from app.core.http import check_if_match
from app.core.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.core.sql import json_array_contains
from app.exercises.models import Exercise
from app.exercises.schemas import (
    ExerciseCreate,
    ExercisePage,
    ExercisePublic,
    ExerciseQuery,
    ExerciseRef,
    ExerciseUpdate,
)
from app.sync.outbox import record_change


@dataclass(frozen=True, slots=True)
class Rendered:
    """A response body ready to send, with its strong ETag."""

    body: bytes
    etag: str


def render(model: BaseModel) -> Rendered:
    """The body of ``model``, a route's response model, exactly as FastAPI would send it
    (serialized through the model itself, so it cannot drift from the contract)."""
    body = orjson.dumps(model.model_dump(mode="json"))
    return Rendered(body, '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"')


def to_public(exercise: Exercise, refs: dict[uuid.UUID, Exercise]) -> ExercisePublic:
    def ref(variant_id: uuid.UUID | None) -> ExerciseRef | None:
        if variant_id is None or variant_id not in refs:
            return None
        variant = refs[variant_id]
        return ExerciseRef(id=variant.id, slug=variant.slug, name=variant.name)

    return ExercisePublic.model_validate(
        {
            **{
                field: getattr(exercise, field)
                for field in ExercisePublic.model_fields
                if hasattr(exercise, field)
            },
            "easier_variant": ref(exercise.easier_variant_id),
            "harder_variant": ref(exercise.harder_variant_id),
            "owner": "global" if exercise.clinic_id is None else "clinic",
        }
    )


def visible_to(clinic_id: uuid.UUID | None) -> ColumnElement[bool]:
    """The global catalog, plus the clinic's own live exercises when a clinic asks."""
    owner = col(Exercise.clinic_id)
    if clinic_id is None:
        return owner.is_(None)
    return or_(owner.is_(None), owner == clinic_id) & col(Exercise.deleted_at).is_(None)


async def list_exercises(
    session: AsyncSession, clinic_id: uuid.UUID | None, query: ExerciseQuery
) -> Rendered:
    """A page of the visible exercises matching every given filter, in slug order."""
    statement = select(Exercise).where(visible_to(clinic_id))
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
        try:
            position = (str(slug), uuid.UUID(str(last_id)))
        except ValueError:
            raise invalid_cursor() from None
        statement = statement.where(tuple_(col(Exercise.slug), col(Exercise.id)) > position)
    statement = statement.order_by(col(Exercise.slug), col(Exercise.id)).limit(query.limit + 1)
    rows = list((await session.exec(statement)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    refs = await variants(session, rows)
    items = [to_public(row, refs) for row in rows]
    next_cursor = encode_cursor([rows[-1].slug, str(rows[-1].id)]) if more else None
    return render(ExercisePage(items=items, next_cursor=next_cursor))


async def find(session: AsyncSession, clinic_id: uuid.UUID | None, id_or_slug: str) -> Exercise:
    """A visible exercise by id or slug. A slug names one exercise at most: clinic slugs may
    not repeat a global one."""
    statement = select(Exercise).where(visible_to(clinic_id))
    try:
        statement = statement.where(Exercise.id == uuid.UUID(id_or_slug))
    except ValueError:
        statement = statement.where(Exercise.slug == id_or_slug)
    exercise = (await session.exec(statement)).first()
    if exercise is None:
        raise NotFound(f"No exercise {id_or_slug!r}.")
    return exercise


async def get_exercise(
    session: AsyncSession, clinic_id: uuid.UUID | None, id_or_slug: str
) -> Rendered:
    exercise = await find(session, clinic_id, id_or_slug)
    return render(to_public(exercise, await variants(session, [exercise])))


async def variants(session: AsyncSession, rows: list[Exercise]) -> dict[uuid.UUID, Exercise]:
    """The easier and harder variants the exercises link to, by id (for `to_public`)."""
    ids = {i for row in rows for i in (row.easier_variant_id, row.harder_variant_id) if i}
    if not ids:
        return {}
    found = await session.exec(select(Exercise).where(col(Exercise.id).in_(ids)))
    return {e.id: e for e in found}


async def _check_links(
    session: AsyncSession, clinic_id: uuid.UUID, values: dict[str, Any], own_id: uuid.UUID | None
) -> None:
    errors = []
    for field in ("easier_variant_id", "harder_variant_id"):
        target = values.get(field)
        if target is None:
            continue
        found = (
            await session.exec(
                select(Exercise.id).where(Exercise.id == target, visible_to(clinic_id))
            )
        ).first()
        if found is None or target == own_id:
            errors.append(
                FieldError(location="body", pointer=f"#/{field}", detail="No such exercise.")
            )
    if errors:
        raise InvalidInput(errors)


async def _check_slug(session: AsyncSession, clinic_id: uuid.UUID, slug: str) -> None:
    taken = (
        await session.exec(
            select(Exercise.id).where(
                Exercise.slug == slug,
                or_(col(Exercise.clinic_id).is_(None), col(Exercise.clinic_id) == clinic_id),
            )
        )
    ).first()
    if taken is not None:
        raise Conflict(f"The slug {slug!r} is taken.")


async def create(session: AsyncSession, clinic_id: uuid.UUID, data: ExerciseCreate) -> Exercise:
    values = data.model_dump(mode="json")
    values["easier_variant_id"] = data.easier_variant_id
    values["harder_variant_id"] = data.harder_variant_id
    await _check_slug(session, clinic_id, data.slug)
    await _check_links(session, clinic_id, values, None)
    exercise = Exercise(clinic_id=clinic_id, **values)
    session.add(exercise)
    await flush_or(session, Conflict(f"The slug {data.slug!r} is taken."))
    await _changed(session, clinic_id, exercise, "create")
    return exercise


async def _changed(
    session: AsyncSession, clinic_id: uuid.UUID, exercise: Exercise, operation: str
) -> None:
    """The clinic exercise's change for clinic sync, as `GET /v1/exercises/{id}` renders it."""
    data = None
    if operation != "delete":
        data = to_public(exercise, await variants(session, [exercise])).model_dump(mode="json")
    await record_change(
        session, clinic_id, "exercise", exercise.id, operation, version=exercise.version, data=data
    )


async def _own(session: AsyncSession, clinic_id: uuid.UUID, id_or_slug: str) -> Exercise:
    exercise = await find(session, clinic_id, id_or_slug)
    if exercise.clinic_id is None:
        raise Forbidden("The global catalog is read-only; create a clinic exercise instead.")
    return exercise


async def update(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    id_or_slug: str,
    data: ExerciseUpdate,
    if_match: str | None,
) -> Exercise:
    exercise = await _own(session, clinic_id, id_or_slug)
    await _check_current(session, clinic_id, exercise, if_match)
    values = data.model_dump(mode="json", exclude_unset=True)
    for field in ("easier_variant_id", "harder_variant_id"):
        if field in values:
            values[field] = getattr(data, field)
    await _check_links(session, clinic_id, values, exercise.id)
    if "slug" in values and values["slug"] != exercise.slug:
        await _check_slug(session, clinic_id, values["slug"])
    required = {
        "slug",
        "name",
        "summary",
        "steps",
        "body_region",
        "movements",
        "mode",
        "equipment",
        "cautions",
        "media",
        "references",
    }
    nulled = [k for k in required if k in values and values[k] is None]
    if nulled:
        raise InvalidInput(
            [
                FieldError(location="body", pointer=f"#/{k}", detail="May not be null.")
                for k in nulled
            ]
        )
    changed = {k: v for k, v in values.items() if getattr(exercise, k) != v}
    if changed:
        for key, value in changed.items():
            setattr(exercise, key, value)
        exercise.version += 1
        exercise.updated_at = utcnow()
        session.add(exercise)
        await session.flush()
        await _changed(session, clinic_id, exercise, "update")
    return exercise


async def _check_current(
    session: AsyncSession, clinic_id: uuid.UUID, exercise: Exercise, if_match: str | None
) -> None:
    """If-Match, when sent, names the exercise as the clinic reads it now (its ETag is
    that of the rendered answer)."""
    if if_match is not None:
        current = await get_exercise(session, clinic_id, str(exercise.id))
        check_if_match(if_match, current.etag, "exercise", required=False)


async def delete(
    session: AsyncSession, clinic_id: uuid.UUID, id_or_slug: str, if_match: str | None
) -> None:
    """Soft delete, so that plans which used the exercise can still show it."""
    exercise = await _own(session, clinic_id, id_or_slug)
    await _check_current(session, clinic_id, exercise, if_match)
    exercise.deleted_at = utcnow()
    session.add(exercise)
    await _changed(session, clinic_id, exercise, "delete")
