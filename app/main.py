"""Builds the Dorsi ASGI application: settings, database, routes, errors, docs."""

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi._compat import get_definitions, get_flat_models_from_fields, get_model_name_map
from fastapi.dependencies.models import Dependant
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_fields_from_routes, get_openapi
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from app.adherence.router import router as adherence_router
from app.auth.deps import ADMIN_ONLY, oauth2_or_anonymous
from app.auth.ratelimit import SignInLimiter
from app.auth.router import router as auth_router
from app.auth.security import Secrets
from app.clinics.api_clients_router import router as api_clients_router
from app.clinics.audit_router import router as audit_router
from app.clinics.clinicians_router import router as clinicians_router
from app.clinics.router import router as clinic_router
from app.core import heap, idempotency
from app.core.cache import PublicResponseCache
from app.core.compression import CompressionMiddleware, compresses
from app.core.config import Settings, get_settings
from app.core.db import make_engine
from app.core.errors import PROBLEM_MEDIA_TYPE, install_error_handlers
from app.core.forwarded import ForwardedClient, TrustedProxies
from app.core.gauges import DatabaseGauges
from app.core.idempotency import IdempotencyMiddleware
from app.core.logging import configure_logging
from app.core.methods import HeadAsGet
from app.core.observability import RequestContextMiddleware
from app.exercises.router import router as exercises_router
from app.feed.listener import ChangeListener
from app.feed.router import CURSOR_HEADER
from app.feed.router import router as feed_router
from app.fhir import metrics as fhir_metrics
from app.fhir.bulk_router import router as fhir_bulk_router
from app.fhir.outcome import FHIR_MEDIA_TYPE, FhirProblemAdapter
from app.fhir.outcome import PREFIX as FHIR_PREFIX
from app.fhir.router import router as fhir_router
from app.me.router import router as me_router
from app.me.today import EXERCISE_CACHE_SIZE, ExerciseCache, TodayBatcher
from app.ops.docs import install_docs
from app.ops.router import router as ops_router
from app.patients.router import router as patients_router
from app.plans.router import router as plans_router
from app.webhooks import metrics as webhook_metrics
from app.webhooks.router import router as webhooks_router
from app.worker.runner import Worker

DESCRIPTION = """
Dorsi serves home-exercise programs for people with foot drop: an exercise catalog drawn
from a published source, patients' plans, and what patients actually did.

* Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json`.
* Lists are cursor-paginated: follow `next_cursor` until it is null. Page size ≤ 100.
* Reads send `ETag`; send it back in `If-None-Match` for a `304 Not Modified`.
* JSON answers of 1 KiB or more are gzip-compressed when `Accept-Encoding` allows it. A
  compressed answer's ETag ends in `-gzip`; either encoding's ETag revalidates.
* Request bodies are limited in size (1 MiB by default); unknown fields are refused.
* `POST`s that create take an `Idempotency-Key`; every answer carries an `X-Request-ID`.
* Each operation names the OAuth2 scope it needs; a token without it gets 403.
* Besides the headers each answer declares, every answer carries the same browser-security
  headers: `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy`,
  `Strict-Transport-Security` and `Content-Security-Policy`.
"""

TAGS = [
    {
        "name": "exercises",
        "description": "Exercise definitions: the shipped foot-drop catalog, with its sources.",
    },
    {
        "name": "auth",
        "description": "Sign-in: clinicians (password), clinic systems (client credentials), "
        "patient apps (pairing with an access code, then refresh). Revocation is immediate.",
    },
    {
        "name": "patients",
        "description": "The clinic's patients: pseudonymous, with their access codes and apps.",
    },
    {
        "name": "plans",
        "description": "Templates and prescribed plans. Every change to a plan makes a new "
        "immutable version; edits need `If-Match`.",
    },
    {
        "name": "me",
        "description": "The patient app: the signed-in patient's own data and today's items.",
    },
    {
        "name": "adherence",
        "description": "What patients actually did: offline batch uploads that never "
        "duplicate, and records read back by the clinic.",
    },
    {
        "name": "sync",
        "description": "Clinic sync: the change feed, every create, update and delete in "
        "commit order, each as its own GET renders it.",
    },
    {
        "name": "webhooks",
        "description": "Clinic sync, pushed: signed webhooks for changes and clinical alerts "
        "(Standard Webhooks), delivered at least once, with their delivery log.",
    },
    {
        "name": "audit",
        "description": "Who read or wrote patient data, when, and from where (clinic admins).",
    },
    {
        "name": "fhir",
        "description": "FHIR R4, read-only, under `/fhir/R4`: exercises (ActivityDefinition), "
        "templates (PlanDefinition), patients (Patient), plans (CarePlan, versioned), "
        "sessions (Procedure) and pain ratings (Observation), as application/fhir+json; "
        "errors are OperationOutcomes. `GET /fhir/R4/metadata` says exactly what is served.",
    },
    {"name": "operations", "description": "Liveness, readiness and metrics for operators."},
]


