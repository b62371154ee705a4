"""Adherence routes: the app's offline batch upload, and the clinic reading records back."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials

from app.adherence import service
from app.adherence.schemas import BatchIn, BatchResult, RecordPage, RecordQuery
from app.auth.deps import SecretsDep, oauth2, patient_bearer, resolve, staff
from app.auth.models import ActorKind
from app.auth.principal import Caller, Scope
from app.core.db import SessionDep
from app.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized, responses

router = APIRouter(tags=["adherence"])


def recorder(
    request: Request,
    session: SessionDep,
    secrets: SecretsDep,
    _staff: Annotated[str | None, Depends(oauth2)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(patient_bearer)],
) -> Caller:
    """A patient's app (its own records), or staff holding `adherence:write`."""
    principal = resolve(session, secrets, credentials.credentials if credentials else None)
    if principal is None:
        raise Unauthorized()
    if principal.kind != ActorKind.patient and Scope.adherence_write not in principal.scopes:
        raise Forbidden(f"This token lacks the `{Scope.adherence_write}` scope.")
    client = request.client
    return Caller(
        principal=principal,
        ip=client.host if client else None,
        request_id=request.scope.get("state", {}).get("request_id"),
    )


@router.post(
    "/v1/adherence/batch",
    operation_id="uploadAdherence",
    summary="Upload adherence records",
    response_model=BatchResult,
    responses=responses(Unauthorized, Forbidden, InvalidInput),
)
def upload_adherence(
    body: BatchIn, session: SessionDep, caller: Annotated[Caller, Depends(recorder)]
) -> BatchResult:
    """Up to 500 records, each answered on its own: `created`, `unchanged` (an exact
    replay), `conflict` (the id holds other content, returned), or `rejected` (with a
    pointer per problem). Replaying an upload, even two at once, never duplicates a record.
    Patient apps record their own sessions; clinicians and clinic systems may record for a
    patient of their clinic (`source` says who)."""
    return service.upload(session, caller, body)


@router.get(
    "/v1/patients/{patient_id}/adherence",
    operation_id="listAdherence",
    summary="List a patient's adherence records",
    response_model=RecordPage,
    responses=responses(Unauthorized, Forbidden, InvalidInput, NotFound),
)
def list_adherence(
    patient_id: uuid.UUID,
    session: SessionDep,
    caller: Annotated[Caller, Depends(staff(Scope.adherence_read))],
    query: Annotated[RecordQuery, Query()],
) -> RecordPage:
    """Newest first; `from` and `to` are the patient's local dates, inclusive."""
    rows, cursor = service.list_records(session, caller, patient_id, query)
    return RecordPage(items=[service.public(row) for row in rows], next_cursor=cursor)
