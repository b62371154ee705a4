"""The patient's own view, computed in the patient's time zone."""

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app.audit import service as audit
from app.auth.principal import Caller
from app.core.errors import NotFound
from app.exercises.models import Exercise
from app.me.schemas import Me, Today, TodayExercise, TodayItem
from app.patients.models import Patient, Side
from app.plans.models import Plan, PlanStatus, PlanVersion


def _patient(session: Session, caller: Caller) -> Patient:
    patient = session.get(Patient, caller.principal.patient_id)
    if patient is None or patient.deleted_at is not None:
        raise NotFound("No such patient.")
    return patient


def me(session: Session, caller: Caller) -> Me:
    patient = _patient(session, caller)
    audit.record(session, caller, "read", "patient", patient.id, patient.id)
    today = datetime.now(ZoneInfo(patient.time_zone)).date()
    return Me(
        id=patient.id,
        affected_side=Side(patient.affected_side),
        time_zone=patient.time_zone,
        today=today,
    )


def active_plan(session: Session, patient_id: uuid.UUID) -> tuple[Plan, PlanVersion] | None:
    row = session.exec(
        select(Plan, PlanVersion)
        .join(
            PlanVersion,
            (col(PlanVersion.plan_id) == Plan.id) & (col(PlanVersion.number) == Plan.version),
        )
        .where(Plan.patient_id == patient_id, Plan.status == PlanStatus.active)
    ).first()
    return (row[0], row[1]) if row else None


def today(session: Session, caller: Caller) -> Today:
    patient = _patient(session, caller)
    zone = ZoneInfo(patient.time_zone)
    day = datetime.now(zone).date()
    audit.record(session, caller, "read", "today", None, patient.id)
    found = active_plan(session, patient.id)
    if found is None:
        return Today(
            date=day, time_zone=patient.time_zone, plan_id=None, plan_version=None, items=[]
        )
    plan, version = found
    if day < version.start_date or (version.end_date is not None and day > version.end_date):
        return Today(
            date=day,
            time_zone=patient.time_zone,
            plan_id=plan.id,
            plan_version=version.number,
            items=[],
        )
    ids = {uuid.UUID(item["exercise_id"]) for item in version.items}
    exercises = {e.id: e for e in session.exec(select(Exercise).where(col(Exercise.id).in_(ids)))}
    weekday = day.isoweekday()
    items = []
    for order, item in enumerate(version.items, start=1):
        schedule = item["schedule"]
        days = schedule.get("days_of_week")
        if days is not None and weekday not in days:
            continue
        exercise = exercises[uuid.UUID(item["exercise_id"])]
        items.append(
            TodayItem(
                item_id=item["id"],
                order=order,
                exercise=TodayExercise(
                    id=exercise.id, slug=exercise.slug, name=exercise.name, steps=exercise.steps
                ),
                sets=item.get("sets"),
                reps=item.get("reps"),
                hold_seconds=item.get("hold_seconds"),
                rest_seconds=item.get("rest_seconds"),
                side=item.get("side"),
                resistance=item.get("resistance"),
                notes=item.get("notes"),
                times_per_day=schedule.get("times_per_day", 1),
                due="scheduled" if days is not None else "flexible",
                sessions_per_week=schedule.get("sessions_per_week"),
                recorded=[],
            )
        )
    return Today(
        date=day,
        time_zone=patient.time_zone,
        plan_id=plan.id,
        plan_version=version.number,
        items=items,
    )
