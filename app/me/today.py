"""`/v1/me/today`, the patient app's most frequent call: what it reads and how it answers.

A request checks the token's session, reads the patient's active plan version and what is
already recorded on their local date, and writes an audit event. On PostgreSQL, requests
arriving together are answered by one statement (``BATCH_SQL``, see `app.me.endpoint`);
on SQLite, and whenever that path cannot answer, the route does the same work in one
transaction (`today`). Both render with `render`, so their answers are the same bytes.

Exercise names and steps are kept in process for a minute (DORSI_RESPONSE_CACHE_SECONDS):
an edit to a clinic's own exercise shows in "today" within that time.
"""

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Engine, and_, bindparam, insert, select
from sqlalchemy.engine import Connection

from app.adherence.models import AdherenceRecord
from app.audit.models import AuditEvent
from app.auth.models import ActorKind, AuthSession
from app.auth.security import Secrets
from app.core.columns import utcnow
from app.core.db import table_of
from app.core.errors import Forbidden, Unauthorized
from app.exercises.models import Exercise
from app.patients.models import Patient
from app.plans.models import Plan, PlanStatus, PlanVersion

AUDIT = {"actor_kind": ActorKind.patient.value, "action": "read", "resource_type": "today"}

# id, item_id, status, performed_at, utc_offset_minutes, sets_done, reps_done, pain
RecordRow = Sequence[Any]


@dataclass(slots=True)
class State:
    """One request's view: the patient, their plan version and what they recorded today."""

    time_zone: str
    day: date
    plan_id: uuid.UUID | None
    number: int | None
    start_date: date | None
    end_date: date | None
    items: list[dict[str, Any]] | None
    recorded: Sequence[RecordRow]

    def exercise_ids(self) -> set[str]:
        if not self.due_at_all():
            return set()
        return {item["exercise_id"] for item in self.items or ()}

    def due_at_all(self) -> bool:
        return not (
            self.plan_id is None
            or self.start_date is None
            or self.day < self.start_date
            or (self.end_date is not None and self.day > self.end_date)
        )


def render(state: State, exercises: dict[str, dict[str, Any]]) -> bytes:
    """The answer's JSON, from a request's state and the details of its exercises."""
    body: dict[str, Any] = {
        "date": state.day.isoformat(),
        "time_zone": state.time_zone,
        "plan_id": str(state.plan_id) if state.plan_id else None,
        "plan_version": state.number,
        "items": [],
    }
    if not state.due_at_all():
        return orjson.dumps(body)
    done: dict[str, list[dict[str, Any]]] = {}
    for record_id, item_id, status, performed_at, offset, sets, reps, pain in state.recorded:
        local = performed_at.astimezone(timezone(timedelta(minutes=offset)))
        done.setdefault(str(item_id), []).append(
            {
                "id": str(record_id),
                "status": status,
                # Spelled as the rest of the API spells it: UTC as "Z".
                "performed_at": local.isoformat().replace("+00:00", "Z"),
                "sets_done": sets,
                "reps_done": reps,
                "pain": pain,
            }
        )
    weekday = state.day.isoweekday()
    for order, item in enumerate(state.items or (), start=1):
        schedule = item["schedule"]
        days = schedule.get("days_of_week")
        if days is not None and weekday not in days:
            continue
        body["items"].append(
            {
                "item_id": item["id"],
                "order": order,
                "exercise": exercises[item["exercise_id"]],
                "sets": item.get("sets"),
                "reps": item.get("reps"),
                "hold_seconds": item.get("hold_seconds"),
                "rest_seconds": item.get("rest_seconds"),
                "side": item.get("side"),
                "resistance": item.get("resistance"),
                "notes": item.get("notes"),
                "times_per_day": schedule.get("times_per_day", 1),
                "due": "scheduled" if days is not None else "flexible",
                "sessions_per_week": schedule.get("sessions_per_week"),
                "recorded": done.get(item["id"], []),
            }
        )
    return orjson.dumps(body)


# --- exercise details, kept for a while -----------------------------------------------------

# By id as plan items spell it (a UUID's canonical text).
_exercises: dict[str, tuple[float, dict[str, Any]]] = {}
EXERCISE_SQL = "SELECT id, slug, name, steps FROM exercise WHERE id = ANY(%s::uuid[])"


