"""The patient app's routes: only the signed-in patient's own data."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from app.audit import service as audit
from app.auth.deps import PatientCaller, patient_bearer, patient_only, resolve
from app.core.db import SessionDep, transaction
from app.core.errors import Forbidden, NotFound, Unauthorized, responses
from app.me import service
from app.me.schemas import Me, Today
from app.plans import service as plans
from app.plans.schemas import PlanPublic

router = APIRouter(prefix="/v1/me", tags=["me"])


@router.get(
    "",
    operation_id="getMe",
    summary="Who I am",
    response_model=Me,
    responses=responses(Unauthorized, Forbidden),
)
def get_me(session: SessionDep, caller: PatientCaller) -> Me:
    return service.me(session, caller)


@router.get(
    "/plan",
    operation_id="getMyPlan",
    summary="My active plan",
    response_model=PlanPublic,
    responses=responses(Unauthorized, Forbidden, NotFound),
)
def get_my_plan(session: SessionDep, caller: PatientCaller) -> PlanPublic:
    """404 when no plan is active."""
    patient_id = caller.principal.patient_id
    assert patient_id is not None
    found = service.active_plan(session, patient_id)
    if found is None:
        raise NotFound("No active plan.")
    plan, version = found
    audit.record(session, caller, "read", "plan", plan.id, patient_id)
    return plans.plan_public(session, plan, version)


@router.get(
    "/today",
    operation_id="getMyToday",
    summary="What is due today",
    response_model=Today,
    responses=responses(Unauthorized, Forbidden),
)
async def get_my_today(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(patient_bearer)],
) -> Response:
    """Today's items in the patient's own time zone, each with its dose, the exercise's
    steps and what is already recorded today."""
    # The app polls this, so it runs as one unit in one worker thread: check the token,
    # read, audit, commit; not one thread hop per dependency.
    token = credentials.credentials if credentials else None
    client = request.client
    request_id = request.scope.get("state", {}).get("request_id")

    def work() -> bytes:
        with transaction(request.app.state.engine) as session:
            principal = resolve(session, request.app.state.secrets, token)
            caller = patient_only(principal, client.host if client else None, request_id)
            return service.today(session, caller).model_dump_json().encode()

    body = await run_in_threadpool(work)
    return Response(body, media_type="application/json")
