"""Dorsi's resources as FHIR R4 resources (JSON), rendered from what the REST API's own
GETs render, so that the two never tell a different story. Pure functions: the service
reads, these only translate. The README's mapping table says what goes where.

A resource is what orjson writes as its JSON (every FHIR response and export is written
so): where an export makes a million of them, an id may stay a UUID and a time an aware
datetime, which orjson writes as `str` and `instant` would."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.exercises.schemas import ExercisePublic
from app.fhir import codes
from app.patients.models import Patient
from app.plans.schemas import PlanItemPublic, PlanPublic, Schedule, TemplatePublic

Resource = dict[str, Any]


def instant(moment: datetime) -> str:
    """A FHIR instant: with its offset (UTC if it was stored without one)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def meta(version: int, updated_at: datetime) -> dict[str, Any]:
    # The time as it is (aware, as Dorsi keeps every time): orjson, which writes every
    # FHIR response and export, writes it as `instant` would, without its cost per resource.
    return {"versionId": str(version), "lastUpdated": updated_at}


def patient_system(clinic_id: uuid.UUID) -> str:
    """The identifier system of a clinic's own patient references: one per clinic, since
    two clinics may give the same reference to different people."""
    return f"{codes.DORSI}/clinics/{clinic_id}/patient-reference"


def activity_url(exercise_id: uuid.UUID) -> str:
    return f"{codes.ACTIVITY_DEFINITION_URL}/{exercise_id}"


def plan_definition_url(template_id: uuid.UUID) -> str:
    return f"{codes.PLAN_DEFINITION_URL}/{template_id}"


def _therapy(text: str) -> dict[str, Any]:
    return {**codes.EXERCISE_THERAPY, "text": text}


def _drop_empty(resource: Resource) -> Resource:
    """FHIR forbids empty elements: no nulls, empty strings, lists or objects."""
    return {key: value for key, value in resource.items() if value not in (None, "", [], {})}


# ------------------------------------------------------------------------- the catalog


def _dose_text(
    sets: int | None, reps: int | None, hold: int | None, rest: int | None
) -> str | None:
    parts = []
    if sets is not None and reps is not None:
        parts.append(f"{sets} sets of {reps} repetitions")
    elif sets is not None:
        parts.append(f"{sets} sets")
    elif reps is not None:
        parts.append(f"{reps} repetitions")
    if hold is not None:
        parts.append(f"hold {hold} s")
    if rest is not None:
        parts.append(f"rest {rest} s between sets")
    return ", ".join(parts) or None


def _dose_extension(
    sets: int | None, reps: int | None, hold: int | None, rest: int | None
) -> list[dict[str, Any]]:
    """The dose in numbers (FHIR's Dosage counts amounts of a substance, not sets)."""
    parts = [
        {"url": name, "valueInteger": value}
        for name, value in (
            ("sets", sets),
            ("reps", reps),
            ("hold-seconds", hold),
            ("rest-seconds", rest),
        )
        if value is not None
    ]
    return [{"url": codes.DOSE_EXTENSION, "extension": parts}] if parts else []


def _weekly(sessions: int) -> dict[str, Any]:
    return {"repeat": {"frequency": sessions, "period": 1, "periodUnit": "wk"}}


def activity_definition(exercise: ExercisePublic) -> Resource:
    """A catalog exercise (global, or the clinic's own)."""
    steps = "\n".join(f"{number}. {step}" for number, step in enumerate(exercise.steps, 1))
    dose = exercise.default_dose
    dosage: list[dict[str, Any]] = []
    if dose is not None:
        text = _dose_text(dose.sets, dose.reps, dose.hold_seconds, dose.rest_seconds)
        if dose.each_side:
            text = f"{text}, on each side" if text else "On each side"
        if dose.sessions_per_week is not None:
            week = f"{dose.sessions_per_week} days a week"
            text = f"{text}, {week}" if text else week.capitalize()
        dosage.append(
            _drop_empty(
                {
                    "extension": _dose_extension(
                        dose.sets, dose.reps, dose.hold_seconds, dose.rest_seconds
                    ),
                    "text": text,
                    "timing": _weekly(dose.sessions_per_week)
                    if dose.sessions_per_week is not None
                    else None,
                }
            )
        )
    artifacts: list[dict[str, Any]] = []
    for reference in exercise.references:
        # The source article documents the exercise; the study it cites is a citation.
        if reference.kind == "journal_article":
            artifact = {"type": "citation", "citation": reference.citation}
        else:
            artifact = {"type": "documentation", "display": reference.citation}
        if reference.url:
            artifact["url"] = str(reference.url)
        artifacts.append(artifact)
    for kind, variant in (
        ("predecessor", exercise.easier_variant),
        ("successor", exercise.harder_variant),
    ):
        if variant is not None:
            artifacts.append(
                {
                    "type": kind,
                    "label": "easier variant" if kind == "predecessor" else "harder variant",
                    "display": variant.name,
                    "resource": activity_url(variant.id),
                }
            )
    for media in exercise.media:
        artifacts.append(
            _drop_empty({"type": "documentation", "display": media.caption, "url": str(media.url)})
        )
    return _drop_empty(
        {
            "resourceType": "ActivityDefinition",
            "id": str(exercise.id),
            "meta": meta(exercise.version, exercise.updated_at),
            "url": activity_url(exercise.id),
            "identifier": [{"system": f"{codes.DORSI}/exercise-slug", "value": exercise.slug}],
            "version": str(exercise.version),
            "title": exercise.name,
            "status": "active",
            "date": instant(exercise.updated_at),
            "description": f"{exercise.summary}\n\n{steps}",
            "usage": "\n".join(exercise.cautions),
            "relatedArtifact": artifacts,
            "kind": "ServiceRequest",
            "code": _therapy(exercise.name),
            "bodySite": [{"text": exercise.body_region.value}],
            "dosage": dosage,
        }
    )


