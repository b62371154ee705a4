"""RFC 9457 problem details: one exception type per failure, one place that renders them."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
import structlog
from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.core.methods import allowed_methods, requested_method
from app.core.text import control_detail

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
    line: int | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="A body that could not be parsed: the line (from 1) where it fails.",
    )
    column: int | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="A body that could not be parsed: the column (from 1, in bytes) where "
        "it fails.",
    )


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

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        members: dict[str, Any] | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        # Extension members of the problem (RFC 9457 section 3.2).
        self.members = members or {}


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


class UnsupportedMediaType(DorsiError):
    status, slug = 415, "unsupported-media-type"


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
    media_type = PROBLEM_MEDIA_TYPE
    adapt = None if request is None else problem_adapter(request)
    if adapt is not None:
        body, headers = adapt(body, dict(headers or {}))
        status = body.get("status", status)
        # An adapter whose body has no status of its own says which one it answers with.
        status = getattr(adapt, "status_of", lambda given: given)(status)
        media_type = getattr(adapt, "media_type", PROBLEM_MEDIA_TYPE)
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=media_type)


# Adapts a problem's body and headers to a protocol of its own; `media_type`, if it has
# one, is what the adapted body is sent as.
ProblemAdapter = Callable[
    [Mapping[str, Any], dict[str, str]], tuple[dict[str, Any], dict[str, str]]
]


def problem_adapter(request: Request) -> ProblemAdapter | None:
    """How a request's problems are told, if not as plain problem+json. A route may speak
    a protocol of its own in its problems too (the OAuth2 token endpoint's errors), and so
    may a whole API under a path prefix (`app.state.problem_adapters`: the FHIR facade
    answers OperationOutcomes, even for a path it does not serve)."""
    adapt: ProblemAdapter | None = getattr(request.scope.get("route"), "adapt_problem", None)
    if adapt is not None:
        return adapt
    adapters: dict[str, ProblemAdapter] = getattr(request.app.state, "problem_adapters", {})
    path = request.url.path
    for prefix, candidate in adapters.items():
        if path == prefix or path.startswith(prefix + "/"):
            return candidate
    return None


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


# The media types of the bodies Dorsi reads: JSON, and the OAuth2 forms.
JSON_BODY = "application/json"
FORM_BODIES = ("application/x-www-form-urlencoded", "multipart/form-data")


def expected_media_types(request: Request) -> tuple[str, ...]:
    """The media types the body of the matched operation may have (none: it takes none)."""
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    if body_field is None:
        return ()
    return FORM_BODIES if isinstance(body_field.field_info, params.Form) else (JSON_BODY,)


def media_type_accepted(content_type: str | None, expected: tuple[str, ...]) -> bool:
    """Whether a body of ``content_type`` is one of ``expected`` (JSON: any ``+json``)."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    json_like = media_type.startswith("application/") and media_type.endswith("+json")
    return media_type in expected or (JSON_BODY in expected and json_like)


def _sent_body(request: Request) -> bool:
    headers = request.headers
    return (
        "content-type" in headers
        or headers.get("content-length", "0") != "0"
        or ("transfer-encoding" in headers)
    )


def _unsupported(request: Request, expected: tuple[str, ...]) -> Response:
    sent = request.headers.get("content-type") or "no Content-Type"
    accept = {"POST": "Accept-Post", "PATCH": "Accept-Patch"}.get(request.method)
    return problem_response(
        415,
        slug=UnsupportedMediaType.slug,
        detail=f"The body must be {' or '.join(expected)}, not {sent}.",
        request=request,
        headers={accept: ", ".join(expected)} if accept else None,
    )


def _malformed(request: Request, detail: str, text: bytes, position: int) -> Response:
    """400 for a body that could not be parsed, naming the line and column (in bytes) at
    which it fails."""
    line = text.count(b"\n", 0, position) + 1
    column = position - text.rfind(b"\n", 0, position)
    error = FieldError(
        location="body",
        pointer="#",
        detail=f"{detail} (line {line}, column {column}).",
        line=line,
        column=column,
    )
    return problem_response(
        400,
        slug="malformed-body",
        detail="The body could not be parsed.",
        request=request,
        errors=[error.model_dump()],
    )


def _count_detail(count: int) -> str:
    return f"The request has {count} invalid field{'s' if count != 1 else ''}."


def describe(error: Mapping[str, Any]) -> str:
    """What a client is told of one validation error (pydantic's, with plainer words where
    pydantic's would quote a rule rather than say it)."""
    if error["type"] == "extra_forbidden":
        return "Unknown field."
    if error["type"] == "string_pattern_mismatch":
        detail = control_detail(str(error.get("ctx", {}).get("pattern")))
        if detail:
            return detail
    if error["type"] in ("too_short", "too_long") and isinstance(error.get("input"), str):
        # A trimmed name's length is checked after its validators, in pydantic's words
        # for lists; a client sent text.
        ctx = error.get("ctx", {})
        if error["type"] == "too_short":
            return f"Should have at least {ctx.get('min_length')} character(s) after trimming."
        return f"Should have at most {ctx.get('max_length')} characters after trimming."
    message: str = error["msg"]
    return message


def json_pointer(path: Sequence[str | int]) -> str:
    return "#" + "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in path)


def _field_errors(error: RequestValidationError) -> list[FieldError]:
    result = []
    for item in error.errors():
        location, *path = item["loc"] or ("body",)
        result.append(
            FieldError(location=str(location), pointer=json_pointer(path), detail=describe(item))
        )
    return result


# SQLSTATEs of failures that the same request may well not meet again: a deadlock, a
# serialization failure, the database shutting down or refusing connections for now.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "57P01", "57P03", "08000", "08003", "08006"})


def transient(error: DBAPIError) -> bool:
    """Whether a database error is worth trying again (by the request or the client)."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    return error.connection_invalidated or sqlstate in TRANSIENT_SQLSTATES


def unreachable(error: DBAPIError) -> bool:
    """Whether the database could not be reached at all: the driver failed on its side
    (refused, timed out, no route), with no SQLSTATE from a server. PostgreSQL only: its
    driver's errors carry ``sqlstate``, None when no server answered."""
    return isinstance(error, OperationalError) and getattr(error.orig, "sqlstate", "") is None


@dataclass(frozen=True, slots=True)
class DatabaseAnswer:
    """The 503 that answers a database failure worth trying again."""

    slug: str
    detail: str
    headers: dict[str, str]


def database_answer(exc: BaseException) -> DatabaseAnswer | None:
    """The 503 for a database failure the client may try again (None: a 500). The same
    answer whichever layer met it: a route, or a middleware such as idempotency."""
    if isinstance(exc, PoolTimeout):
        return DatabaseAnswer(
            "database-busy", "Every database connection is in use; try again.", {"Retry-After": "1"}
        )
    if not isinstance(exc, DBAPIError):
        return None
    if unreachable(exc):
        # Long enough for a restart; a client that retries sooner is only refused again.
        return DatabaseAnswer(
            "database-unavailable",
            "The database cannot be reached; try again shortly.",
            {"Retry-After": "5"},
        )
    if transient(exc):
        return DatabaseAnswer(
            "database-busy",
            "The database could not complete this request now; try again.",
            {"Retry-After": "1"},
        )
    return None


def install_error_handlers(app: FastAPI) -> None:
    async def dorsi_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DorsiError)
        extra: dict[str, Any] = dict(exc.members)
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
        headers = dict(exc.headers or {})
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            # FastAPI's answer to a JSON body that is not UTF-8.
            return _malformed(request, "Not UTF-8", cause.object, cause.start)
        if exc.status_code == 400 and cause is not None:
            # FastAPI's answer to any other body it could not read (a broken form).
            return _malformed(request, f"Not readable: {cause}", b"", 0)
        if exc.status_code == 404 and detail is None:
            detail = f"Nothing at {request.url.path}."
        if exc.status_code == 405:
            allowed = allowed_methods(request.app.router.routes, request.url.path)
            headers["Allow"] = ", ".join(allowed)
            detail = (
                f"{requested_method(request.scope)} is not allowed on {request.url.path}; "
                f"it answers {', '.join(allowed)}."
            )
        return problem_response(
            exc.status_code, slug=slug, detail=detail, request=request, headers=headers
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        expected = expected_media_types(request)
        content_type = request.headers.get("content-type")
        if expected and _sent_body(request) and not media_type_accepted(content_type, expected):
            return _unsupported(request, expected)
        for item in exc.errors():
            if item["type"] == "json_invalid":
                reason = item.get("ctx", {}).get("error", "Not JSON")
                text = str(exc.body).encode()
                position = len(str(exc.body)[: item["loc"][-1]].encode())
                return _malformed(request, f"Not JSON: {reason}", text, position)
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
        answer = database_answer(exc)
        if answer is None:
            return await unexpected_error(request, exc)
        request_id = request.scope.get("state", {}).get("request_id")
        log.warning(answer.slug.replace("-", "_"), request_id=request_id, error=str(exc))
        return problem_response(
            503, slug=answer.slug, detail=answer.detail, request=request, headers=answer.headers
        )

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        return problem_response(
            500, slug="internal", detail="An unexpected error occurred.", request=request
        )

    app.add_exception_handler(DorsiError, dorsi_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeout, database_error)
    app.add_exception_handler(Exception, unexpected_error)
