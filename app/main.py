"""Builds the Dorsi ASGI application: settings, database, routes, errors, docs."""

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from app.adherence.router import router as adherence_router
from app.auth.ratelimit import SignInLimiter
from app.auth.router import router as auth_router
from app.auth.security import Secrets
from app.clinics.api_clients_router import router as api_clients_router
from app.clinics.audit_router import router as audit_router
from app.clinics.clinicians_router import router as clinicians_router
from app.clinics.router import router as clinic_router
from app.core.cache import PublicResponseCache
from app.core.compression import CompressionMiddleware
from app.core.config import Settings, get_settings
from app.core.db import make_engine
from app.core.errors import PROBLEM_MEDIA_TYPE, install_error_handlers
from app.core.idempotency import IdempotencyMiddleware
from app.core.logging import configure_logging, flush_logs
from app.core.methods import HeadAsGet
from app.core.observability import RequestContextMiddleware
from app.exercises.router import router as exercises_router
from app.feed.listener import ChangeListener
from app.feed.router import router as feed_router
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

DESCRIPTION = """
Dorsi serves home-exercise programs for people with foot drop: an exercise catalog drawn
from a published source, patients' plans, and what patients actually did.

* Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json`.
* Lists are cursor-paginated: follow `next_cursor` until it is null. Page size ≤ 100.
* Reads send `ETag`; send it back in `If-None-Match` for a `304 Not Modified`.
* JSON answers of 1 KiB or more are gzip-compressed when `Accept-Encoding` allows it. A
  compressed answer's ETag ends in `-gzip`; either encoding's ETag revalidates.
* Request bodies are limited in size (1 MiB by default); unknown fields are refused.
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
                ),
                minimum_bytes=settings.compression_min_bytes,
            ),
            ceiling_seconds=settings.response_cache_seconds,
        )
        return RequestContextMiddleware(HeadAsGet(app), max_body_bytes=settings.max_body_bytes)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        flusher = asyncio.create_task(flush_logs())
        # What start-up made (modules, models, the OpenAPI schema) lives as long as the
        # process: out of the collector's sight, full collections stay short mid-request.
        gc.freeze()
        yield
        flusher.cancel()
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
    # Exercise details live as long as public answers may be cached.
    app.state.today = TodayBatcher(
        engine, ExerciseCache(EXERCISE_CACHE_SIZE, settings.response_cache_seconds)
    )
    app.state.sign_in_limiter = SignInLimiter(
        settings.sign_in_rate_limit,
        settings.rate_limit_storage,
        account_ceiling=settings.sign_in_account_ceiling,
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
            expose_headers=["ETag", "Location", "Retry-After", "X-Request-ID"],
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
        for route, path in schema["paths"].items():
            for method, operation in path.items():
                # Any route may fail unexpectedly, or find the database busy or away; any
                # body may be too large.
                unplanned = dict(UNPLANNED)
                if "requestBody" in operation:
                    unplanned |= BODY_UNPLANNED
                if method == "post" and not route.startswith("/v1/auth/"):
                    for status, description in IDEMPOTENT_UNPLANNED.items():
                        earlier = unplanned.get(status)
                        unplanned[status] = (
                            f"{earlier} Or {description.partition(': ')[2]}"
                            if earlier
                            else description
                        )
                # FHIR's errors are OperationOutcomes (and a failed validation is a 400).
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
                                error_media_type: {
                                    "schema": {"$ref": f"#/components/schemas/{model}"}
                                }
                            },
                        },
                    )
                for status, answer in operation.get("responses", {}).items():
                    # Errors are only ever problem+json (OperationOutcomes under FHIR);
                    # FastAPI would also list JSON (or the route's own media type).
                    content = answer.get("content", {})
                    if status[0] in "45":
                        for media_type in [m for m in content if m != error_media_type]:
                            content.setdefault(error_media_type, content.pop(media_type))
        # FastAPI's own 422 schemas, once no operation answers with them (FHIR's answer 400).
        components = schema.get("components", {}).get("schemas", {})
        if "#/components/schemas/HTTPValidationError" not in orjson.dumps(schema["paths"]).decode():
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
        for component in schema.get("components", {}).get("schemas", {}).values():
            # Enums carry their first member as the example, so every schema has one.
            if "enum" in component and "examples" not in component:
                component["examples"] = [component["enum"][0]]
        app.openapi_schema = schema
    return app.openapi_schema


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` builds the app on first use, so importing this module
    # (from tests or the CLI) does not read the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)
