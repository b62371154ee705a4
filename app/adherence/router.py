"""Adherence routes: the app's offline batch upload, and the clinic reading records back."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic_core import to_json

from app.adherence import overview, records, summary, uploads
from app.adherence.models import AdherenceRecord
from app.adherence.schemas import (
    BatchIn,
    BatchResult,
    Overview,
    OverviewQuery,
    RecordPage,
    RecordPublic,
    RecordQuery,
    RecordUpdate,
    RecordVersionPage,
    Summary,
    SummaryQuery,
)
from app.auth.deps import SecretsDep, caller_for, oauth2, patient_bearer, resolve, staff
from app.auth.models import ActorKind
from app.auth.principal import Caller, Scope
from app.core.db import SessionDep
from app.core.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Unauthorized,
    responses,
)
from app.core.http import (
    NOT_MODIFIED,
    PRIVATE,
    IfMatch,
    IfNoneMatch,
    conditional_json,
    rendered_json,
    written,
)
from app.core.pagination import PageQuery

router = APIRouter(tags=["adherence"])


def patient_or_staff(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A patient's app (its own records only), or staff holding ``scope``."""

    async def dependency(
        request: Request,
        session: SessionDep,
        secrets: SecretsDep,
        _staff: Annotated[str | None, Security(oauth2, scopes=[scope])],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(patient_bearer)],
    ) -> Caller:
        token = credentials.credentials if credentials else None
        principal = await resolve(session, secrets, token)
        if principal is None:
            raise Unauthorized()
        if principal.kind != ActorKind.patient and scope not in principal.scopes:
            raise Forbidden(f"This token lacks the `{scope}` scope.")
        return caller_for(request, principal)

    return dependency


Recorder = Annotated[Caller, Depends(patient_or_staff(Scope.adherence_write))]
Reader = Annotated[Caller, Depends(patient_or_staff(Scope.adherence_read))]
Staff = Annotated[Caller, Depends(staff(Scope.adherence_read))]
RECORD_ERRORS = (Unauthorized, Forbidden, InvalidInput, NotFound)


@router.post(
    "/v1/adherence/batch",
    operation_id="uploadAdherence",
    summary="Upload adherence records",
    response_model=BatchResult,
    responses=responses(Unauthorized, Forbidden, InvalidInput),
)
async def upload_adherence(body: BatchIn, session: SessionDep, caller: Recorder) -> Response:
    """Up to 500 records, each answered on its own: `created`, `unchanged` (an exact
    replay), `conflict` (the id holds other content, returned), or `rejected` (with a
    pointer per problem). Replaying an upload, even two at once, never duplicates a record;
    a record deleted since it was uploaded is rejected, and stays deleted.
    Patient apps record their own sessions; clinicians and clinic systems may record for a
    patient of their clinic (`source` says who). The whole body must fit
    `DORSI_MAX_BODY_BYTES` (1 MiB by default: 500 records with short notes do)."""
    # Built from validated values by the service: rendered as they are, not validated again.
    results = await uploads.upload(session, caller, body)
    return Response(to_json({"results": results}), media_type="application/json")


@router.get(
    "/v1/patients/{patient_id}/adherence",
    operation_id="listAdherence",
    summary="List a patient's adherence records",
    response_model=RecordPage,
    responses=responses(Unauthorized, Forbidden, InvalidInput, NotFound),
)
async def list_adherence(
    patient_id: uuid.UUID,
    session: SessionDep,
    caller: Staff,
    query: Annotated[RecordQuery, Query()],
) -> Response:
    """Newest first; `from` and `to` are the patient's local dates, inclusive."""
    items, cursor = await records.list_records(session, caller, patient_id, query)
    body = rendered_json({"items": items, "next_cursor": cursor})
    return Response(body, media_type="application/json")


@router.get(
    "/v1/adherence/overview",
    operation_id="getAdherenceOverview",
    summary="Overview of the clinic's patients' adherence",
    response_model=Overview,
    responses=responses(Unauthorized, Forbidden, InvalidInput),
)
async def get_adherence_overview(
    session: SessionDep,
    caller: Staff,
    query: Annotated[OverviewQuery, Query()],
) -> Response:
    """Every patient of the clinic with adherence over the 7 and 30 complete days before
    their local today (the summary's rules, so a patient's figure equals their summary over
    that window), a `below_threshold` flag for the 7-day figure (the clinic's
    `adherence_threshold_percent`, 70 by default), sessions in the last 7 days with pain at
    or above the clinic's `pain_alert_at` (7 by default), and when their last new record
    arrived. Sorted by the database and paged with a cursor; `limit` 1 to 100."""
    body = to_json(await overview.read(session, caller, query))
    return Response(body, media_type="application/json")


