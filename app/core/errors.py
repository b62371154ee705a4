"""RFC 9457 problem details: one exception type per failure, one place that renders them."""

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://dorsi.dev/problems/"


class FieldError(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"location": "query", "pointer": "#/limit", "detail": "Input should be ≤ 100"}
            ]
        }
    )

    location: str = Field(description="Where the input was: body, query, path or header.")
    pointer: str = Field(description="JSON Pointer to the field within that location.")
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem document; every error Dorsi answers has this shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": f"{PROBLEM_BASE}not-found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "No exercise 'toe-taps'.",
                    "instance": "/v1/exercises/toe-taps",
                }
            ]
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None


class ValidationProblem(Problem):
    """A problem whose input failed validation, with a pointer per invalid field."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": f"{PROBLEM_BASE}validation",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "The request has 1 invalid field.",
                    "instance": "/v1/exercises",
                    "errors": [
                        {
                            "location": "query",
                            "pointer": "#/limit",
                            "detail": "Input should be ≤ 100",
                        }
                    ],
                }
            ]
        }
    )

    errors: list[FieldError]


class DorsiError(Exception):
    """Base of every failure Dorsi reports; subclasses fix the status and problem type."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class NotFound(DorsiError):
    status, slug = 404, "not-found"


class BadRequest(DorsiError):
    status, slug = 400, "bad-request"


class Unauthorized(DorsiError):
    """No valid credentials: missing, malformed, expired or revoked."""

    status, slug = 401, "unauthorized"

    def __init__(self, detail: str = "Sign in first: send a valid bearer token.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="dorsi"'})


class Forbidden(DorsiError):
    """Signed in, but this caller may not do this (role, scope or kind of caller)."""

    status, slug = 403, "forbidden"


class TooManyRequests(DorsiError):
    status, slug = 429, "too-many-requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many attempts; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


class Conflict(DorsiError):
    status, slug = 409, "conflict"


class Gone(DorsiError):
    """What was asked for is no longer kept (a change feed cursor older than retention)."""

    status, slug = 410, "gone"


class PreconditionFailed(DorsiError):
    status, slug = 412, "precondition-failed"


class PreconditionRequired(DorsiError):
    status, slug = 428, "precondition-required"


class PayloadTooLarge(DorsiError):
    status, slug = 413, "payload-too-large"


class InvalidInput(DorsiError):
    """Input that parsed but is invalid; carries a pointer per field like request validation."""

    status, slug = 422, "validation"

    def __init__(self, errors: Sequence[FieldError]):
        super().__init__(_count_detail(len(errors)))
        self.errors = list(errors)


def problem_response(
    status: int,
    *,
    slug: str | None = None,
    detail: str | None = None,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_BASE}{slug}" if slug else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
        body["request_id"] = request.scope.get("state", {}).get("request_id")
    body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def responses(*errors: type[DorsiError]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting each problem a route can answer."""
    documented: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        model = ValidationProblem if error is InvalidInput else Problem
        documented[error.status] = {
            "model": model,
            "description": HTTPStatus(error.status).phrase,
            "content": {
                PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    return documented


def _count_detail(count: int) -> str:
    return f"The request has {count} invalid field{'s' if count != 1 else ''}."


def _field_errors(error: RequestValidationError) -> list[FieldError]:
    result = []
    for item in error.errors():
        location, *path = item["loc"] or ("body",)
        pointer = "#" + "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in path)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "Unknown field."
        result.append(FieldError(location=str(location), pointer=pointer, detail=message))
    return result


# SQLSTATEs of failures that the same request may well not meet again: a deadlock, a
# serialization failure, the database shutting down or refusing connections for now.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "57P01", "57P03", "08000", "08003", "08006"})


def transient(error: DBAPIError) -> bool:
    """Whether a database error is worth trying again (by the request or the client)."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    return error.connection_invalidated or sqlstate in TRANSIENT_SQLSTATES


def install_error_handlers(app: FastAPI) -> None:
    async def dorsi_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DorsiError)
        extra: dict[str, Any] = {}
        if isinstance(exc, InvalidInput):
            extra["errors"] = [e.model_dump() for e in exc.errors]
        return problem_response(
            exc.status,
            slug=exc.slug,
            detail=exc.detail,
            request=request,
            headers=exc.headers,
            **extra,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            exc.status_code
        )
        detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None
        if exc.status_code == 404 and detail is None:
            detail = f"Nothing at {request.url.path}."
        return problem_response(
            exc.status_code,
            slug=slug,
            detail=detail,
            request=request,
            headers=dict(exc.headers or {}),
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc)
        if errors and all(e.location == "path" for e in errors):
            # An id that cannot exist names nothing: 404, like one that does not exist.
            return problem_response(
                404, slug="not-found", detail=f"Nothing at {request.url.path}.", request=request
            )
        return problem_response(
            422,
            slug="validation",
            detail=_count_detail(len(errors)),
            request=request,
            errors=[e.model_dump() for e in errors],
        )

    async def database_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DBAPIError)
        if transient(exc):
            log.warning(
                "database_busy",
                request_id=request.scope.get("state", {}).get("request_id"),
                exc_info=exc,
            )
            return problem_response(
                503,
                slug="database-busy",
                detail="The database could not complete this request now; try again.",
                request=request,
                headers={"Retry-After": "1"},
            )
        return await unexpected_error(request, exc)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        return problem_response(
            500, slug="internal", detail="An unexpected error occurred.", request=request
        )

    app.add_exception_handler(DorsiError, dorsi_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(Exception, unexpected_error)
