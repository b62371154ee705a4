"""Exercise routes: parse, call the service, answer with an ETag (and 304 when it matches)."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from starlette.responses import Response

from app.core.db import SessionDep
from app.core.errors import InvalidInput, NotFound, responses
from app.core.http import conditional_json
from app.exercises import service
from app.exercises.schemas import ExercisePage, ExercisePublic, ExerciseQuery

router = APIRouter(prefix="/v1/exercises", tags=["exercises"])

# The global catalog is the same for everyone and changes only with a release, so shared
# caches (and Dorsi's own, see app.core.cache) may keep it a minute.
CATALOG_CACHE_CONTROL = "public, max-age=60"
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: the `If-None-Match` ETag is current."}
}

IfNoneMatch = Annotated[
    str | None,
    Header(description="An ETag from an earlier answer; 304 if it is still current."),
]


@router.get(
    "",
    operation_id="listExercises",
    summary="List exercises",
    response_model=ExercisePage,
    responses={**NOT_MODIFIED, **responses(InvalidInput)},
)
def list_exercises(
    session: SessionDep,
    query: Annotated[ExerciseQuery, Query()],
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The exercise catalog, filtered, in slug order, a page at a time."""
    page = service.list_exercises(session, query)
    return conditional_json(page.body, page.etag, if_none_match, CATALOG_CACHE_CONTROL)


@router.get(
    "/{exercise}",
    operation_id="getExercise",
    summary="Get an exercise",
    response_model=ExercisePublic,
    responses={**NOT_MODIFIED, **responses(NotFound, InvalidInput)},
)
def get_exercise(
    session: SessionDep,
    exercise: Annotated[str, Path(max_length=80, description="The exercise's id (UUID) or slug.")],
    if_none_match: IfNoneMatch = None,
) -> Response:
    """One exercise by id or slug."""
    found = service.get_exercise(session, exercise)
    return conditional_json(found.body, found.etag, if_none_match, CATALOG_CACHE_CONTROL)
