"""The patient's own view, computed in the patient's time zone."""

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth.principal import Caller
from app.core.errors import NotFound
from app.me.schemas import Me
from app.patients.models import Patient, Side
from app.plans.models import Plan, PlanStatus, PlanVersion


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
) -> tuple[Plan, PlanVersion] | None:
    row = (
        await session.exec(
            select(Plan, PlanVersion)
            .join(
                PlanVersion,
                (col(PlanVersion.clinic_id) == Plan.clinic_id)
                & (col(PlanVersion.plan_id) == Plan.id)
                & (col(PlanVersion.number) == Plan.version),
            )
            .where(
                Plan.clinic_id == clinic_id,
                Plan.patient_id == patient_id,
                Plan.status == PlanStatus.active,
            )
        )
    ).first()
    return (row[0], row[1]) if row else None
