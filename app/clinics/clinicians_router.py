"""The clinic's clinicians; clinic admins only. Deactivating one signs them out at once."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.auth.deps import SecretsDep, staff
from app.auth.principal import Caller
from app.clinics import service
from app.clinics.schemas import ClinicianCreate, ClinicianPage, ClinicianPublic, ClinicianUpdate
from app.core.db import SessionDep
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized, responses
from app.core.pagination import PageQuery

router = APIRouter(prefix="/v1/clinicians", tags=["auth"])
Admin = Annotated[Caller, Depends(staff(admin=True))]
ERRORS = (Unauthorized, Forbidden, InvalidInput)


@router.post(
    "",
    operation_id="createClinician",
    summary="Add a clinician",
    status_code=201,
    response_model=ClinicianPublic,
    responses=responses(*ERRORS, Conflict),
)
async def create_clinician(
    body: ClinicianCreate, session: SessionDep, secrets: SecretsDep, caller: Admin
) -> ClinicianPublic:
    """A clinician (or, with `role`, another admin) of the caller's clinic, who signs in
    with this email and password. An email already in use is 409."""
    clinician = await service.create_clinician(session, secrets, caller, body)
    return ClinicianPublic.model_validate(clinician)


@router.get(
    "",
    operation_id="listClinicians",
    summary="List clinicians",
    response_model=ClinicianPage,
    responses=responses(*ERRORS),
)
async def list_clinicians(
    session: SessionDep, caller: Admin, query: Annotated[PageQuery, Query()]
) -> ClinicianPage:
    """The clinic's clinicians, oldest first, deactivated ones too (`active`)."""
    rows, cursor = await service.list_clinicians(session, caller, query)
    return ClinicianPage(
        items=[ClinicianPublic.model_validate(row) for row in rows], next_cursor=cursor
    )


@router.patch(
    "/{clinician_id}",
    operation_id="updateClinician",
    summary="Change a clinician's role, or deactivate them",
    response_model=ClinicianPublic,
    responses=responses(*ERRORS, NotFound, Conflict),
)
async def update_clinician(
    clinician_id: uuid.UUID, body: ClinicianUpdate, session: SessionDep, caller: Admin
) -> ClinicianPublic:
    """A deactivated clinician's tokens fail on their next request. An admin cannot demote
    or deactivate themselves, so a clinic always keeps one."""
    clinician = await service.update_clinician(session, caller, clinician_id, body)
    return ClinicianPublic.model_validate(clinician)
