"""Plan templates and patients' plans: validation, versions, and their outbox changes.

Plans are patient data, so every plan read and write records an audit event too.
"""

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, or_, tuple_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth.principal import Caller
from app.core.columns import utcnow
from app.core.db import execute, table_of
from app.core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
)
from app.core.http import check_if_match
from app.core.pagination import (
    PageQuery,
    decode_cursor,
    invalid_cursor,
    number_position,
    split_page,
    time_key,
    time_position,
)
from app.exercises.models import Exercise
from app.patients import service as patients
from app.patients.models import Patient
from app.plans import in_force
from app.plans.models import (
    TRANSITIONS,
    Plan,
    PlanStatus,
    PlanTemplate,
    PlanVersion,
    Provenance,
)
from app.plans.schemas import (
    ExerciseBrief,
    PlanCreate,
    PlanItemIn,
    PlanItemPublic,
    PlanQuery,
    PlanUpdate,
    PlanVersionPublic,
    TemplateCopy,
    TemplateCreate,
    TemplateItemIn,
    TemplateItemPublic,
    TemplatePublic,
    TemplateUpdate,
)
from app.sync.outbox import record_change

# ---------------------------------------------------------------------------- items


async def _exercises(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Exercise]:
    if not ids:
        return {}
    return {e.id: e for e in await session.exec(select(Exercise).where(col(Exercise.id).in_(ids)))}


async def _check_exercises(
    session: AsyncSession, clinic_id: uuid.UUID, items: Sequence[TemplateItemIn]
) -> None:
    """Every item's exercise must be one the clinic can prescribe: global or its own, live."""
    found = await _exercises(session, {item.exercise_id for item in items})
    errors = [
        FieldError(
            location="body",
            pointer=f"#/items/{index}/exercise_id",
            detail="No such exercise in the catalog or the clinic's own exercises.",
        )
        for index, item in enumerate(items)
        if (exercise := found.get(item.exercise_id)) is None
        or exercise.deleted_at is not None
        or exercise.clinic_id not in (None, clinic_id)
    ]
    if errors:
        raise InvalidInput(errors)


def _stored(item: TemplateItemIn, item_id: uuid.UUID) -> dict[str, Any]:
    return {**item.model_dump(mode="json", exclude={"id"}), "id": str(item_id)}


DOSE = ("sets", "reps", "hold_seconds", "rest_seconds")


