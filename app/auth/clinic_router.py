"""The caller's clinic and its settings: what the adherence overview and summary flag."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from app.adherence import overview
from app.audit import service as audit
from app.auth.deps import staff
from app.auth.models import Clinic
from app.auth.principal import Caller
from app.core.db import SessionDep
from app.core.errors import Forbidden, InvalidInput, Unauthorized, responses

router = APIRouter(prefix="/v1/clinic", tags=["auth"])

_EXAMPLE: dict[str, Any] = {
    "id": "0b6f2d4e-8a1c-4e3f-9b5d-7c2a1e4f6b8d",
    "name": "Riverside Neuro Rehab",
    "adherence_threshold_percent": 70,
    "pain_alert_at": 7,
}
ThresholdPercent = Annotated[
    int, Field(ge=1, le=100, description="Below this 7-day adherence a patient is flagged.")
]
PainAlertAt = Annotated[
    int, Field(ge=1, le=10, description="A session with pain at or above this is an alert.")
]


class ClinicPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: uuid.UUID
    name: str
    adherence_threshold_percent: ThresholdPercent
    pain_alert_at: PainAlertAt


class ClinicUpdate(BaseModel):
    """Thresholds: adherence 1 to 100 %, pain 1 to 10."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"adherence_threshold_percent": 80, "pain_alert_at": 6}]},
    )

    adherence_threshold_percent: ThresholdPercent | None = None
    pain_alert_at: PainAlertAt | None = None


@router.get(
    "",
    operation_id="getClinic",
    summary="Get the caller's clinic and its settings",
    response_model=ClinicPublic,
    responses=responses(Unauthorized, Forbidden),
)
def get_clinic(session: SessionDep, caller: Annotated[Caller, Depends(staff())]) -> ClinicPublic:
    return ClinicPublic.model_validate(session.get_one(Clinic, caller.clinic_id))


@router.patch(
    "",
    operation_id="updateClinic",
    summary="Change the clinic's adherence and pain thresholds",
    response_model=ClinicPublic,
    responses=responses(Unauthorized, Forbidden, InvalidInput),
)
def update_clinic(
    body: ClinicUpdate,
    session: SessionDep,
    caller: Annotated[Caller, Depends(staff(admin=True))],
) -> ClinicPublic:
    """Clinic admins only. The overview applies new thresholds from its next request."""
    clinic = session.get_one(Clinic, caller.clinic_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    for name, value in changes.items():
        setattr(clinic, name, value)
    session.add(clinic)
    session.flush()
    if "pain_alert_at" in changes:  # the overview's pain counts use it
        overview.mark_stale(session, clinic_id=clinic.id)
    audit.record(session, caller, "update", "clinic", clinic.id)
    return ClinicPublic.model_validate(clinic)
