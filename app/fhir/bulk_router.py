"""FHIR Bulk Data `$export` routes: kick-off, status (poll, then the manifest), cancel,
and the NDJSON files. For clinic admins and API clients holding `changes:read` (as the
REST exports), with each exported type's scope as well.

Declared before the read routes, so `Patient/$export` is not read as a patient's id.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Path, Request, Response, Security
from fastapi.responses import StreamingResponse

from app.auth.deps import oauth2
from app.auth.principal import Caller
from app.core.db import SessionDep
from app.core.errors import BadRequest, Forbidden, NotFound, Unauthorized
from app.feed.router import feed_reader
from app.fhir import bulk
from app.fhir.capability import EXPORT_TYPES, SCOPES
from app.fhir.models import ExportStatus
from app.fhir.outcome import PREFIX, outcome_responses
from app.fhir.router import FhirResponse, base_url

router = APIRouter(tags=["fhir"])
NDJSON = "application/fhir+ndjson"
Exporter = Annotated[Caller, Depends(feed_reader)]


def _types_read(types: tuple[str, ...]) -> Any:
    """The scopes an export of ``types`` needs beside `changes:read`, as the contract names
    them (the kick-off checks them against the `_type` asked, every type by default)."""
    return Security(oauth2, scopes=sorted({SCOPES[kind] for kind in types}))


JobId = Annotated[uuid.UUID, Path(description="The export, as `Content-Location` named it.")]

KICK_OFF_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Accepted: poll `Content-Location` for the export's status.",
        "headers": {
            "Content-Location": {
                "required": True,
                "description": "The status URL of the export.",
                "schema": {"type": "string"},
            }
        },
    },
    **outcome_responses(BadRequest, Unauthorized, Forbidden),
}
KICK_OFF_PARAMETERS = [
    {
        "name": "_type",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Comma-separated resource types (default: all the level serves).",
    },
    {
        "name": "_since",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Only resources changed after this instant: a previous export's "
        "`transactionTime` hands over with no gap and no duplicate.",
    },
    {
        "name": "_outputFormat",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "application/fhir+ndjson (the only format).",
    },
]


async def _kick_off(
    request: Request,
    session: SessionDep,
    caller: Caller,
    background: BackgroundTasks,
    prefer: str | None,
    level: str,
) -> Response:
    if "respond-async" not in (prefer or ""):
        raise BadRequest("Send `Prefer: respond-async`: exports run asynchronously.")
    job = await bulk.kick_off(session, caller, level, request.query_params, str(request.url))
    if request.app.state.settings.fhir_export_in_process:
        # After the answer (and so after the commit that queues the job).
        background.add_task(bulk.run_job, request.app.state.engine, job.id)
    location = f"{base_url(request)}/$export-status/{job.id}"
    return Response(status_code=202, headers={"Content-Location": location})


Prefer = Annotated[str | None, Header(description="Must include `respond-async` (Bulk Data IG).")]


@router.get(
    f"{PREFIX}/$export",
    operation_id="exportFhirSystem",
    summary="Start a Bulk Data export of the clinic",
    status_code=202,
    response_class=Response,
    responses=KICK_OFF_RESPONSES,
    openapi_extra={"parameters": KICK_OFF_PARAMETERS},
)
async def export_system(
    request: Request,
    session: SessionDep,
    caller: Exporter,
    background: BackgroundTasks,
    _reads: Annotated[str | None, _types_read(tuple(SCOPES))],
    prefer: Prefer = None,
) -> Response:
    """Every type: Patient, CarePlan, Procedure, Observation, ActivityDefinition,
    PlanDefinition (the clinic's own and the global ones), from one snapshot."""
    return await _kick_off(request, session, caller, background, prefer, "system")


@router.get(
    f"{PREFIX}/Patient/$export",
    operation_id="exportFhirPatients",
    summary="Start a Bulk Data export of the clinic's patients",
    status_code=202,
    response_class=Response,
    responses=KICK_OFF_RESPONSES,
    openapi_extra={"parameters": KICK_OFF_PARAMETERS},
)
async def export_patients(
    request: Request,
    session: SessionDep,
    caller: Exporter,
    background: BackgroundTasks,
    _reads: Annotated[str | None, _types_read(EXPORT_TYPES)],
    prefer: Prefer = None,
) -> Response:
    """The patient compartment: Patient, CarePlan, Procedure, Observation."""
    return await _kick_off(request, session, caller, background, prefer, "patient")


@router.get(
    f"{PREFIX}/$export-status/{{job_id}}",
    operation_id="getFhirExportStatus",
    summary="Poll a Bulk Data export",
    response_class=Response,
    responses={
        200: {
            "description": "Done: the manifest.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["transactionTime", "request", "requiresAccessToken"],
                        "properties": {
                            "transactionTime": {"type": "string"},
                            "request": {"type": "string"},
                            "requiresAccessToken": {"type": "boolean"},
                            "output": {"type": "array", "items": {"type": "object"}},
                            "deleted": {"type": "array", "items": {"type": "object"}},
                            "error": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                    "example": {
                        "transactionTime": "2026-12-03T10:00:00.123456+00:00",
                        "request": "https://dorsi.example/fhir/R4/$export",
                        "requiresAccessToken": True,
                        "output": [
                            {
                                "type": "Patient",
                                "url": "https://dorsi.example/fhir/R4/$export-file/8e7d…",
                                "count": 42,
                            }
                        ],
                        "deleted": [],
                        "error": [],
                    },
                }
            },
        },
        202: {
            "description": "Still running.",
            "headers": {
                "X-Progress": {
                    "required": True,
                    "description": "How far it is.",
                    "schema": {"type": "string"},
                },
                "Retry-After": {"description": "Seconds.", "schema": {"type": "string"}},
            },
        },
        **outcome_responses(Unauthorized, Forbidden, NotFound),
    },
)
async def export_status(
    request: Request, job_id: JobId, session: SessionDep, caller: Exporter
) -> Response:
    """202 with `X-Progress` while it runs, then 200 with the manifest; a failed export
    answers 500 with an OperationOutcome; a cancelled one 404."""
    job = await bulk.own_job(session, caller, job_id)
    if job.status in (ExportStatus.queued, ExportStatus.running):
        return Response(
            status_code=202,
            headers={"X-Progress": job.progress or job.status, "Retry-After": "1"},
        )
    if job.status == ExportStatus.failed:
        return FhirResponse(
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception", "diagnostics": job.error}],
            },
            status_code=500,
        )
    files = await bulk.files_of(session, job.id)
    return FhirResponse(bulk.manifest(job, files, base_url(request)), media_type="application/json")