class Dorsi(FastAPI):
    """FastAPI with Dorsi's request context, public cache and compression outside its own
    layers.

    They wrap the whole stack so that every request gets its id, log line and metrics, and
    a cached answer costs nothing but them. The request context is outermost: whatever
    fails inside it, in a route or in a layer, is answered as problem+json with the
    request id and logged once with its stack trace. Compression sits inside the cache, so
    the cache keeps each encoding's bytes and a hit is never compressed again; idempotency
    sits inside compression, so a replayed answer is encoded for the retry that asks.
    """

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        secrets: Secrets = self.state.secrets
        app: ASGIApp = PublicResponseCache(
            CompressionMiddleware(
                IdempotencyMiddleware(
                    super().build_middleware_stack(),
                    engine=self.state.engine,
                    subject_of=lambda token: (secrets.read_access_token(token) or {}).get("sub"),
                    stale_after=timedelta(seconds=settings.idempotency_stale_seconds),
                ),
                minimum_bytes=settings.compression_min_bytes,
            ),
            ceiling_seconds=settings.response_cache_seconds,
        )
        return ForwardedClient(
            RequestContextMiddleware(HeadAsGet(app), max_body_bytes=settings.max_body_bytes),
            trusted=TrustedProxies(settings.trusted_proxies),
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        heap.settle()
        stop = asyncio.Event()
        worker = None
        if settings.in_process_worker:
            # Development: webhooks and alerts work with nothing else started.
            worker = asyncio.create_task(Worker(engine, settings).run(stop), name="dorsi-worker")
        yield
        stop.set()
        if worker is not None:
            await worker
        await dispose_engines(_app)

    app = Dorsi(
        title="Dorsi",
        version="1.0.0",
        summary="Home-exercise programs for people with foot drop.",
        description=DESCRIPTION.strip(),
        openapi_tags=TAGS,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # Prometheus (/metrics) and the JSON access log are Dorsi's telemetry; FastAPI's
        # OpenTelemetry bridge would only add checks to every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.secrets = Secrets(settings)
    app.state.change_listener = ChangeListener(settings.database_url)
    # What /metrics reads from the database, from the packages that own it (`ops` is
    # below them and imports none).
    app.state.database_gauges = DatabaseGauges(engine, [webhook_metrics.probe, fhir_metrics.probe])
    # Exercise details live as long as public answers may be cached.
    app.state.today = TodayBatcher(
        engine, ExerciseCache(EXERCISE_CACHE_SIZE, settings.response_cache_seconds)
    )
    app.state.sign_in_limiter = SignInLimiter(
        engine, settings.sign_in_rate_limit, account_ceiling=settings.sign_in_account_ceiling
    )

    install_error_handlers(app)
    # Errors under /fhir/R4 are OperationOutcomes, even for a path nothing serves there.
    app.state.problem_adapters = {FHIR_PREFIX: FhirProblemAdapter()}
    # The routers' routes join the app's own route list, rather than through
    # include_router: FastAPI then matches each request against plain routes, which costs a
    # fraction of walking included routers (measured: /healthz 2.9k → see README).
    for router in (
        me_router,
        exercises_router,
        auth_router,
        api_clients_router,
        clinicians_router,
        clinic_router,
        patients_router,
        plans_router,
        adherence_router,
        feed_router,
        webhooks_router,
        fhir_bulk_router,
        fhir_router,
        audit_router,
        ops_router,
    ):
        app.router.routes.extend(router.routes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "Idempotency-Key",
                "X-Request-ID",
            ],
            expose_headers=exposed_headers(),
        )
    install_docs(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def dispose_engines(app: FastAPI) -> None:
    """Close every database connection the app holds."""
    await app.state.change_listener.close()
    await app.state.engine.dispose()


UNPLANNED = {
    "500": "Internal Server Error: logged with the request id the answer carries.",
    "503": "Service Unavailable: the database is busy or away; try again after `Retry-After`.",
}


BODY_UNPLANNED = {
    "400": "Bad Request: the body could not be parsed (not UTF-8, not JSON, not a form); "
    "`errors` names the line and column.",
    "413": "Content Too Large: bodies are limited to `DORSI_MAX_BODY_BYTES` (1 MiB).",
    "415": "Unsupported Media Type: the body is not of the media type the operation takes "
    "(see `Accept-Post` or `Accept-Patch`).",
}
# Answers whose problem lists the invalid inputs, each with its pointer.
WITH_ERRORS = {"400", "422"}


# Answered by `app.core.idempotency` for any POST that sends an `Idempotency-Key`.
IDEMPOTENT_UNPLANNED = {
    "400": "Bad Request: the `Idempotency-Key` is not 1 to 200 characters.",
    "409": "Conflict: a request with this `Idempotency-Key` is still being processed.",
    "422": "Unprocessable Content: this `Idempotency-Key` was used with another request.",
}


# Response headers any answer may carry, declared once and referred to by each response.
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "required": True,
        "description": "The request's id: the `X-Request-ID` the request sent, if it was 1 to "
        "128 of `A-Z a-z 0-9 . _ : -`, else one Dorsi made. Every log line of the request "
        "carries it; quote it when reporting a problem.",
        "schema": {"type": "string", "examples": ["3f9a1c2b4d5e-1a"]},
    },
    "Cache-Control": {
        "required": True,
        "description": "`no-store` unless the operation says otherwise: signed-in reads "
        "are `private, no-cache`, anonymous catalog reads `public, max-age=60`.",
        "schema": {"type": "string", "examples": ["no-store"]},
    },
    "Vary": {
        "description": "`Accept-Encoding` on JSON answers (and on a 304 that carries an "
        "ETag); the catalog adds `Authorization`; a CORS answer adds `Origin`.",
        "schema": {"type": "string", "examples": ["Authorization, Accept-Encoding"]},
    },
    "Content-Encoding": {
        "description": "`gzip` when the request's `Accept-Encoding` prefers it and the JSON "
        "answer is at least `DORSI_COMPRESSION_MIN_BYTES` (1 KiB), or streamed.",
        "schema": {"type": "string", "enum": ["gzip"]},
    },
    "ETag": {
        "required": True,
        "description": "The representation's strong entity tag: send it back in "
        "`If-None-Match` (304 if current) or `If-Match` (412 if stale). A gzip answer's "
        "tag ends in `-gzip`; either encoding's tag is accepted.",
        "schema": {"type": "string", "examples": ['"3f0e8a52-3"']},
    },
    "Location": {
        "required": True,
        "description": "The path of the resource this request created.",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "Retry-After": {
        "required": True,
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0, "examples": [30]},
    },
    "WWW-Authenticate": {
        "required": True,
        "description": 'The challenge: `Bearer realm="dorsi"` (`Basic realm="dorsi"` '
        "for a client that signed in with HTTP Basic).",
        "schema": {"type": "string", "examples": ['Bearer realm="dorsi"']},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the kept answer to an earlier request with the "
        "same `Idempotency-Key`, replayed rather than done again.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Accept-Post": {
        "required": True,
        "description": "The media types the operation's body may have.",
        "schema": {"type": "string", "examples": ["application/json"]},
    },
    "Accept-Patch": {
        "required": True,
        "description": "The media types the operation's body may have.",
        "schema": {"type": "string", "examples": ["application/json"]},
    },
}

# Response headers a browser shows scripts without CORS naming them (the Fetch standard's
# "CORS-safelisted response-header names").
CORS_SAFELISTED = frozenset({"Cache-Control", "Content-Language", "Content-Type", "Expires"})


def exposed_headers() -> list[str]:
    """What CORS lets a browser script read: every header the contract declares."""
    return sorted({*RESPONSE_HEADERS, CURSOR_HEADER} - CORS_SAFELISTED)


# Only a busy database's 503 says when to try again; a 503 of `/readyz` does not.
BUSY_RETRY_AFTER = {
    "description": "When the database was busy: seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 0, "examples": [1]},
}

REQUEST_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "An id for this request, echoed in the answer's `X-Request-ID` and in "
        "the logs: 1 to 128 of `A-Z a-z 0-9 . _ : -`. Any other value is ignored and "
        "Dorsi makes one.",
        "schema": {"type": "string", "examples": ["checkout-7f3a"]},
    },
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes a retry safe: the first request with this key runs and its "
        "answer is kept for a day (for this caller and path); a retry with the same body "
        "gets that answer again with `Idempotent-Replayed: true`, one with another body "
        "422, one while the first still runs 409. Answers that hold credentials "
        "(`Cache-Control: no-store`) are not kept.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    },
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        _restore_null_examples(app, schema)
        anonymous = _routes_depending_on(app, {oauth2_or_anonymous})
        admins_only = _routes_depending_on(app, ADMIN_ONLY)
        for route, path in schema["paths"].items():
            for method, operation in path.items():
                _add_unplanned(route, method, operation)
                _add_request_headers(route, method, operation)
                _add_response_headers(route, method, operation)
                if (method, route) in anonymous:
                    # OpenAPI's way to say that a caller need not sign in at all.
                    operation["security"].insert(0, {})
                if (method, route) in admins_only:
                    # A role, not a scope: OAuth2 has no word for it.
                    operation["description"] = (
                        f"{operation.get('description', '').rstrip()}\n\n{ADMINS_ONLY}".strip()
                    )
        # FastAPI's own 422 schemas, once no operation answers with them (FHIR's answer 400).
        if "#/components/schemas/HTTPValidationError" not in orjson.dumps(schema["paths"]).decode():
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        components = schema.setdefault("components", {})
        components["headers"] = RESPONSE_HEADERS
        components["parameters"] = REQUEST_HEADERS
        _link(schema)
        for component in components.get("schemas", {}).values():
            # Enums carry their first member as the example, so every schema has one.
            if "enum" in component and "examples" not in component:
                component["examples"] = [component["enum"][0]]
        app.openapi_schema = schema
    return app.openapi_schema


