"""Plan and plan-template routes for clinicians and clinic systems."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel

from app.auth.deps import staff
from app.auth.principal import Caller, Scope
from app.core.db import SessionDep
from app.core.errors import (
    Conflict,
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
from app.plans import service
from app.plans.schemas import (
    PlanCreate,
    PlanPage,
    PlanPublic,
    PlanQuery,
    PlanUpdate,
    PlanVersionPage,
    PlanVersionPublic,
    TemplateCopy,
    TemplateCreate,
    TemplatePage,
    TemplatePublic,
    TemplateUpdate,
)

router = APIRouter(tags=["plans"])

Reader = Annotated[Caller, Depends(staff(Scope.plans_read))]
Writer = Annotated[Caller, Depends(staff(Scope.plans_write))]
ERRORS = (Unauthorized, Forbidden, InvalidInput)


def _json(
    content: BaseModel | dict[str, Any], etag: str, status: int = 200, location: str | None = None
) -> Response:
    """A template (a model) or a plan (rendered straight from its rows: `plans_at`)."""
    headers = {"ETag": etag}
    if location:
        headers["Location"] = location
    body = content.model_dump_json() if isinstance(content, BaseModel) else rendered_json(content)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


# -------------------------------------------------------------------------- templates


@router.get(
    "/v1/plan-templates",
    operation_id="listPlanTemplates",
    summary="List plan templates",
    response_model=TemplatePage,
    responses=responses(*ERRORS),
)
async def list_plan_templates(
    session: SessionDep, caller: Reader, query: Annotated[PlanQuery, Query()]
) -> TemplatePage:
    """The global foot-drop template and the clinic's own."""
    rows, cursor = await service.list_templates(session, caller.clinic_id, query)
    return TemplatePage(
        items=[await service.template_public(session, row) for row in rows], next_cursor=cursor
    )


@router.post(
    "/v1/plan-templates",
    operation_id="createPlanTemplate",
    summary="Create a plan template",
    status_code=201,
    response_model=TemplatePublic,
    responses={**written(201, location=True), **responses(*ERRORS)},
)
async def create_plan_template(
    body: TemplateCreate, session: SessionDep, caller: Writer
) -> Response:
    """A template of the caller's clinic, from catalog or clinic exercises, to prescribe
    plans from."""
    template = await service.create_template(session, caller.clinic_id, body)
    return _json(
        await service.template_public(session, template),
        service.template_etag(template),
        201,
        f"/v1/plan-templates/{template.id}",
    )


@router.get(
    "/v1/plan-templates/{template_id}",
    operation_id="getPlanTemplate",
    summary="Get a plan template",
    response_model=TemplatePublic,
    responses={**NOT_MODIFIED, **responses(*ERRORS, NotFound)},
)
async def get_plan_template(
    template_id: uuid.UUID, session: SessionDep, caller: Reader, if_none_match: IfNoneMatch = None
) -> Response:
    """One template: the global foot-drop template, or one of the clinic's own."""
    template = await service.get_template(session, caller.clinic_id, template_id)
    body = (await service.template_public(session, template)).model_dump_json().encode()
    return conditional_json(body, service.template_etag(template), if_none_match, PRIVATE)


@router.patch(
    "/v1/plan-templates/{template_id}",
    operation_id="updatePlanTemplate",
    summary="Update a plan template",
    response_model=TemplatePublic,
    responses={**written(200), **responses(*ERRORS, NotFound, PreconditionFailed)},
)
async def update_plan_template(
    template_id: uuid.UUID,
    body: TemplateUpdate,
    session: SessionDep,
    caller: Writer,
    if_match: IfMatch = None,
) -> Response:
    """The clinic's own templates; the global one answers 403 (copy it instead). Plans made
    from a template earlier keep their own copy."""
    template = await service.update_template(session, caller.clinic_id, template_id, body, if_match)
    return _json(await service.template_public(session, template), service.template_etag(template))


@router.delete(
    "/v1/plan-templates/{template_id}",
    operation_id="deletePlanTemplate",
    summary="Delete a plan template",
    status_code=204,
    responses=responses(*ERRORS, NotFound, PreconditionFailed),
)
async def delete_plan_template(
    template_id: uuid.UUID, session: SessionDep, caller: Writer, if_match: IfMatch = None
) -> Response:
    """The clinic's own templates only; the global one answers 403. Plans made from it keep
    their own copy of its items."""
    await service.delete_template(session, caller.clinic_id, template_id, if_match)
    return Response(status_code=204)