def _record_response(record: AdherenceRecord) -> Response:
    body = rendered_json(records.public(record))
    return Response(body, media_type="application/json", headers={"ETag": records.etag(record)})


@router.get(
    "/v1/adherence/{record_id:uuid}",
    operation_id="getAdherenceRecord",
    summary="Get an adherence record",
    response_model=RecordPublic,
    responses={**NOT_MODIFIED, **responses(*RECORD_ERRORS)},
)
async def get_adherence_record(
    record_id: uuid.UUID,
    session: SessionDep,
    caller: Reader,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """One session record at its current version, with its ETag: a patient's app reads its
    own, staff their clinic's."""
    record = await records.read(session, caller, record_id)
    body = rendered_json(records.public(record))
    return conditional_json(body, records.etag(record), if_none_match, PRIVATE)


@router.patch(
    "/v1/adherence/{record_id:uuid}",
    operation_id="correctAdherenceRecord",
    summary="Correct an adherence record",
    response_model=RecordPublic,
    responses={
        **written(200),
        **responses(*RECORD_ERRORS, PreconditionFailed, PreconditionRequired),
    },
)
async def correct_adherence_record(
    record_id: uuid.UUID,
    body: RecordUpdate,
    session: SessionDep,
    caller: Recorder,
    if_match: IfMatch = None,
) -> Response:
    """Makes a new version; earlier ones stay readable at `/versions`."""
    corrected = await records.correct(session, caller, record_id, body, if_match)
    return _record_response(corrected)


@router.delete(
    "/v1/adherence/{record_id:uuid}",
    operation_id="deleteAdherenceRecord",
    summary="Delete an adherence record",
    status_code=204,
    responses=responses(*RECORD_ERRORS, PreconditionFailed, PreconditionRequired),
)
async def delete_adherence_record(
    record_id: uuid.UUID, session: SessionDep, caller: Recorder, if_match: IfMatch = None
) -> Response:
    """Soft: gone from lists, kept for the record; the change feed gets a tombstone. Takes
    `If-Match` with the record's ETag, as a correction does."""
    await records.delete(session, caller, record_id, if_match)
    return Response(status_code=204)


@router.get(
    "/v1/adherence/{record_id:uuid}/versions",
    operation_id="listAdherenceRecordVersions",
    summary="List an adherence record's versions",
    response_model=RecordVersionPage,
    responses=responses(*RECORD_ERRORS),
)
async def list_adherence_record_versions(
    record_id: uuid.UUID,
    session: SessionDep,
    caller: Reader,
    query: Annotated[PageQuery, Query()],
) -> RecordVersionPage:
    """Every version of the record, oldest first: those that corrections replaced, each
    with when and by whom, then the record as it is (`replaced_at` null)."""
    rows, cursor = await records.versions(session, caller, record_id, query)
    return RecordVersionPage(items=rows, next_cursor=cursor)


@router.get(
    "/v1/patients/{patient_id}/adherence/summary",
    operation_id="getAdherenceSummary",
    summary="Summarise a patient's adherence",
    response_model=Summary,
    response_model_by_alias=True,
    responses=responses(Unauthorized, Forbidden, InvalidInput, NotFound),
)
async def get_adherence_summary(
    patient_id: uuid.UUID,
    query: Annotated[SummaryQuery, Query()],
    session: SessionDep,
    caller: Staff,
) -> Response:
    """Expected sessions against what was done over a period of the patient's local dates
    (`from` and `to` inclusive, at most 366 days; by default the 28 days up to today): in
    total, per ISO week and per item, with streaks, the last activity, pain and its trend,
    and sessions with pain of 7 or more.

    A day follows the plan version in force at its end; only active versions expect
    anything, so paused days expect nothing. Weekday items expect `times_per_day` on their
    days; sessions-per-week items `sessions_per_week * times_per_day` a week, in proportion
    to the days they were in force. A completed session counts 1, a partial one half, never
    more than was expected of the day (or week)."""
    body = await summary.summary(session, caller, patient_id, query)
    return Response(body, media_type="application/json")
