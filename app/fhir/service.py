"""Reading Dorsi's data for the FHIR facade: reads and searches, scoped to the caller's
clinic (another clinic's id is a missing id) and audited as the REST API audits them.

Searches page by keyset, like every Dorsi list: `_cursor` is the position after the last
entry of the previous page, so a page never repeats or skips an entry that stays put.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, select, tuple_
from sqlmodel import col
from sqlmodel import select as select_models
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import QueryParams

from app.adherence import records
from app.adherence.models import AdherenceRecord
from app.audit import service as audit
from app.auth.principal import Caller
from app.core.db import execute, table_of
from app.core.errors import NotFound
from app.core.pagination import cursor_time, decode_cursor, invalid_cursor, split_page
from app.exercises import service as exercises
from app.exercises.models import Exercise
from app.fhir import codes, resources, search
from app.fhir.resources import Resource
from app.patients import service as patients
from app.patients.models import Patient
from app.plans import service as plans
from app.plans.models import Plan, PlanVersion
from app.plans.schemas import PlanPublic

PATIENTS = table_of(Patient)
PLANS = table_of(Plan)
RECORDS = table_of(AdherenceRecord)
VERSIONS = table_of(PlanVersion)
EXERCISES = table_of(Exercise)

PLAN_STATUS = {fhir: dorsi for dorsi, fhir in codes.CARE_PLAN_STATUS.items()}
SEARCHES: dict[str, tuple[str, ...]] = {
    "Patient": ("identifier", "_lastUpdated"),
    "CarePlan": ("patient", "status", "_lastUpdated"),
    "Procedure": ("patient", "date", "based-on", "_lastUpdated"),
    "Observation": ("patient", "code", "date", "_lastUpdated"),
    "ActivityDefinition": ("status", "title", "_lastUpdated"),
}


def _id(value: str, kind: str) -> uuid.UUID:
    """A FHIR id of Dorsi's (a UUID); anything else names nothing."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"No {kind} {value!r}.") from None


# ------------------------------------------------------------------------------ reads


async def read_activity_definition(
    session: AsyncSession, caller: Caller, exercise_id: str
) -> Resource:
    exercise = await exercises.find(
        session, caller.clinic_id, str(_id(exercise_id, "ActivityDefinition"))
    )
    public = exercises.to_public(exercise, await exercises.variants(session, [exercise]))
    return resources.activity_definition(public)


async def read_plan_definition(session: AsyncSession, caller: Caller, template_id: str) -> Resource:
    template = await plans.get_template(
        session, caller.clinic_id, _id(template_id, "PlanDefinition")
    )
    return resources.plan_definition(await plans.template_public(session, template))


async def read_patient(session: AsyncSession, caller: Caller, patient_id: str) -> Resource:
    return resources.patient(await patients.read(session, caller, _id(patient_id, "Patient")))


async def read_care_plan(
    session: AsyncSession, caller: Caller, plan_id: str, version: int | None = None
) -> Resource:
    """The plan now, or at one of its versions (`_history/{vid}`)."""
    found = _id(plan_id, "CarePlan")
    if version is None:
        plan = await plans.read_plan(session, caller, found)
        version = plan.version
    else:
        await plans.get_version(session, caller, found, version)
    rendered = await plans.plans_at(session, caller.clinic_id, {(found, version)})
    return resources.care_plan(PlanPublic.model_validate(rendered[(found, version)]))


async def read_procedure(session: AsyncSession, caller: Caller, record_id: str) -> Resource:
    record = await records.read(session, caller, _id(record_id, "Procedure"))
    public = records.public(record)
    versions = await performed(session, caller.clinic_id, [public])
    return resources.procedure(public, versions[record.plan_id, record.plan_version])


async def read_observation(session: AsyncSession, caller: Caller, record_id: str) -> Resource:
    found = _id(record_id, "Observation")
    record = await records.load(session, caller, found)
    if record.pain is None:
        raise NotFound(f"No Observation {record_id!r}.")
    await audit.record(session, caller, "read", "adherence_record", record.id, record.patient_id)
    return resources.observation(records.public(record))


Versions = dict[tuple[uuid.UUID, int], resources.Performed]