@router.post(
    "/v1/plan-templates/{template_id}/copy",
    operation_id="copyPlanTemplate",
    summary="Copy a plan template into the clinic",
    status_code=201,
    response_model=TemplatePublic,
    responses={**written(201, location=True), **responses(*ERRORS, NotFound)},
)
async def copy_plan_template(
    template_id: uuid.UUID, body: TemplateCopy, session: SessionDep, caller: Writer
) -> Response:
    """A new template of the caller's clinic with the items of this one (the global template,
    say), to adapt; `name` renames the copy."""
    template = await service.copy_template(session, caller.clinic_id, template_id, body)
    return _json(
        await service.template_public(session, template),
        service.template_etag(template),
        201,
        f"/v1/plan-templates/{template.id}",
    )


# ------------------------------------------------------------------------------ plans


@router.post(
    "/v1/patients/{patient_id}/plans",
    operation_id="createPlan",
    summary="Prescribe a plan",
    status_code=201,
    response_model=PlanPublic,
    responses={**written(201, location=True), **responses(*ERRORS, NotFound)},
)
async def create_plan(
    patient_id: uuid.UUID, body: PlanCreate, session: SessionDep, caller: Writer
) -> Response:
    """A draft plan for the patient, from a template or from items. Activate it with
    `PATCH /v1/plans/{id}` and `{"status": "active"}`."""
    plan = await service.create_plan(session, caller, patient_id, body)
    return _json(
        await service.plan_public(session, plan),
        service.plan_etag(plan),
        201,
        f"/v1/plans/{plan.id}",
    )


@router.get(
    "/v1/patients/{patient_id}/plans",
    operation_id="listPlans",
    summary="List a patient's plans",
    response_model=PlanPage,
    responses=responses(*ERRORS, NotFound),
)
async def list_plans(
    patient_id: uuid.UUID, session: SessionDep, caller: Reader, query: Annotated[PlanQuery, Query()]
) -> Response:
    """The patient's plans, newest first, each at its current version, a page at a time."""
    rows, cursor = await service.list_plans(session, caller, patient_id, query)
    items = [await service.plan_public(session, row) for row in rows]
    body = rendered_json({"items": items, "next_cursor": cursor})
    return Response(body, media_type="application/json")


@router.get(
    "/v1/plans/{plan_id}",
    operation_id="getPlan",
    summary="Get a plan",
    response_model=PlanPublic,
    responses={**NOT_MODIFIED, **responses(*ERRORS, NotFound)},
)
async def get_plan(
    plan_id: uuid.UUID, session: SessionDep, caller: Reader, if_none_match: IfNoneMatch = None
) -> Response:
    """One plan at its current version, with its ETag (send it as `If-Match` to change the
    plan)."""
    plan = await service.read_plan(session, caller, plan_id)
    body = rendered_json(await service.plan_public(session, plan))
    return conditional_json(body, service.plan_etag(plan), if_none_match, PRIVATE)


@router.patch(
    "/v1/plans/{plan_id}",
    operation_id="updatePlan",
    summary="Change a plan (a new version)",
    response_model=PlanPublic,
    responses={
        **written(200),
        **responses(*ERRORS, NotFound, Conflict, PreconditionFailed, PreconditionRequired),
    },
)
async def update_plan(
    plan_id: uuid.UUID,
    body: PlanUpdate,
    session: SessionDep,
    caller: Writer,
    if_match: IfMatch = None,
) -> Response:
    """Needs `If-Match` (428 without it, 412 when stale). Status moves draft → active →
    paused / completed / cancelled (409 otherwise); at most one active plan per patient;
    a plan without items cannot be activated."""
    plan = await service.update_plan(session, caller, plan_id, body, if_match)
    return _json(await service.plan_public(session, plan), service.plan_etag(plan))


@router.get(
    "/v1/plans/{plan_id}/versions",
    operation_id="listPlanVersions",
    summary="List a plan's versions",
    response_model=PlanVersionPage,
    responses=responses(*ERRORS, NotFound),
)
async def list_plan_versions(
    plan_id: uuid.UUID,
    session: SessionDep,
    caller: Reader,
    query: Annotated[PageQuery, Query()],
) -> PlanVersionPage:
    """Every version the plan has had, oldest first: version 1 is the plan as created, and
    each change made another. Adherence names the version it was done under."""
    items, cursor = await service.list_versions(session, caller, plan_id, query)
    return PlanVersionPage(items=items, next_cursor=cursor)


@router.get(
    "/v1/plans/{plan_id}/versions/{number}",
    operation_id="getPlanVersion",
    summary="Get one version of a plan",
    response_model=PlanVersionPublic,
    responses=responses(*ERRORS, NotFound),
)
async def get_plan_version(
    plan_id: uuid.UUID,
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: SessionDep,
    caller: Reader,
) -> PlanVersionPublic:
    """The plan as it was at version `number`: versions never change once made."""
    return await service.get_version(session, caller, plan_id, number)
