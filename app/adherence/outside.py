"""Stored adherence records outside their plan: dated on a day their plan version was not in
force (`app.plans.in_force`), as uploads now refuse. Records stored before that rule stay
as they are; `dorsi check-records` reports them, and nothing drops them.

Three kinds of statement, each in chunks: the live records counted by (plan, version,
local date); the versions of the plans they name, with the patient's time zone; and the
records of the groups found outside.
"""

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, tuple_
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence.models import AdherenceRecord
from app.core.db import execute, table_of
from app.patients.models import Patient
from app.plans import in_force
from app.plans.models import Plan, PlanVersion

CHUNK = 500
RECORDS, VERSIONS = table_of(AdherenceRecord), table_of(PlanVersion)
PLANS, PATIENTS = table_of(Plan), table_of(Patient)


@dataclass(frozen=True, slots=True)
class Outside:
    """A stored record outside its plan, with the field at fault and why."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    plan_id: uuid.UUID
    plan_version: int
    performed_on: date
    field: str
    reason: str


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


async def outside_records(
    session: AsyncSession, clinic_id: uuid.UUID | None = None
) -> list[Outside]:
    """The live records (of one clinic, or of all) outside their plan, by plan, version,
    local date and id."""
    record = RECORDS.c
    groups = select(record.plan_id, record.plan_version, record.performed_on).where(
        record.deleted_at.is_(None)
    )
    if clinic_id is not None:
        groups = groups.where(record.clinic_id == clinic_id)
    groups = groups.group_by(record.plan_id, record.plan_version, record.performed_on)
    named = [tuple(row) for row in await execute(session, groups)]
    plan_ids = sorted({row[0] for row in named})

    terms: dict[uuid.UUID, dict[int, in_force.Term[Any]]] = {}
    version = VERSIONS.c
    statement = (
        select(
            version.plan_id,
            version.number,
            version.created_at,
            version.status,
            version.start_date,
            version.end_date,
            PATIENTS.c.time_zone,
        )
        .join(PLANS, PLANS.c.id == version.plan_id)
        .join(PATIENTS, PATIENTS.c.id == PLANS.c.patient_id)
        .where(version.plan_id.in_(bindparam("plan_ids", expanding=True)))
        .order_by(version.plan_id, version.number)
    )
    for chunk in _chunks(plan_ids):
        histories: dict[uuid.UUID, list[Any]] = {}
        for row in await execute(session, statement, {"plan_ids": list(chunk)}):
            histories.setdefault(row.plan_id, []).append(row)
        for plan_id, history in histories.items():
            zone = ZoneInfo(history[0].time_zone)
            terms[plan_id] = {t.version.number: t for t in in_force.terms(history, zone)}

    why: dict[tuple[uuid.UUID, int, date], tuple[str, str]] = {}
    for plan_id, number, day in named:
        found = in_force.outside(terms.get(plan_id, {}), number, day)
        if found is not None:
            why[(plan_id, number, day)] = found
    if not why:
        return []
    key = tuple_(record.plan_id, record.plan_version, record.performed_on)
    records = select(
        record.id,
        record.clinic_id,
        record.patient_id,
        record.plan_id,
        record.plan_version,
        record.performed_on,
    ).where(record.deleted_at.is_(None), key.in_(bindparam("keys", expanding=True)))
    found_records: list[Outside] = []
    for chunk in _chunks(sorted(why)):
        for row in await execute(session, records, {"keys": list(chunk)}):
            field, reason = why[(row.plan_id, row.plan_version, row.performed_on)]
            found_records.append(
                Outside(
                    row.id,
                    row.clinic_id,
                    row.patient_id,
                    row.plan_id,
                    row.plan_version,
                    row.performed_on,
                    field,
                    reason,
                )
            )
    found_records.sort(key=lambda o: (str(o.plan_id), o.plan_version, o.performed_on, str(o.id)))
    return found_records