def sourced(item: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """The stored item with where its dose and schedule came from: each kept from the item
    it replaces (``before``) while unchanged, the clinician's otherwise; no dose source for
    an item without a dose."""
    has_dose = any(item.get(field) is not None for field in DOSE)
    same_dose = before is not None and all(item.get(f) == before.get(f) for f in DOSE)
    same_schedule = before is not None and item["schedule"] == before["schedule"]
    return {
        **item,
        "dose_source": (
            (before["dose_source"] if before is not None and same_dose else Provenance.clinician)
            if has_dose
            else None
        ),
        "schedule_source": (
            before["schedule_source"]
            if before is not None and same_schedule
            else Provenance.clinician
        ),
    }


def _sourced_by_exercise(
    items: list[dict[str, Any]], before: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`sourced` for a template's new items, each matched to the first unmatched earlier
    item of the same exercise (template items take new ids at each edit)."""
    left = list(before)
    result = []
    for item in items:
        match = next((b for b in left if b["exercise_id"] == item["exercise_id"]), None)
        if match is not None:
            left.remove(match)
        result.append(sourced(item, match))
    return result


async def _render_items(
    session: AsyncSession, items: list[dict[str, Any]], kind: type[PlanItemPublic]
) -> list[Any]:
    exercises = await _exercises(session, {uuid.UUID(item["exercise_id"]) for item in items})
    return _items(items, exercises, kind)


def _items(
    items: list[dict[str, Any]], exercises: dict[uuid.UUID, Exercise], kind: type[PlanItemPublic]
) -> list[Any]:
    """Stored items as their public schema, in order, each naming its exercise."""
    rendered = []
    for order, item in enumerate(items, start=1):
        exercise = exercises[uuid.UUID(item["exercise_id"])]
        brief = ExerciseBrief(id=exercise.id, slug=exercise.slug, name=exercise.name)
        rendered.append(kind.model_validate({**item, "order": order, "exercise": brief}))
    return rendered


# ------------------------------------------------------------------------ templates


async def _visible_template(
    session: AsyncSession, clinic_id: uuid.UUID, template_id: uuid.UUID
) -> PlanTemplate:
    found = await session.exec(
        select(PlanTemplate).where(
            PlanTemplate.id == template_id,
            or_(col(PlanTemplate.clinic_id).is_(None), col(PlanTemplate.clinic_id) == clinic_id),
            col(PlanTemplate.deleted_at).is_(None),
        )
    )
    template = found.first()
    if template is None:
        raise NotFound(f"No plan template {template_id}.")
    return template


def template_etag(template: PlanTemplate) -> str:
    return f'"{template.id}-{template.version}"'


async def template_public(session: AsyncSession, template: PlanTemplate) -> TemplatePublic:
    return TemplatePublic(
        id=template.id,
        name=template.name,
        description=template.description,
        owner="global" if template.clinic_id is None else "clinic",
        version=template.version,
        items=await _render_items(session, template.items, TemplateItemPublic),
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


async def list_templates(
    session: AsyncSession, clinic_id: uuid.UUID, query: PlanQuery
) -> tuple[list[PlanTemplate], str | None]:
    statement = select(PlanTemplate).where(
        or_(col(PlanTemplate.clinic_id).is_(None), col(PlanTemplate.clinic_id) == clinic_id),
        col(PlanTemplate.deleted_at).is_(None),
    )
    if query.cursor is not None:
        (last,) = decode_cursor(query.cursor, 1)
        try:
            statement = statement.where(col(PlanTemplate.id) > uuid.UUID(str(last)))
        except ValueError:
            raise invalid_cursor() from None
    found = await session.exec(statement.order_by(col(PlanTemplate.id)).limit(query.limit + 1))
    rows = list(found.all())
    return split_page(rows, query.limit, lambda row: [str(row.id)])


async def get_template(
    session: AsyncSession, clinic_id: uuid.UUID, template_id: uuid.UUID
) -> PlanTemplate:
    return await _visible_template(session, clinic_id, template_id)


async def create_template(
    session: AsyncSession, clinic_id: uuid.UUID, data: TemplateCreate
) -> PlanTemplate:
    await _check_exercises(session, clinic_id, data.items)
    template = PlanTemplate(
        clinic_id=clinic_id,
        name=data.name,
        description=data.description,
        items=[sourced(_stored(item, uuid.uuid4()), None) for item in data.items],
    )
    session.add(template)
    await session.flush()
    await _template_changed(session, clinic_id, template, "create")
    return template


async def _template_changed(
    session: AsyncSession, clinic_id: uuid.UUID, template: PlanTemplate, operation: str
) -> None:
    """The template's change for clinic sync, as `GET /v1/plan-templates/{id}` renders it
    (templates keep no earlier versions to render later)."""
    data = None
    if operation != "delete":
        data = (await template_public(session, template)).model_dump(mode="json")
    await record_change(
        session,
        clinic_id,
        "plan_template",
        template.id,
        operation,
        version=template.version,
        data=data,
    )


async def _own_template(
    session: AsyncSession, clinic_id: uuid.UUID, template_id: uuid.UUID
) -> PlanTemplate:
    template = await _visible_template(session, clinic_id, template_id)
    if template.clinic_id is None:
        raise Forbidden("The global template is read-only; copy it to make it your own.")
    return template


async def update_template(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    template_id: uuid.UUID,
    data: TemplateUpdate,
    if_match: str | None,
) -> PlanTemplate:
    template = await _own_template(session, clinic_id, template_id)
    check_if_match(if_match, template_etag(template), "template", required=False)
    if data.items is not None:
        await _check_exercises(session, clinic_id, data.items)
        template.items = _sourced_by_exercise(
            [_stored(item, uuid.uuid4()) for item in data.items], template.items
        )
    if data.name is not None:
        template.name = data.name
    if data.description is not None:
        template.description = data.description
    template.version += 1
    template.updated_at = utcnow()
    session.add(template)
    await _template_changed(session, clinic_id, template, "update")
    return template


async def delete_template(
    session: AsyncSession, clinic_id: uuid.UUID, template_id: uuid.UUID, if_match: str | None
) -> None:
    template = await _own_template(session, clinic_id, template_id)
    check_if_match(if_match, template_etag(template), "template", required=False)
    template.deleted_at = utcnow()
    session.add(template)
    await _template_changed(session, clinic_id, template, "delete")


async def copy_template(
    session: AsyncSession, clinic_id: uuid.UUID, template_id: uuid.UUID, data: TemplateCopy
) -> PlanTemplate:
    source = await _visible_template(session, clinic_id, template_id)
    copy = PlanTemplate(
        clinic_id=clinic_id,
        name=data.name or source.name,
        description=source.description,
        items=[{**item, "id": str(uuid.uuid4())} for item in source.items],
    )
    session.add(copy)
    await session.flush()
    await _template_changed(session, clinic_id, copy, "create")
    return copy


# ---------------------------------------------------------------------------- plans


def plan_etag(plan: Plan) -> str:
    return f'"{plan.id}-{plan.version}"'


async def _current(session: AsyncSession, plan: Plan) -> PlanVersion:
    found = await session.exec(
        select(PlanVersion).where(
            PlanVersion.clinic_id == plan.clinic_id,
            PlanVersion.plan_id == plan.id,
            PlanVersion.number == plan.version,
        )
    )
    return found.one()


async def plan_public(session: AsyncSession, plan: Plan) -> dict[str, Any]:
    """The plan as `GET /v1/plans/{id}` renders it: at its newest version (`plans_at`)."""
    return (await plans_at(session, plan.clinic_id, {(plan.id, plan.version)}))[
        (plan.id, plan.version)
    ]


async def version_public(
    session: AsyncSession, version: PlanVersion, term: in_force.Term[PlanVersion] | None
) -> PlanVersionPublic:
    """The version as the API shows it, with the days it governs (``term``, None if it
    governs none)."""
    governs = term is not None and (term.last is None or term.first <= term.last)
    return PlanVersionPublic(
        plan_id=version.plan_id,
        number=version.number,
        status=PlanStatus(version.status),
        title=version.title,
        notes=version.notes,
        start_date=version.start_date,
        end_date=version.end_date,
        items=await _render_items(session, version.items, PlanItemPublic),
        created_at=version.created_at,
        created_by=version.created_by,
        governs_from=term.first if term is not None and governs else None,
        governs_to=term.last if term is not None and governs else None,
    )


async def version_terms(session: AsyncSession, plan: Plan) -> dict[int, in_force.Term[PlanVersion]]:
    """The days each version of the plan governs (`app.plans.in_force`), by number."""
    patient = await session.get(Patient, (plan.clinic_id, plan.patient_id))
    assert patient is not None
    versions = await session.exec(
        select(PlanVersion)
        .where(PlanVersion.clinic_id == plan.clinic_id, PlanVersion.plan_id == plan.id)
        .order_by(col(PlanVersion.number))
    )
    found = in_force.terms(versions.all(), ZoneInfo(patient.time_zone))
    return {term.version.number: term for term in found}


async def plans_at(
    session: AsyncSession, clinic_id: uuid.UUID, wanted: set[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], dict[str, Any]]:
    """Each (plan, version number) of the clinic as `GET /v1/plans/{id}` rendered it when
    that version was the newest: versions are immutable, and the days a plan governs as
    of a version follow from the versions up to it, so every one stays renderable. Four
    queries, however many are wanted.

    Rendered straight from the rows, as PlanPublic's fields in its order (`_plan_public`),
    in Python values that `app.core.http.rendered_json` writes as PlanPublic's JSON: what
    the database holds was validated when it was written, and the test suite checks the
    rendering against the contract, so no version is validated again. The feed and the
    exports render a thousand at a time."""
    if not wanted:
        return {}
    plan_ids = sorted({plan_id for plan_id, _ in wanted})
    plans = {
        row.id: row
        for row in await execute(
            session,
            sa_select(*_PLAN_COLUMNS).where(
                _PLANS.c.id.in_(plan_ids), _PLANS.c.clinic_id == clinic_id
            ),
        )
    }
    versions = list(
        await execute(
            session,
            sa_select(*_VERSION_COLUMNS).where(
                tuple_(_VERSIONS.c.plan_id, _VERSIONS.c.number).in_(sorted(wanted)),
                _VERSIONS.c.clinic_id == clinic_id,
            ),
        )
    )
    briefs = await _briefs(session, {item["exercise_id"] for v in versions for item in v.items})
    spans = await _spans(session, clinic_id, plan_ids, wanted)
    rendered = {}
    for version in versions:
        key = (version.plan_id, version.number)
        rendered[key] = _plan_public(plans[version.plan_id], version, briefs, spans.get(key))
    return rendered


_VERSIONS = table_of(PlanVersion)
_PLANS = table_of(Plan)
_EXERCISES = table_of(Exercise)
_PLAN_COLUMNS = (_PLANS.c.id, _PLANS.c.patient_id, _PLANS.c.template_id, _PLANS.c.created_at)
_VERSION_COLUMNS = (
    _VERSIONS.c.plan_id,
    _VERSIONS.c.number,
    _VERSIONS.c.status,
    _VERSIONS.c.title,
    _VERSIONS.c.notes,
    _VERSIONS.c.start_date,
    _VERSIONS.c.end_date,
    _VERSIONS.c["items"],
    _VERSIONS.c.created_at,
)


async def _briefs(session: AsyncSession, ids: set[str]) -> dict[str, dict[str, Any]]:
    """ExerciseBrief's fields of each exercise, by its id as stored items name it."""
    if not ids:
        return {}
    named = {uuid.UUID(exercise_id): exercise_id for exercise_id in ids}
    found = await execute(
        session,
        sa_select(_EXERCISES.c.id, _EXERCISES.c.slug, _EXERCISES.c.name).where(
            _EXERCISES.c.id.in_(named)
        ),
    )
    return {named[row.id]: {"id": row.id, "slug": row.slug, "name": row.name} for row in found}


def _plan_public(
    plan: Any,
    version: Any,
    briefs: dict[str, dict[str, Any]],
    span: tuple[date, date | None] | None,
) -> dict[str, Any]:
    """A plan at a version: PlanPublic's fields, in its order."""
    return {
        "id": plan.id,
        "patient_id": plan.patient_id,
        "template_id": plan.template_id,
        "status": version.status,
        "version": version.number,
        "title": version.title,
        "notes": version.notes,
        "start_date": version.start_date,
        "end_date": version.end_date,
        "items": [
            _item_public(item, order, briefs[item["exercise_id"]])
            for order, item in enumerate(version.items, start=1)
        ],
        "created_at": plan.created_at,
        # A plan's updated_at is when its newest version was made.
        "updated_at": version.created_at,
        "governs_from": span[0] if span else None,
        "governs_to": span[1] if span else None,
    }


def _item_public(item: dict[str, Any], order: int, brief: dict[str, Any]) -> dict[str, Any]:
    """A stored item (as `_stored` and `sourced` made it: JSON values) as PlanItemPublic
    renders it: its fields, in its order, the dose's left out as null."""
    schedule = item["schedule"]
    days = schedule.get("days_of_week")
    return {
        "sets": item.get("sets"),
        "reps": item.get("reps"),
        "hold_seconds": item.get("hold_seconds"),
        "rest_seconds": item.get("rest_seconds"),
        "id": item["id"],
        "order": order,
        "exercise_id": item["exercise_id"],
        "exercise": dict(brief),
        "side": item["side"],
        "schedule": {
            "days_of_week": None if days is None else sorted(days),
            "sessions_per_week": schedule.get("sessions_per_week"),
            "times_per_day": schedule.get("times_per_day", 1),
        },
        "resistance": item["resistance"],
        "notes": item["notes"],
        "dose_source": item["dose_source"],
        "schedule_source": item["schedule_source"],
    }


_PATIENTS = table_of(Patient)
# Every version of some plans (no items), with the time zone of the plan's patient.
_HISTORIES = (
    sa_select(
        _VERSIONS.c.plan_id,
        _VERSIONS.c.number,
        _VERSIONS.c.status,
        _VERSIONS.c.start_date,
        _VERSIONS.c.end_date,
        _VERSIONS.c.created_at,
        _PATIENTS.c.time_zone,
    )
    .join(
        _PLANS, (_PLANS.c.clinic_id == _VERSIONS.c.clinic_id) & (_PLANS.c.id == _VERSIONS.c.plan_id)
    )
    .join(
        _PATIENTS,
        (_PATIENTS.c.clinic_id == _PLANS.c.clinic_id) & (_PATIENTS.c.id == _PLANS.c.patient_id),
    )
    .where(
        _VERSIONS.c.clinic_id == bindparam("clinic_id"),
        _VERSIONS.c.plan_id.in_(bindparam("plan_ids", expanding=True)),
    )
    .order_by(_VERSIONS.c.plan_id, _VERSIONS.c.number)
)


async def _spans(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    plan_ids: list[uuid.UUID],
    wanted: set[tuple[uuid.UUID, int]],
) -> dict[tuple[uuid.UUID, int], tuple[date, date | None] | None]:
    """The days each wanted (plan, version) governs as of that version (`in_force.span`
    over the versions up to it)."""
    histories: dict[uuid.UUID, list[Any]] = {}
    for row in await execute(session, _HISTORIES, {"clinic_id": clinic_id, "plan_ids": plan_ids}):
        histories.setdefault(row.plan_id, []).append(row)
    spans = {}
    for plan_id, number in wanted:
        history = [row for row in histories.get(plan_id, ()) if row.number <= number]
        if history:
            zone = ZoneInfo(history[0].time_zone)
            spans[(plan_id, number)] = in_force.span(in_force.terms(history, zone))
    return spans


def today_for(patient: Patient) -> date:
    return datetime.now(ZoneInfo(patient.time_zone)).date()


def _check_dates(start: date, end: date | None) -> None:
    if end is not None and end < start:
        raise InvalidInput(
            [FieldError(location="body", pointer="#/end_date", detail="Before start_date.")]
        )


def _plan_items(
    items: Sequence[PlanItemIn], patient: Patient, keep: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The items as stored; ``keep``, the current version's items by id, are those an item
    may name to stay the same item."""
    errors = [
        FieldError(
            location="body",
            pointer=f"#/items/{index}/id",
            detail="Not an item of this plan; leave `id` out for a new item.",
        )
        for index, item in enumerate(items)
        if item.id is not None and str(item.id) not in keep
    ]
    seen = [str(item.id) for item in items if item.id is not None]
    if len(seen) != len(set(seen)):
        errors.append(FieldError(location="body", pointer="#/items", detail="An id repeats."))
    if errors:
        raise InvalidInput(errors)
    stored = []
    for item in items:
        data = _stored(item, item.id or uuid.uuid4())
        data["side"] = data["side"] or patient.affected_side
        stored.append(sourced(data, keep.get(data["id"])))
    return stored


async def create_plan(
    session: AsyncSession, caller: Caller, patient_id: uuid.UUID, data: PlanCreate
) -> Plan:
    patient = await patients.load(session, caller, patient_id)
    clinic_id = caller.clinic_id
    if data.template_id is not None and data.items is not None:
        raise InvalidInput(
            [
                FieldError(
                    location="body",
                    pointer="#/items",
                    detail="Give template_id or items, not both.",
                )
            ]
        )
    title = data.title or "Home program"
    if data.template_id is not None:
        template = await _visible_template(session, clinic_id, data.template_id)
        title = data.title or template.name
        # A copy: later template edits don't touch the plan.
        items = [
            {**item, "id": str(uuid.uuid4()), "side": item.get("side") or patient.affected_side}
            for item in template.items
        ]
    else:
        given = data.items or []
        await _check_exercises(session, clinic_id, given)
        items = _plan_items([item.model_copy(update={"id": None}) for item in given], patient, {})
    start = data.start_date or today_for(patient)
    _check_dates(start, data.end_date)
    now = utcnow()
    plan = Plan(
        clinic_id=clinic_id,
        patient_id=patient.id,
        template_id=data.template_id,
        status=PlanStatus.draft,
        created_at=now,
        updated_at=now,
    )
    session.add(plan)
    await session.flush()
    session.add(
        PlanVersion(
            plan_id=plan.id,
            clinic_id=clinic_id,
            number=1,
            status=PlanStatus.draft,
            title=title,
            notes=data.notes,
            start_date=start,
            end_date=data.end_date,
            items=items,
            created_at=now,
            created_by=caller.principal.id,
        )
    )
    await record_change(session, clinic_id, "plan", plan.id, "create", version=1)
    await audit.record(session, caller, "create", "plan", plan.id, patient.id)
    return plan


async def load_plan(session: AsyncSession, caller: Caller, plan_id: uuid.UUID) -> Plan:
    found = await session.exec(
        select(Plan)
        .join(
            Patient,
            and_(col(Patient.clinic_id) == Plan.clinic_id, col(Patient.id) == Plan.patient_id),
        )
        .where(
            Plan.id == plan_id,
            Plan.clinic_id == caller.clinic_id,
            col(Patient.deleted_at).is_(None),
        )
    )
    plan = found.first()
    if plan is None:
        raise NotFound(f"No plan {plan_id}.")
    return plan


async def read_plan(session: AsyncSession, caller: Caller, plan_id: uuid.UUID) -> Plan:
    plan = await load_plan(session, caller, plan_id)
    await audit.record(session, caller, "read", "plan", plan.id, plan.patient_id)
    return plan


async def list_plans(
    session: AsyncSession, caller: Caller, patient_id: uuid.UUID, query: PlanQuery
) -> tuple[list[Plan], str | None]:
    patient = await patients.load(session, caller, patient_id)
    statement = select(Plan).where(
        Plan.clinic_id == patient.clinic_id, Plan.patient_id == patient.id
    )
    if query.status is not None:
        statement = statement.where(Plan.status == query.status)
    if query.cursor is not None:
        position = time_position(query.cursor)
        statement = statement.where(tuple_(col(Plan.created_at), col(Plan.id)) < position)
    statement = statement.order_by(col(Plan.created_at).desc(), col(Plan.id).desc())
    rows, cursor = split_page(
        list((await session.exec(statement.limit(query.limit + 1))).all()), query.limit, time_key
    )
    await audit.record(session, caller, "list", "plan", None, patient.id)
    return rows, cursor


async def update_plan(
    session: AsyncSession,
    caller: Caller,
    plan_id: uuid.UUID,
    data: PlanUpdate,
    if_match: str | None,
) -> Plan:
    plan = await load_plan(session, caller, plan_id)
    check_if_match(if_match, plan_etag(plan), "plan", required=True)
    current = await _current(session, plan)
    patient = await session.get(Patient, (plan.clinic_id, plan.patient_id))
    assert patient is not None
    status = PlanStatus(plan.status)
    target = data.status or status
    if target != status and target not in TRANSITIONS[status]:
        raise Conflict(f"A {status} plan cannot become {target}.")
    if status in (PlanStatus.completed, PlanStatus.cancelled):
        raise Conflict(f"A {status} plan cannot change.")
    items = current.items
    if data.items is not None:
        await _check_exercises(session, caller.clinic_id, data.items)
        items = _plan_items(data.items, patient, {item["id"]: item for item in current.items})
    if target == PlanStatus.active and not items:
        raise Conflict("A plan without items cannot be activated.")
    start = data.start_date or current.start_date
    end = data.end_date if "end_date" in data.model_fields_set else current.end_date
    _check_dates(start, end)
    new = PlanVersion(
        plan_id=plan.id,
        clinic_id=plan.clinic_id,
        number=plan.version + 1,
        status=target,
        title=data.title or current.title,
        notes=data.notes if "notes" in data.model_fields_set else current.notes,
        start_date=start,
        end_date=end,
        items=items,
        created_by=caller.principal.id,
    )
    unchanged = all(
        getattr(new, field) == getattr(current, field)
        for field in ("status", "title", "notes", "start_date", "end_date", "items")
    )
    if unchanged:
        await audit.record(session, caller, "read", "plan", plan.id, plan.patient_id)
        return plan
    try:
        async with session.begin_nested():
            # Compare-and-swap on the version: of two edits made from the same read, the
            # second finds the version moved on (its UPDATE waits for the first) and is a 412.
            swapped = await session.exec(
                update(Plan)
                .where(
                    col(Plan.clinic_id) == plan.clinic_id,
                    col(Plan.id) == plan.id,
                    col(Plan.version) == plan.version,
                )
                .values(version=new.number, status=target, updated_at=new.created_at)
                .execution_options(synchronize_session=False)
            )
            if swapped.rowcount != 1:
                raise PreconditionFailed("The plan changed since you read it; read it again.")
            session.add(new)
            await session.flush()
    except IntegrityError:
        # After the swap, only the one-active-plan-per-patient index can refuse the write.
        raise Conflict("The patient has another active plan; pause or end it first.") from None
    await session.refresh(plan)
    await record_change(session, plan.clinic_id, "plan", plan.id, "update", version=plan.version)
    await audit.record(session, caller, "update", "plan", plan.id, plan.patient_id)
    return plan


async def list_versions(
    session: AsyncSession, caller: Caller, plan_id: uuid.UUID, query: PageQuery
) -> tuple[list[PlanVersionPublic], str | None]:
    """A page of the plan's versions, oldest first, each with the days it governs."""
    plan = await read_plan(session, caller, plan_id)
    terms = await version_terms(session, plan)
    statement = select(PlanVersion).where(
        PlanVersion.clinic_id == plan.clinic_id, PlanVersion.plan_id == plan.id
    )
    if query.cursor is not None:
        statement = statement.where(col(PlanVersion.number) > number_position(query.cursor))
    found = await session.exec(statement.order_by(col(PlanVersion.number)).limit(query.limit + 1))
    rows, cursor = split_page(list(found.all()), query.limit, lambda version: [version.number])
    return [await version_public(session, row, terms.get(row.number)) for row in rows], cursor


async def get_version(
    session: AsyncSession, caller: Caller, plan_id: uuid.UUID, number: int
) -> PlanVersionPublic:
    plan = await read_plan(session, caller, plan_id)
    terms = await version_terms(session, plan)
    found = await session.exec(
        select(PlanVersion).where(
            PlanVersion.clinic_id == plan.clinic_id,
            PlanVersion.plan_id == plan.id,
            PlanVersion.number == number,
        )
    )
    version = found.first()
    if version is None:
        raise NotFound(f"Plan {plan_id} has no version {number}.")
    return await version_public(session, version, terms.get(number))
