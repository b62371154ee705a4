"""The patient app's routes: only the signed-in patient's own data."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from app.audit import service as audit
from app.auth.deps import PatientCaller, patient_bearer
from app.core.db import SessionDep
from app.core.errors import Forbidden, NotFound, Unauthorized, responses
from app.me import service, today
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
    # On PostgreSQL, app.me.endpoint answers first; this answers what it passes on.
    token = credentials.credentials if credentials else None
    client = request.client
    state = request.app.state
    body = await run_in_threadpool(
        today.today,
        state.engine,
        state.secrets,
        token,
        client.host if client else None,
        request.scope.get("state", {}).get("request_id"),
        state.settings.response_cache_seconds,
    )
    return Response(body, media_type="application/json")
