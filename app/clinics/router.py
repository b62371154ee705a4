"""The caller's clinic and its settings: what the adherence overview and summary flag."""

from typing import Annotated

from fastapi import APIRouter, Depends

from app.auth.deps import staff
from app.auth.principal import Caller
from app.clinics import service
from app.clinics.schemas import ClinicPublic, ClinicUpdate
from app.core.db import SessionDep
from app.core.errors import Forbidden, InvalidInput, Unauthorized, responses

router = APIRouter(prefix="/v1/clinic", tags=["auth"])


@router.get(
    "",
    operation_id="getClinic",
    summary="Get the caller's clinic and its settings",
    response_model=ClinicPublic,
    responses=responses(Unauthorized, Forbidden),
)
async def get_clinic(
    session: SessionDep, caller: Annotated[Caller, Depends(staff())]
) -> ClinicPublic:
    """The caller's clinic, with the thresholds that the adherence overview and summaries
    flag against. Any clinician or API client of the clinic."""
    return ClinicPublic.model_validate(await service.read_clinic(session, caller))


@router.patch(
    "",
    operation_id="updateClinic",
    summary="Change the clinic's adherence and pain thresholds",
    response_model=ClinicPublic,
    responses=responses(Unauthorized, Forbidden, InvalidInput),
)
async def update_clinic(
    body: ClinicUpdate,
    session: SessionDep,
    caller: Annotated[Caller, Depends(staff(admin=True))],
) -> ClinicPublic:
    """The overview applies new thresholds from its next request."""
    return ClinicPublic.model_validate(await service.update_clinic(session, caller, body))