async def performed(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    done: Sequence[Mapping[str, Any]],
    known: Versions | None = None,
) -> Versions:
    """What each record's plan version says in its Procedure (`resources.performed`), by
    (plan, version), for the records ``done`` (as `records.render` renders them): two
    queries, however many records, and none for versions ``known`` holds already (which
    it is, filled: versions never change, so an export keeps one for all its batches)."""
    known = {} if known is None else known
    wanted = {(r["plan_id"], r["plan_version"]) for r in done}.difference(known)
    if not wanted:
        return known
    versions = await execute(
        session,
        select(VERSIONS.c.plan_id, VERSIONS.c.number, VERSIONS.c["items"]).where(
            VERSIONS.c.clinic_id == clinic_id,
            tuple_(VERSIONS.c.plan_id, VERSIONS.c.number).in_(sorted(wanted)),
        ),
    )
    # Each version's items' exercises, by item id (a UUID, as each record names its item).
    items = {
        (row.plan_id, row.number): {
            uuid.UUID(item["id"]): uuid.UUID(item["exercise_id"]) for item in row._mapping["items"]
        }
        for row in versions
    }
    named = await execute(
        session,
        select(EXERCISES.c.id, EXERCISES.c.name).where(
            EXERCISES.c.id.in_({e for exercises in items.values() for e in exercises.values()})
        ),
    )
    # One per exercise, shared by the items that name it.
    said = {row.id: resources.exercised(row.id, row.name) for row in named}
    for plan_id, number in wanted:
        exercises = items.get((plan_id, number), {})
        known[plan_id, number] = resources.performed(
            plan_id, number, {item: said[e] for item, e in exercises.items() if e in said}
        )
    return known


# --------------------------------------------------------------------------- searches


@dataclass
class SearchPage:
    """One page of a search: the resources, and the cursor of the next page (None: last)."""

    resources: list[Resource]
    next_cursor: str | None


Key = list[Any]


def _after_id(statement: Select[Any], column: Any, cursor: str | None) -> Select[Any]:
    if cursor is None:
        return statement
    (last,) = decode_cursor(cursor, 1)
    try:
        return statement.where(column > uuid.UUID(str(last)))
    except ValueError:
        raise invalid_cursor() from None


def _patient_param(params: QueryParams) -> uuid.UUID | None:
    value = search.single(params, "patient")
    return None if value is None else search.reference(value, "Patient", "patient")


def _live_patient() -> ColumnElement[bool]:
    return PATIENTS.c.deleted_at.is_(None)


async def search_patients(
    session: AsyncSession, caller: Caller, params: QueryParams, limit: int
) -> SearchPage:
    statement = select(PATIENTS).where(PATIENTS.c.clinic_id == caller.clinic_id, _live_patient())
    identifier = search.single(params, "identifier")
    if identifier is not None:
        system, bar, value = identifier.rpartition("|")
        if bar and system and system != resources.patient_system(caller.clinic_id):
            return SearchPage([], None)  # another system's identifiers: none of ours
        statement = statement.where(PATIENTS.c.reference == value)
    statement = statement.where(
        *search.instant_filters(PATIENTS.c.updated_at, search.bounds(params, "_lastUpdated"))
    )
    statement = _after_id(statement, PATIENTS.c.id, search.single(params, "_cursor"))
    found = list(await execute(session, statement.order_by(PATIENTS.c.id).limit(limit + 1)))
    rows, cursor = split_page(found, limit, lambda row: [str(row.id)])
    await audit.record_many(session, caller, "list", "patient", [(r.id, r.id) for r in rows])
    return SearchPage([resources.patient(Patient.model_validate(r._mapping)) for r in rows], cursor)


async def search_care_plans(
    session: AsyncSession, caller: Caller, params: QueryParams, limit: int
) -> SearchPage:
    statement = (
        select(PLANS.c.id, PLANS.c.version, PLANS.c.patient_id)
        .join(
            PATIENTS,
            (PATIENTS.c.clinic_id == PLANS.c.clinic_id) & (PATIENTS.c.id == PLANS.c.patient_id),
        )
        .where(PLANS.c.clinic_id == caller.clinic_id, _live_patient())
    )
    patient_id = _patient_param(params)
    if patient_id is not None:
        statement = statement.where(PLANS.c.patient_id == patient_id)
    status = search.single(params, "status")
    if status is not None:
        wanted = search.one_of(status, "status", [*PLAN_STATUS, "unknown", "entered-in-error"])
        statement = statement.where(
            PLANS.c.status.in_([PLAN_STATUS[s] for s in wanted if s in PLAN_STATUS])
        )
    statement = statement.where(
        *search.instant_filters(PLANS.c.updated_at, search.bounds(params, "_lastUpdated"))
    )
    statement = _after_id(statement, PLANS.c.id, search.single(params, "_cursor"))
    found = list(await execute(session, statement.order_by(PLANS.c.id).limit(limit + 1)))
    rows, cursor = split_page(found, limit, lambda row: [str(row.id)])
    rendered = await plans.plans_at(session, caller.clinic_id, {(r.id, r.version) for r in rows})
    await audit.record_many(session, caller, "list", "plan", [(r.id, r.patient_id) for r in rows])
    return SearchPage(
        [resources.care_plan(PlanPublic.model_validate(rendered[(r.id, r.version)])) for r in rows],
        cursor,
    )