# ------------------------------------------------------------------ templates and plans


def _schedule(schedule: Schedule) -> dict[str, Any]:
    """Weekdays: those days, `times_per_day` a day. A number of days a week: as often in a
    week in all (FHIR's Timing has no "days a week"), and the rule itself in `code.text`."""
    times = schedule.times_per_day
    if schedule.days_of_week is not None:
        days = [codes.WEEKDAYS[day - 1] for day in schedule.days_of_week]
        return {
            "repeat": {"dayOfWeek": days, "frequency": times, "period": 1, "periodUnit": "d"},
            "code": {"text": f"on {', '.join(days)}, {times} times a day"},
        }
    sessions = schedule.sessions_per_week or 0
    timing = _weekly(sessions * times)
    timing["code"] = {"text": f"{sessions} days a week, {times} times a day"}
    return timing


def _item_text(item: PlanItemPublic) -> str:
    parts = [_dose_text(item.sets, item.reps, item.hold_seconds, item.rest_seconds)]
    if item.resistance is not None:
        parts.append(f"{item.resistance.value} band")
    parts.append(f"side: {item.side.value}" if item.side else "side: the affected side")
    if item.notes:
        parts.append(item.notes)
    return "; ".join(part for part in parts if part)


def _item_extensions(item: PlanItemPublic, side_id: str | None) -> list[dict[str, Any]]:
    found = _dose_extension(item.sets, item.reps, item.hold_seconds, item.rest_seconds)
    if item.resistance is not None:
        found.append({"url": codes.RESISTANCE_EXTENSION, "valueCode": item.resistance.value})
    if side_id is not None:
        found.append(
            {"url": codes.BODY_SITE_EXTENSION, "valueReference": {"reference": f"#{side_id}"}}
        )
    return found


def plan_definition(template: TemplatePublic) -> Resource:
    """A plan template: an action per item, each defined by its ActivityDefinition."""
    actions = [
        _drop_empty(
            {
                "id": str(item.id),
                "title": item.exercise.name,
                "description": _item_text(item),
                "code": [_therapy(item.exercise.name)],
                "timingTiming": _schedule(item.schedule),
                "definitionCanonical": activity_url(item.exercise_id),
            }
        )
        for item in template.items
    ]
    return _drop_empty(
        {
            "resourceType": "PlanDefinition",
            "id": str(template.id),
            "meta": meta(template.version, template.updated_at),
            "url": plan_definition_url(template.id),
            "version": str(template.version),
            "title": template.name,
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                        "code": "clinical-protocol",
                    }
                ]
            },
            "status": "active",
            "date": instant(template.updated_at),
            "description": template.description,
            "action": actions,
        }
    )


def _period(plan: PlanPublic) -> Resource:
    """The days the plan governs, by Dorsi's one rule (`governs_from`/`governs_to`); for a
    plan that governs no day yet (a draft), the days it is meant to run."""
    start, end = plan.governs_from, plan.governs_to
    if start is None:
        start, end = plan.start_date, plan.end_date
    return _drop_empty({"start": start.isoformat(), "end": end.isoformat() if end else None})


def care_plan(plan: PlanPublic) -> Resource:
    """A plan at one version (`meta.versionId`): an activity per item. An item's side, when
    the plan names one, is a contained BodyStructure with its SNOMED CT laterality."""
    subject = {"reference": f"Patient/{plan.patient_id}"}
    contained: list[dict[str, Any]] = []
    activities = []
    for item in plan.items:
        side_id = None
        if item.side is not None:
            side_id = f"side-{item.order}"
            contained.append(
                {
                    "resourceType": "BodyStructure",
                    "id": side_id,
                    "locationQualifier": [{"coding": [codes.LATERALITY[item.side.value]]}],
                    "patient": subject,
                }
            )
        detail = _drop_empty(
            {
                "extension": _item_extensions(item, side_id),
                "instantiatesCanonical": [activity_url(item.exercise_id)],
                "code": _therapy(item.exercise.name),
                "status": codes.ACTIVITY_STATUS[plan.status.value],
                "scheduledTiming": _schedule(item.schedule),
                "description": _item_text(item),
            }
        )
        activities.append({"id": str(item.id), "detail": detail})
    return _drop_empty(
        {
            "resourceType": "CarePlan",
            "id": str(plan.id),
            "meta": meta(plan.version, plan.updated_at),
            "contained": contained,
            "instantiatesCanonical": [plan_definition_url(plan.template_id)]
            if plan.template_id
            else None,
            "status": codes.CARE_PLAN_STATUS[plan.status.value],
            "intent": "plan",
            "category": [_therapy("Home exercise program")],
            "title": plan.title,
            "description": plan.notes,
            "subject": subject,
            "period": _period(plan),
            "created": instant(plan.created_at),
            "activity": activities,
        }
    )