def _restore_null_examples(app: FastAPI, schema: dict[str, Any]) -> None:
    """Puts the models' examples back as they wrote them. FastAPI drops every null member
    of the document it renders, examples' too, so an example would lack the required
    nullable fields (`"next_cursor": null`) that its own schema demands. The models'
    schemas are made again here, as `get_openapi` makes them, nulls kept."""
    fields = get_fields_from_routes(app.routes)
    names = get_model_name_map(get_flat_models_from_fields(fields, known_models=set()))
    _, definitions = get_definitions(
        fields=fields, model_name_map=names, separate_input_output_schemas=True
    )
    rendered = schema.get("components", {}).get("schemas", {})
    for name, definition in definitions.items():
        if name in rendered:
            _copy_examples(definition, rendered[name])


def _copy_examples(source: Any, target: Any) -> None:
    if isinstance(source, dict) and isinstance(target, dict):
        if "examples" in source:
            target["examples"] = source["examples"]
        for key, value in source.items():
            if key != "examples":
                _copy_examples(value, target.get(key))
    elif isinstance(source, list) and isinstance(target, list) and len(source) == len(target):
        for inner_source, inner_target in zip(source, target, strict=True):
            _copy_examples(inner_source, inner_target)


ADMINS_ONLY = "Clinic admins only: other clinicians and API clients get 403."