@router.delete(
    f"{PREFIX}/$export-status/{{job_id}}",
    operation_id="cancelFhirExport",
    summary="Cancel a Bulk Data export",
    status_code=202,
    response_class=Response,
    responses={
        202: {"description": "Cancelled: the export and its files are gone."},
        **outcome_responses(Unauthorized, Forbidden, NotFound),
    },
)
async def cancel_export(job_id: JobId, session: SessionDep, caller: Exporter) -> Response:
    """A running export stops at its next write (a few hundred resources at most)."""
    await bulk.cancel(session, caller, job_id)
    return Response(status_code=202)


@router.get(
    f"{PREFIX}/$export-file/{{file_id}}",
    operation_id="getFhirExportFile",
    summary="Download a Bulk Data export file",
    response_class=Response,
    responses={
        200: {
            "description": "One resource per line.",
            "content": {
                NDJSON: {
                    "schema": {"type": "string"},
                    "example": '{"resourceType": "Patient", "id": "3f0e…"}\n',
                }
            },
        },
        **outcome_responses(Unauthorized, Forbidden, NotFound),
    },
)
async def export_file(
    request: Request,
    file_id: Annotated[uuid.UUID, Path(description="As the manifest names it.")],
    session: SessionDep,
    caller: Exporter,
) -> Response:
    """Needs the token that started the export."""
    found = await bulk.own_file(session, caller, file_id)
    # Streamed a chunk at a time: a file is never whole in memory. A failure mid-file
    # ends the response unfinished, so the client sees that the file is incomplete.
    content = bulk.file_content(request.app.state.engine, found.id)
    return StreamingResponse(content, media_type=NDJSON)