def cached_exercises(ids: set[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The details of ``ids`` kept in process, and the ids that must be read again."""
    now = time.monotonic()
    found: dict[str, dict[str, Any]] = {}
    for exercise_id in ids:
        cached = _exercises.get(exercise_id)
        if cached is not None and cached[0] > now:
            found[exercise_id] = cached[1]
    return found, ids - found.keys()


def keep_exercises(
    rows: Iterable[Sequence[Any]], ttl: float, into: dict[str, dict[str, Any]]
) -> None:
    """Adds (id, slug, name, steps) rows to ``into``, and to the cache for ``ttl`` seconds."""
    expires = time.monotonic() + ttl
    for exercise_id, slug, name, steps in rows:
        key = str(exercise_id)
        entry = {"id": key, "slug": slug, "name": name, "steps": steps}
        into[key] = entry
        if ttl > 0:
            _exercises[key] = (expires, entry)


# --- PostgreSQL: many requests, one statement ------------------------------------------------

# Every request of the batch is a row of `request`; a row comes back for each whose token
# names a patient's session, with `valid` false (and no audit event) if that session was
# revoked or has expired or the patient was deleted. The local date is the database's own
# reading of the patient's time zone, so the records read are those of that date.
BATCH_SQL = """
WITH request AS (
    SELECT * FROM unnest(%(session_ids)s::uuid[], %(ips)s::varchar[], %(request_ids)s::varchar[])
        WITH ORDINALITY AS r (session_id, ip, request_id, n)
),
state AS (
    SELECT request.n, request.ip, request.request_id, s.clinic_id, s.patient_id,
           s.revoked_at IS NULL AND s.expires_at > now() AND p.deleted_at IS NULL AS valid,
           p.time_zone, (now() AT TIME ZONE p.time_zone)::date AS day,
           plan.id AS plan_id, v.number, v.start_date, v.end_date, v.items
    FROM request
    JOIN auth_session s ON s.id = request.session_id AND s.actor_kind = %(actor_kind)s
    JOIN patient p ON p.id = s.patient_id
    LEFT JOIN plan ON plan.patient_id = p.id AND plan.status = %(active)s
    LEFT JOIN plan_version v ON v.plan_id = plan.id AND v.number = plan.version
),
audit AS (
    INSERT INTO audit_event (clinic_id, occurred_at, actor_kind, actor_id, action,
                             resource_type, patient_id, ip, request_id)
    SELECT clinic_id, now(), %(actor_kind)s, patient_id, %(action)s, %(resource_type)s,
           patient_id, ip, request_id
    FROM state WHERE valid
)
SELECT state.n, state.valid, state.time_zone, state.day, state.plan_id, state.number,
       state.start_date, state.end_date, state.items,
       done.ids, done.item_ids, done.statuses, done.times, done.offsets, done.sets, done.reps,
       done.pains
FROM state
LEFT JOIN LATERAL (
    SELECT array_agg(r.id ORDER BY r.performed_at, r.id) AS ids,
           array_agg(r.item_id ORDER BY r.performed_at, r.id) AS item_ids,
           array_agg(r.status ORDER BY r.performed_at, r.id) AS statuses,
           array_agg(r.performed_at ORDER BY r.performed_at, r.id) AS times,
           array_agg(r.utc_offset_minutes ORDER BY r.performed_at, r.id) AS offsets,
           array_agg(r.sets_done ORDER BY r.performed_at, r.id) AS sets,
           array_agg(r.reps_done ORDER BY r.performed_at, r.id) AS reps,
           array_agg(r.pain ORDER BY r.performed_at, r.id) AS pains
    FROM adherence_record r
    WHERE state.valid AND r.clinic_id = state.clinic_id AND r.patient_id = state.patient_id
      AND r.performed_on = state.day AND r.deleted_at IS NULL
) done ON true
"""
BATCH_PARAMETERS = {**AUDIT, "active": PlanStatus.active.value}


def batch_state(row: Sequence[Any]) -> State:
    """A request's state from a row of BATCH_SQL."""
    _n, _valid, time_zone, day, plan_id, number, start_date, end_date, items, *done = row
    recorded = list(zip(*done, strict=True)) if done[0] is not None else []
    return State(time_zone, day, plan_id, number, start_date, end_date, items, recorded)


# --- SQLite, and the route when the batch cannot answer --------------------------------------


sessions, patients, plans = table_of(AuthSession), table_of(Patient), table_of(Plan)
versions, audit_events, records = (
    table_of(PlanVersion),
    table_of(AuditEvent),
    table_of(AdherenceRecord),
)
exercise_table = table_of(Exercise)

STATE = (
    select(
        sessions.c.clinic_id,
        sessions.c.patient_id,
        sessions.c.expires_at,
        sessions.c.revoked_at,
        patients.c.time_zone,
        patients.c.deleted_at,
        plans.c.id.label("plan_id"),
        versions.c.number,
        versions.c.start_date,
        versions.c.end_date,
        versions.c["items"],
    )
    .select_from(sessions)
    .join(patients, patients.c.id == sessions.c.patient_id)
    .outerjoin(
        plans,
        and_(plans.c.patient_id == patients.c.id, plans.c.status == PlanStatus.active.value),
    )
    .outerjoin(
        versions, and_(versions.c.plan_id == plans.c.id, versions.c.number == plans.c.version)
    )
    .where(
        sessions.c.id == bindparam("session_id", type_=sessions.c.id.type),
        sessions.c.actor_kind == ActorKind.patient.value,
    )
)
RECORDED = (
    select(
        records.c.id,
        records.c.item_id,
        records.c.status,
        records.c.performed_at,
        records.c.utc_offset_minutes,
        records.c.sets_done,
        records.c.reps_done,
        records.c.pain,
    )
    .where(
        records.c.clinic_id == bindparam("clinic_id", type_=records.c.clinic_id.type),
        records.c.patient_id == bindparam("patient_id", type_=records.c.patient_id.type),
        records.c.performed_on == bindparam("day", type_=records.c.performed_on.type),
        records.c.deleted_at.is_(None),
    )
    .order_by(records.c.performed_at, records.c.id)
)
EXERCISES = select(
    exercise_table.c.id, exercise_table.c.slug, exercise_table.c.name, exercise_table.c.steps
).where(exercise_table.c.id.in_(bindparam("ids", expanding=True)))


def session_id(secrets: Secrets, token: str | None) -> uuid.UUID:
    """The session a patient app's token names, or Unauthorized/Forbidden."""
    claims = secrets.read_access_token(token) if token else None
    if claims is None:
        raise (
            Unauthorized()
            if not token
            else Unauthorized("The access token is invalid or has expired.")
        )
    if claims.get("kind") != ActorKind.patient:
        raise Forbidden("Only a patient's app has a /v1/me.")
    try:
        return uuid.UUID(claims["sid"])
    except (ValueError, TypeError):
        raise Unauthorized("The access token is invalid.") from None


def today(
    engine: Engine,
    secrets: Secrets,
    token: str | None,
    ip: str | None,
    request_id: str | None,
    cache_seconds: float,
) -> bytes:
    """The patient's today as JSON bytes, in one transaction, or Unauthorized/Forbidden."""
    session = session_id(secrets, token)
    with engine.begin() as connection:
        row = connection.execute(STATE, {"session_id": session}).first()
        if (
            row is None
            or row.revoked_at is not None
            or row.expires_at <= utcnow()
            or row.deleted_at is not None
        ):
            raise Unauthorized("The access token has been revoked.")
        connection.execute(
            insert(audit_events).values(
                clinic_id=row.clinic_id,
                occurred_at=utcnow(),
                actor_id=row.patient_id,
                patient_id=row.patient_id,
                ip=ip,
                request_id=request_id,
                **AUDIT,
            )
        )
        day = datetime.now(ZoneInfo(row.time_zone)).date()
        state = State(
            row.time_zone, day, row.plan_id, row.number, row.start_date, row.end_date, row.items, []
        )
        if state.due_at_all():
            parameters = {"clinic_id": row.clinic_id, "patient_id": row.patient_id, "day": day}
            state.recorded = [tuple(r) for r in connection.execute(RECORDED, parameters)]
        return render(state, _exercise_details(connection, state.exercise_ids(), cache_seconds))


def _exercise_details(
    connection: Connection, ids: set[str], ttl: float
) -> dict[str, dict[str, Any]]:
    found, missing = cached_exercises(ids)
    if missing:
        wanted = [uuid.UUID(exercise_id) for exercise_id in missing]
        keep_exercises(connection.execute(EXERCISES, {"ids": wanted}), ttl, found)
    return found
