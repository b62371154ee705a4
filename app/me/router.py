"""The patient app's routes: only the signed-in patient's own data."""

from fastapi import APIRouter, Request, Response

from app.audit import service as audit
from app.auth.deps import PatientBearer, PatientCaller, patient_session
from app.core.db import SessionDep
from app.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized, responses
from app.core.http import (
    JSON_MEDIA_TYPE,
    NOT_MODIFIED,
    PRIVATE,
    IfNoneMatch,
    conditional_json,
    rendered_json,
)
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
async def get_me(session: SessionDep, caller: PatientCaller) -> Me:
    """The patient this app is paired for: their id, affected side, time zone, and today's
    date where they are."""
    return await service.me(session, caller)


@router.get(
    "/plan",
    operation_id="getMyPlan",
    summary="My active plan",
    response_model=PlanPublic,
    responses={**NOT_MODIFIED, **responses(Unauthorized, Forbidden, NotFound, InvalidInput)},
)
async def get_my_plan(
    session: SessionDep, caller: PatientCaller, if_none_match: IfNoneMatch = None
) -> Response:
    """404 when no plan is active. The ETag is the plan's, as `getPlan` sends it."""
    patient_id = caller.principal.patient_id
    assert patient_id is not None
    plan = await service.active_plan(session, caller.principal.clinic_id, patient_id)
    if plan is None:
        raise NotFound("No active plan.")
    await audit.record(session, caller, "read", "plan", plan.id, patient_id)
    body = rendered_json(await plans.plan_public(session, plan))
    return conditional_json(body, plans.plan_etag(plan), if_none_match, PRIVATE)


@router.get(
    "/today",
    operation_id="getMyToday",
    summary="What is due today",
    response_model=Today,
    responses=responses(Unauthorized, Forbidden),
)
async def get_my_today(request: Request, credentials: PatientBearer) -> Response:
    """Today's items in the patient's own time zone, each with its dose, the exercise's
    steps and what is already recorded today."""
    # Only the token's signature here: its session is checked with the rest (`TodayBatcher`).
    session_id = patient_session(request.app.state.secrets, credentials)
    batcher: today.TodayBatcher = request.app.state.today
    client = request.client
    body = await batcher.today(
        session_id,
        client.host if client else None,
        request.scope.get("state", {}).get("request_id"),
    )
    return Response(body, media_type=JSON_MEDIA_TYPE)