def _routes_depending_on(app: FastAPI, calls: Collection[object]) -> set[tuple[str, str]]:
    """The (method, path) of the operations whose routes depend on one of ``calls``: the
    security scheme that admits anonymous callers (`oauth2_or_anonymous`), say."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and _depends_on(route.dependant, calls):
            found |= {(method.lower(), route.path_format) for method in route.methods or ()}
    return found


def _depends_on(dependant: Dependant, calls: Collection[object]) -> bool:
    return any(sub.call in calls or _depends_on(sub, calls) for sub in dependant.dependencies)


def _add_unplanned(route: str, method: str, operation: dict[str, Any]) -> None:
    """The answers no route raises itself: failures, a busy database, bodies the app cannot
    read, and what `Idempotency-Key` answers. Errors are problem+json, OperationOutcomes
    under FHIR (where a failed validation is a 400)."""
    unplanned = dict(UNPLANNED)
    if "requestBody" in operation:
        unplanned |= BODY_UNPLANNED
    if idempotency.applies(method, route):
        for status, description in IDEMPOTENT_UNPLANNED.items():
            earlier = unplanned.get(status)
            unplanned[status] = (
                f"{earlier} Or {description.partition(': ')[2]}" if earlier else description
            )
    fhir = route.startswith(FHIR_PREFIX)
    error_media_type = FHIR_MEDIA_TYPE if fhir else PROBLEM_MEDIA_TYPE
    if fhir:
        operation["responses"].pop("422", None)
    for status, description in unplanned.items():
        model = "ValidationProblem" if status in WITH_ERRORS else "Problem"
        if fhir:
            model = "OperationOutcome"
        operation["responses"].setdefault(
            status,
            {
                "description": description,
                "content": {
                    error_media_type: {"schema": {"$ref": f"#/components/schemas/{model}"}}
                },
            },
        )
    for status, answer in operation.get("responses", {}).items():
        # Errors are only ever problem+json (OperationOutcomes under FHIR); FastAPI would
        # also list JSON (or the route's own media type, NDJSON say).
        content = answer.get("content", {})
        if status[0] in "45":
            for media_type in [m for m in content if m != error_media_type]:
                content.setdefault(error_media_type, content.pop(media_type))


def _add_request_headers(route: str, method: str, operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        # The writes that answer 428 without `If-Match` require it (`check_if_match`).
        if parameter["name"] == "If-Match" and "428" in operation["responses"]:
            parameter["required"] = True
    names = ["X-Request-ID"]
    if idempotency.applies(method, route):
        names.append("Idempotency-Key")
    parameters.extend({"$ref": f"#/components/parameters/{name}"} for name in names)


def _add_response_headers(route: str, method: str, operation: dict[str, Any]) -> None:
    """What the layers around the routes add to their answers (`app.core`), beside what a
    route declares itself (ETag, Location)."""
    replayable = idempotency.applies(method, route)
    for status, answer in operation["responses"].items():
        # The request context sends these two on every answer.
        names = ["X-Request-ID", "Cache-Control"]
        if any(map(compresses, answer.get("content", {}))):
            names += ["Vary", "Content-Encoding"]
        if status == "304":
            names.append("Vary")  # beside its ETag, as the 200 it stands for
        if status == "401":
            names.append("WWW-Authenticate")
        if status == "429":
            names.append("Retry-After")
        if status == "415" and method in ("post", "patch"):
            names.append(f"Accept-{method.capitalize()}")
        if replayable and status[0] != "5":
            names.append("Idempotent-Replayed")
        headers = answer.setdefault("headers", {})
        for name in names:
            headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})
        if status == "503":
            headers.setdefault("Retry-After", BUSY_RETRY_AFTER)


# What each create answers, and where what it made lives: the contract links the create
# to every operation on that resource (OpenAPI links), so that a client generator, or a
# stateful fuzzer, can follow create → read → update → delete.
LINKS: dict[tuple[str, str], tuple[str, str, str]] = {
    # (method, path) of the create: (status, the resource's path, the id in its answer)
    ("post", "/v1/exercises"): ("201", "/v1/exercises/{exercise}", "/id"),
    ("post", "/v1/api-clients"): ("201", "/v1/api-clients/{client_id}", "/id"),
    ("post", "/v1/clinicians"): ("201", "/v1/clinicians/{clinician_id}", "/id"),
    ("post", "/v1/patients"): ("201", "/v1/patients/{patient_id}", "/id"),
    ("post", "/v1/plan-templates"): ("201", "/v1/plan-templates/{template_id}", "/id"),
    ("post", "/v1/plan-templates/{template_id}/copy"): (
        "201",
        "/v1/plan-templates/{template_id}",
        "/id",
    ),
    ("post", "/v1/patients/{patient_id}/plans"): ("201", "/v1/plans/{plan_id}", "/id"),
    ("post", "/v1/adherence/batch"): ("200", "/v1/adherence/{record_id}", "/results/0/id"),
}


def _resolved(schema: dict[str, Any], parameter: dict[str, Any]) -> dict[str, Any]:
    """A parameter, or the component its `$ref` names."""
    reference = parameter.get("$ref")
    if reference is None:
        return parameter
    found: dict[str, Any] = schema["components"]["parameters"][reference.rpartition("/")[2]]
    return found


def _link(schema: dict[str, Any]) -> None:
    paths: dict[str, dict[str, Any]] = schema["paths"]
    for (method, path), (status, resource, pointer) in LINKS.items():
        parameter = resource.rpartition("{")[2].rstrip("}")
        links: dict[str, Any] = {}
        for target, operations in paths.items():
            if target != resource and not target.startswith(resource + "/"):
                continue
            for operation in operations.values():
                values = {f"path.{parameter}": f"$response.body#{pointer}"}
                names = {
                    (p["in"], p["name"])
                    for p in (_resolved(schema, p) for p in operation.get("parameters", []))
                }
                if ("path", "number") in names:
                    values["path.number"] = "$response.body#/version"
                if ("header", "If-Match") in names:
                    values["header.If-Match"] = "$response.header.ETag"
                if len([n for n in names if n[0] == "path"]) > len(
                    [v for v in values if v.startswith("path.")]
                ):
                    continue  # needs an id this answer does not carry
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": values,
                }
        paths[path][method]["responses"][status]["links"] = links


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` builds the app on first use, so importing this module
    # (from tests or the CLI) does not read the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)
