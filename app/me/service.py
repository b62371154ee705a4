"""The patient's own view, computed in the patient's time zone."""

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth.principal import Caller
from app.core.errors import NotFound
from app.me.schemas import Me
from app.patients.models import Patient, Side
from app.plans.models import Plan, PlanStatus


async def _patient(session: AsyncSession, caller: Caller) -> Patient:
    patient = await session.get(Patient, (caller.principal.clinic_id, caller.principal.patient_id))
    if patient is None or patient.deleted_at is not None:
        raise NotFound("No such patient.")
    return patient


async def me(session: AsyncSession, caller: Caller) -> Me:
    patient = await _patient(session, caller)
    await audit.record(session, caller, "read", "patient", patient.id, patient.id)
    today = datetime.now(ZoneInfo(patient.time_zone)).date()
    return Me(
        id=patient.id,
        affected_side=Side(patient.affected_side),
        time_zone=patient.time_zone,
        today=today,
    )


async def active_plan(
    session: AsyncSession, clinic_id: uuid.UUID, patient_id: uuid.UUID
) -> Plan | None:
    found = await session.exec(
        select(Plan).where(
            Plan.clinic_id == clinic_id,
            Plan.patient_id == patient_id,
            Plan.status == PlanStatus.active,
        )
    )
    return found.first()
