"""Exercise routes: the catalog for anyone, plus the clinic's own exercises for its staff."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from app.auth.deps import optional_caller, staff
from app.auth.principal import Caller, Scope
from app.core.db import SessionDep
from app.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    responses,
)
from app.core.http import NOT_MODIFIED, PRIVATE, IfMatch, IfNoneMatch, conditional_json, written
from app.core.text import Line
from app.exercises import service
from app.exercises.schemas import (
    ExerciseCreate,
    ExercisePage,
    ExercisePublic,
    ExerciseQuery,
    ExerciseUpdate,
)

router = APIRouter(prefix="/v1/exercises", tags=["exercises"])

# Anonymous reads get only the global catalog, the same for everyone and changed only by a
# release: shared caches (and Dorsi's own, see app.core.cache) may keep it a minute.
PUBLIC = "public, max-age=60"
READ_ERRORS = (Unauthorized, Forbidden, InvalidInput)

ExerciseKey = Annotated[Line, Path(max_length=80, description="The exercise's id (UUID) or slug.")]
Writer = Annotated[Caller, Depends(staff(Scope.exercises_write))]
Reader = Annotated[Caller | None, Depends(optional_caller(Scope.exercises_read))]


def _reader_clinic(caller: Caller | None) -> Any:
    return None if caller is None else caller.clinic_id


def _answer(rendered: service.Rendered, if_none_match: str | None, public: bool) -> Response:
    response = conditional_json(
        rendered.body, rendered.etag, if_none_match, PUBLIC if public else PRIVATE
    )
    response.headers["Vary"] = "Authorization"
    return response


@router.get(
    "",
    operation_id="listExercises",
    summary="List exercises",
    response_model=ExercisePage,
    responses={**NOT_MODIFIED, **responses(*READ_ERRORS)},
)
async def list_exercises(
    session: SessionDep,
    caller: Reader,
    query: Annotated[ExerciseQuery, Query()],
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The global catalog, and for a signed-in caller the clinic's own exercises too,
    filtered, in slug order, a page at a time."""
    page = await service.list_exercises(session, _reader_clinic(caller), query)
    return _answer(page, if_none_match, public=caller is None)


@router.get(
    "/{exercise}",
    operation_id="getExercise",
    summary="Get an exercise",
    response_model=ExercisePublic,
    responses={**NOT_MODIFIED, **responses(*READ_ERRORS, NotFound)},
)
async def get_exercise(
    session: SessionDep,
    caller: Reader,
    exercise: ExerciseKey,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """One exercise by id or slug."""
    found = await service.get_exercise(session, _reader_clinic(caller), exercise)
    return _answer(found, if_none_match, public=caller is None)


async def _written(session: SessionDep, caller: Caller, exercise_id: str, status: int) -> Response:
    rendered = await service.get_exercise(session, caller.clinic_id, exercise_id)
    headers = {"ETag": rendered.etag, "Location": f"/v1/exercises/{exercise_id}"}
    return Response(
        rendered.body, status_code=status, media_type="application/json", headers=headers
    )


@router.post(
    "",
    operation_id="createExercise",
    summary="Create a clinic exercise",
    status_code=201,
    response_model=ExercisePublic,
    responses={**written(201, location=True), **responses(*READ_ERRORS, Conflict)},
)
async def create_exercise(body: ExerciseCreate, session: SessionDep, caller: Writer) -> Response:
    """An exercise of the caller's clinic, seen by no other clinic."""
    exercise = await service.create(session, caller.clinic_id, body)
    return await _written(session, caller, str(exercise.id), 201)


@router.patch(
    "/{exercise}",
    operation_id="updateExercise",
    summary="Update a clinic exercise",
    response_model=ExercisePublic,
    responses={
        **written(200, location=True),
        **responses(*READ_ERRORS, NotFound, Conflict, PreconditionFailed),
    },
)
async def update_exercise(
    exercise: ExerciseKey,
    body: ExerciseUpdate,
    session: SessionDep,
    caller: Writer,
    if_match: IfMatch = None,
) -> Response:
    """Changes bump `version`. The global catalog answers 403: it is read-only."""
    updated = await service.update(session, caller.clinic_id, exercise, body, if_match)
    return await _written(session, caller, str(updated.id), 200)


@router.delete(
    "/{exercise}",
    operation_id="deleteExercise",
    summary="Delete a clinic exercise",
    status_code=204,
    responses=responses(*READ_ERRORS, NotFound, PreconditionFailed),
)
async def delete_exercise(
    exercise: ExerciseKey, session: SessionDep, caller: Writer, if_match: IfMatch = None
) -> Response:
    """The global catalog answers 403: it is read-only."""
    await service.delete(session, caller.clinic_id, exercise, if_match)
    return Response(status_code=204)