def _records(caller: Caller, params: QueryParams) -> Select[Any]:
    """The live records of the clinic's live patients matching what every adherence
    search takes (patient, date, _lastUpdated), newest session first."""
    statement = (
        select(*records.COLUMNS)
        .join(
            PATIENTS,
            (PATIENTS.c.clinic_id == RECORDS.c.clinic_id) & (PATIENTS.c.id == RECORDS.c.patient_id),
        )
        .where(
            RECORDS.c.clinic_id == caller.clinic_id,
            RECORDS.c.deleted_at.is_(None),
            _live_patient(),
        )
    )
    patient_id = _patient_param(params)
    if patient_id is not None:
        statement = statement.where(RECORDS.c.patient_id == patient_id)
    statement = statement.where(
        *search.session_filters(
            RECORDS.c.performed_at, RECORDS.c.performed_on, search.bounds(params, "date")
        ),
        *search.instant_filters(RECORDS.c.updated_at, search.bounds(params, "_lastUpdated")),
    )
    cursor = search.single(params, "_cursor")
    if cursor is not None:
        performed, last = decode_cursor(cursor, 2)
        try:
            position = (cursor_time(performed), uuid.UUID(str(last)))
        except ValueError:
            raise invalid_cursor() from None
        statement = statement.where(tuple_(RECORDS.c.performed_at, RECORDS.c.id) < position)
    return statement.order_by(RECORDS.c.performed_at.desc(), RECORDS.c.id.desc())


def _record_key(row: Any) -> Key:
    return [row.performed_at.isoformat(), str(row.id)]


async def search_procedures(
    session: AsyncSession, caller: Caller, params: QueryParams, limit: int
) -> SearchPage:
    statement = _records(caller, params)
    based_on = search.single(params, "based-on")
    if based_on is not None:
        plan_ref = based_on.split("/_history/")[0]
        statement = statement.where(
            RECORDS.c.plan_id == search.reference(plan_ref, "CarePlan", "based-on")
        )
    found: list[Any] = list(await execute(session, statement.limit(limit + 1)))
    rows, cursor = split_page(found, limit, _record_key)
    public = [records.render(row._mapping) for row in rows]
    versions = await performed(session, caller.clinic_id, public)
    await audit.record_many(
        session, caller, "list", "adherence_record", [(r.id, r.patient_id) for r in rows]
    )
    return SearchPage(
        [resources.procedure(r, versions[r["plan_id"], r["plan_version"]]) for r in public],
        cursor,
    )


async def search_observations(
    session: AsyncSession, caller: Caller, params: QueryParams, limit: int
) -> SearchPage:
    statement = _records(caller, params).where(RECORDS.c.pain.is_not(None))
    code = search.single(params, "code")
    if code is not None:
        alternatives = code.split(",")
        if not any(
            a in (codes.PAIN_CODE, f"{codes.LOINC}|{codes.PAIN_CODE}") for a in alternatives
        ):
            return SearchPage([], None)  # Dorsi observes pain only
    found: list[Any] = list(await execute(session, statement.limit(limit + 1)))
    rows, cursor = split_page(found, limit, _record_key)
    await audit.record_many(
        session, caller, "list", "adherence_record", [(r.id, r.patient_id) for r in rows]
    )
    return SearchPage([resources.observation(records.render(r._mapping)) for r in rows], cursor)


async def search_activity_definitions(
    session: AsyncSession, caller: Caller, params: QueryParams, limit: int
) -> SearchPage:
    statement: Any = select_models(Exercise).where(exercises.visible_to(caller.clinic_id))
    status = search.single(params, "status")
    if status is not None:
        wanted = search.one_of(status, "status", ["draft", "active", "retired", "unknown"])
        if "active" not in wanted:
            return SearchPage([], None)  # every exercise served is active
    title = search.single(params, "title")
    if title is not None:
        # FHIR string search: case-insensitive, from the start of the title.
        statement = statement.where(col(Exercise.name).istartswith(title, autoescape=True))
    statement = statement.where(
        *search.instant_filters(col(Exercise.updated_at), search.bounds(params, "_lastUpdated"))
    )
    statement = _after_id(statement, col(Exercise.id), search.single(params, "_cursor"))
    found = list(await session.exec(statement.order_by(col(Exercise.id)).limit(limit + 1)))
    rows, cursor = split_page(found, limit, lambda row: [str(row.id)])
    refs = await exercises.variants(session, rows)
    return SearchPage(
        [resources.activity_definition(exercises.to_public(row, refs)) for row in rows], cursor
    )


SEARCHERS = {
    "Patient": search_patients,
    "CarePlan": search_care_plans,
    "Procedure": search_procedures,
    "Observation": search_observations,
    "ActivityDefinition": search_activity_definitions,
}


async def run_search(
    session: AsyncSession, caller: Caller, kind: str, params: QueryParams
) -> SearchPage:
    search.check_names(params, SEARCHES[kind])
    limit = search.count(params)
    prefixes = ("gt", "ge", "lt", "le")
    search.bounds(params, "_lastUpdated", prefixes=prefixes)  # checked before any query
    return await SEARCHERS[kind](session, caller, params, limit)
