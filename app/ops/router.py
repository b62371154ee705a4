"""Health, readiness and Prometheus metrics."""

import os

from fastapi import APIRouter, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from pydantic import BaseModel, ConfigDict
from sqlalchemy import literal, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from app.core.errors import Problem, problem_response
from app.core.gauges import DatabaseGauges

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    """The process (or the database, for readiness) is up."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


@router.get("/healthz", operation_id="getHealth", summary="Liveness", response_model=Health)
async def healthz() -> Health:
    """Answers as long as the process serves requests."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Readiness",
    response_model=Health,
    responses={503: {"model": Problem, "description": "The database cannot be reached."}},
)
async def readyz(request: Request) -> Response | Health:
    """Answers 200 when the database answers a query, 503 otherwise."""
    try:
        async with request.app.state.engine.connect() as connection:
            await connection.execute(select(literal(1)))
    except SQLAlchemyError:
        return problem_response(
            503,
            slug="database-unavailable",
            detail="The database cannot be reached.",
            request=request,
        )
    return Health(status="ok")


@router.get(
    "/metrics",
    operation_id="getMetrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "dorsi_http_requests_total 1.0"}}}},
)
async def metrics(request: Request) -> Response:
    """Request counts and latencies and the database pool, in the Prometheus text format;
    served by `dorsi serve --workers N`, they are the sum of all N processes, whichever
    of them answers. Then the deployment's background work, read from the database at
    each scrape: worker queues, webhook failures and the change feed's lag (left out, with
    `dorsi_metrics_database_up 0`, when the database cannot be read)."""
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    gauges: DatabaseGauges = request.app.state.database_gauges
    body = generate_latest(registry) + await gauges.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
