"""The clinic's clinicians; clinic admins only. Deactivating one signs them out at once."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlmodel import col, select

from app.auth import accounts
from app.auth.deps import SecretsDep, staff
from app.auth.models import Clinician, Role
from app.auth.principal import Caller
from app.core.db import SessionDep
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized, responses

router = APIRouter(prefix="/v1/clinicians", tags=["auth"])
Admin = Annotated[Caller, Depends(staff(admin=True))]
ERRORS = (Unauthorized, Forbidden, InvalidInput)

_EXAMPLE: dict[str, Any] = {
    "id": "5a3c1e7b-9d2f-4b6a-8c1e-2f3a4b5c6d7e",
    "email": "physio@clinic.example",
    "role": "clinician",
    "active": True,
    "created_at": "2026-11-23T10:00:00Z",
}


class ClinicianCreate(BaseModel):
    """A new clinician of the caller's clinic. Passwords: 12 to 256 characters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "physio@clinic.example",
                    "password": "a long passphrase",
                    "role": "clinician",
                }
            ]
        },
    )

    email: Annotated[EmailStr, Field(max_length=254)]
    password: Annotated[str, Field(min_length=12, max_length=256)]
    role: Role = Role.clinician


class ClinicianUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"active": False}]})

    role: Role | None = None
    active: bool | None = None


class ClinicianPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: uuid.UUID
    email: str
    role: Role
    active: bool
    created_at: datetime


def _load(session: SessionDep, caller: Caller, clinician_id: uuid.UUID) -> Clinician:
    clinician = session.exec(
        select(Clinician).where(
            Clinician.id == clinician_id, Clinician.clinic_id == caller.clinic_id
        )
    ).first()
    if clinician is None:
        raise NotFound(f"No clinician {clinician_id}.")
    return clinician


@router.post(
    "",
    operation_id="createClinician",
    summary="Add a clinician",
    status_code=201,
    response_model=ClinicianPublic,
    responses=responses(*ERRORS, Conflict),
)
def create_clinician(
    body: ClinicianCreate, session: SessionDep, secrets: SecretsDep, caller: Admin
) -> ClinicianPublic:
    clinician = accounts.create_clinician(
        session, secrets, caller.clinic_id, body.email, body.password, body.role
    )
    return ClinicianPublic.model_validate(clinician)


@router.get(
    "",
    operation_id="listClinicians",
    summary="List clinicians",
    response_model=list[ClinicianPublic],
    responses=responses(*ERRORS),
)
def list_clinicians(session: SessionDep, caller: Admin) -> list[ClinicianPublic]:
    rows = session.exec(
        select(Clinician)
        .where(Clinician.clinic_id == caller.clinic_id)
        .order_by(col(Clinician.created_at), col(Clinician.id))
    ).all()
    return [ClinicianPublic.model_validate(row) for row in rows]


@router.patch(
    "/{clinician_id}",
    operation_id="updateClinician",
    summary="Change a clinician's role, or deactivate them",
    response_model=ClinicianPublic,
    responses=responses(*ERRORS, NotFound, Conflict),
)
def update_clinician(
    clinician_id: uuid.UUID, body: ClinicianUpdate, session: SessionDep, caller: Admin
) -> ClinicianPublic:
    """A deactivated clinician's tokens fail on their next request. An admin cannot demote
    or deactivate themselves, so a clinic always keeps one."""
    clinician = _load(session, caller, clinician_id)
    if clinician.id == caller.principal.id and (
        body.active is False or body.role == Role.clinician
    ):
        raise Conflict("Admins cannot demote or deactivate themselves.")
    if body.role is not None:
        clinician.role = body.role
    if body.active is not None:
        clinician.active = body.active
    session.add(clinician)
    session.flush()
    return ClinicianPublic.model_validate(clinician)
