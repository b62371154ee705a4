"""Patient routes for clinicians and clinic systems (patients use /v1/me)."""

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.deps import SecretsDep, staff
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
from app.core.pagination import PageQuery
from app.patients import service
from app.patients.models import Patient
from app.patients.schemas import (
    AccessCodePublic,
    DevicePage,
    DevicePublic,
    PatientCreate,
    PatientPage,
    PatientPublic,
    PatientQuery,
    PatientUpdate,
)

router = APIRouter(prefix="/v1/patients", tags=["patients"])

Reader = Annotated[Caller, Depends(staff(Scope.patients_read))]
Writer = Annotated[Caller, Depends(staff(Scope.patients_write))]
PatientId = Annotated[uuid.UUID, "the patient's id"]
AUTH_ERRORS = (Unauthorized, Forbidden, InvalidInput)


def _public(patient: Patient) -> bytes:
    return service.public(patient).model_dump_json().encode()


@router.post(
    "",
    operation_id="createPatient",
    summary="Create a patient",
    status_code=201,
    response_model=PatientPublic,
    responses={**written(201, location=True), **responses(*AUTH_ERRORS, Conflict)},
)
async def create_patient(
    request: Request, body: PatientCreate, session: SessionDep, caller: Writer
) -> Response:
    """A pseudonymous patient of the caller's clinic: the clinic's own reference (409 if
    the clinic already uses it), the affected side, the cause and the time zone in which
    their days are counted."""
    patient = await service.create(session, caller, body)
    return Response(
        _public(patient),
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/v1/patients/{patient.id}", "ETag": service.etag(patient)},
    )


@router.get(
    "",
    operation_id="listPatients",
    summary="List patients",
    response_model=PatientPage,
    responses=responses(*AUTH_ERRORS),
)
async def list_patients(
    session: SessionDep, caller: Reader, query: Annotated[PatientQuery, Query()]
) -> PatientPage:
    """The clinic's patients, oldest first, a page at a time; `reference` finds one by the
    clinic's own reference. Each patient listed is recorded in the audit trail."""
    rows, cursor = await service.list_page(session, caller, query)
    return PatientPage(
        items=[PatientPublic.model_validate(row) for row in rows], next_cursor=cursor
    )


@router.get(
    "/{patient_id}",
    operation_id="getPatient",
    summary="Get a patient",
    response_model=PatientPublic,
    responses={**NOT_MODIFIED, **responses(*AUTH_ERRORS, NotFound)},
)
async def get_patient(
    patient_id: uuid.UUID,
    session: SessionDep,
    caller: Reader,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """One patient of the clinic, with its ETag (304 to a current `If-None-Match`)."""
    patient = await service.read(session, caller, patient_id)
    return conditional_json(_public(patient), service.etag(patient), if_none_match, PRIVATE)


@router.patch(
    "/{patient_id}",
    operation_id="updatePatient",
    summary="Update a patient",
    response_model=PatientPublic,
    responses={
        **written(200),
        **responses(*AUTH_ERRORS, NotFound, Conflict, PreconditionFailed),
    },
)
async def update_patient(
    patient_id: uuid.UUID,
    body: PatientUpdate,
    session: SessionDep,
    caller: Writer,
    if_match: IfMatch = None,
) -> Response:
    """Changes the given fields; `If-Match` with the patient's ETag makes the change
    conditional (412 when stale)."""
    patient = await service.update(session, caller, patient_id, body, if_match)
    return Response(
        _public(patient), media_type="application/json", headers={"ETag": service.etag(patient)}
    )


@router.delete(
    "/{patient_id}",
    operation_id="deletePatient",
    summary="Delete a patient",
    status_code=204,
    responses=responses(*AUTH_ERRORS, NotFound, PreconditionFailed),
)
async def delete_patient(
    patient_id: uuid.UUID, session: SessionDep, caller: Writer, if_match: IfMatch = None
) -> Response:
    """The patient disappears from the API and their apps are signed out; the record is kept
    for the audit trail."""
    await service.delete(session, caller, patient_id, if_match)
    return Response(status_code=204)


@router.post(
    "/{patient_id}/access-codes",
    operation_id="createAccessCode",
    summary="Issue an access code for the patient's app",
    status_code=201,
    response_model=AccessCodePublic,
    responses=responses(*AUTH_ERRORS, NotFound),
)
async def create_access_code(
    request: Request,
    response: Response,
    patient_id: uuid.UUID,
    session: SessionDep,
    secrets: SecretsDep,
    caller: Writer,
) -> AccessCodePublic:
    """A short single-use code (8 characters, no look-alikes) that the app trades at
    `POST /v1/auth/pair`. It expires after `DORSI_ACCESS_CODE_MINUTES`."""
    response.headers["Cache-Control"] = "no-store"
    minutes = request.app.state.settings.access_code_minutes
    return await service.issue_access_code(
        session, caller, secrets, patient_id, timedelta(minutes=minutes)
    )


@router.get(
    "/{patient_id}/devices",
    operation_id="listPatientDevices",
    summary="List the patient's paired apps",
    response_model=DevicePage,
    responses=responses(*AUTH_ERRORS, NotFound),
)
async def list_devices(
    patient_id: uuid.UUID,
    session: SessionDep,
    caller: Reader,
    query: Annotated[PageQuery, Query()],
) -> DevicePage:
    """The patient's apps, paired with an access code, oldest first, signed out ones too
    (`revoked_at`)."""
    rows, cursor = await service.list_devices(session, caller, patient_id, query)
    return DevicePage(
        items=[DevicePublic.model_validate(device) for device in rows], next_cursor=cursor
    )


@router.delete(
    "/{patient_id}/devices/{device_id}",
    operation_id="revokePatientDevice",
    summary="Sign a paired app out",
    status_code=204,
    responses=responses(*AUTH_ERRORS, NotFound),
)
async def revoke_device(
    patient_id: uuid.UUID, device_id: uuid.UUID, session: SessionDep, caller: Writer
) -> Response:
    """The app's tokens fail on their next request."""
    await service.revoke_device(session, caller, patient_id, device_id)
    return Response(status_code=204)