# ---------------------------------------------------------------------- patients


def patient(row: Patient) -> Resource:
    """Pseudonymous: the clinic's own reference, and nothing that names the person."""
    return {
        "resourceType": "Patient",
        "id": str(row.id),
        "meta": meta(row.version, row.updated_at),
        "identifier": [
            {"use": "usual", "system": patient_system(row.clinic_id), "value": row.reference}
        ],
        "active": True,
    }


# ----------------------------------------------------------------------- adherence


# What every session's Procedure says alike.
_SESSION = {**codes.EXERCISE_THERAPY, "text": "Home exercise session"}
_ANY_EXERCISE = {**codes.EXERCISE_THERAPY, "text": "Exercise therapy"}
_PARTIAL = {"text": "Partial session"}
_DONE = (
    ("sets_done", codes.SETS_DONE_EXTENSION),
    ("reps_done", codes.REPS_DONE_EXTENSION),
    ("hold_seconds", codes.HOLD_SECONDS_EXTENSION),
    ("effort", codes.EFFORT_EXTENSION),
)


# What a Procedure says of the exercise its item names: the canonical URL and the code.
Exercised = tuple[list[str], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Performed:
    """What the Procedures of a plan version's records say of that version, made once per
    version (an export's records share them, and nothing changes them): ``based_on`` the
    version's CarePlan, and for each item (by id) its exercise's canonical URL and code."""

    based_on: list[dict[str, str]]
    items: dict[uuid.UUID, Exercised]


def exercised(exercise_id: uuid.UUID, name: str) -> Exercised:
    return [activity_url(exercise_id)], _therapy(name)


def performed(plan_id: uuid.UUID, version: int, items: Mapping[uuid.UUID, Exercised]) -> Performed:
    """A plan version's `Performed`, from what each item's exercise says (``items``, by
    item id: an item whose exercise is unknown is left out)."""
    return Performed([{"reference": f"CarePlan/{plan_id}/_history/{version}"}], dict(items))


def procedure(record: Mapping[str, Any], plan: Performed) -> Resource:
    """An adherence record (as `app.adherence.records.render` renders it): the session
    done (`completed`), begun and stopped before the whole dose (a partial session:
    `stopped`), or not done (skipped: `not-done`, with the reason). ``plan``: what its
    plan version says (`performed`).

    Built element by element, leaving out what is empty (as `_drop_empty` would): an
    export renders a million of these."""
    status = record["status"]
    resource: Resource = {
        "resourceType": "Procedure",
        "id": record["id"],  # a UUID, and a time below: orjson writes both (see `meta`)
        "meta": meta(record["version"], record["updated_at"]),
    }
    extensions = [
        {"url": url, "valueInteger": record[field]}
        for field, url in _DONE
        if record[field] is not None
    ]
    if extensions:
        resource["extension"] = extensions
    exercise = plan.items.get(record["item_id"])
    if exercise:
        resource["instantiatesCanonical"] = exercise[0]
    resource["basedOn"] = plan.based_on
    resource["status"] = codes.PROCEDURE_STATUS[status]
    if status == "skipped":
        skip = record["skip_reason"] or "other"
        resource["statusReason"] = {
            "coding": [
                {
                    "system": codes.SKIP_REASON_SYSTEM,
                    "code": skip,
                    "display": codes.SKIP_REASONS[skip],
                }
            ],
            "text": codes.SKIP_REASONS[skip],
        }
    resource["category"] = _SESSION
    resource["code"] = exercise[1] if exercise else _ANY_EXERCISE
    resource["subject"] = {"reference": f"Patient/{record['patient_id']}"}
    # A skipped session too: when the patient recorded it, for the day it was due.
    resource["performedDateTime"] = record["performed_at"]
    if status == "partial":
        resource["outcome"] = _PARTIAL
    if record["note"]:
        resource["note"] = [{"text": record["note"]}]
    device = record["assistive_device"]
    if device in codes.DEVICES:
        resource["usedCode"] = [{"text": codes.DEVICES[device]}]
    return resource


def observation(record: Mapping[str, Any]) -> Resource:
    """The pain a session's record rated (0-10), part of that session's Procedure (the
    record as `app.adherence.records.render` renders it)."""
    return {
        "resourceType": "Observation",
        "id": record["id"],  # as in a Procedure
        "meta": meta(record["version"], record["updated_at"]),
        "partOf": [{"reference": f"Procedure/{record['id']}"}],
        "status": "final",
        "category": [codes.SURVEY],
        "code": codes.PAIN_SEVERITY,
        "subject": {"reference": f"Patient/{record['patient_id']}"},
        "effectiveDateTime": record["performed_at"],
        "valueInteger": record["pain"],
    }
