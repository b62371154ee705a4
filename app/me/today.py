"""`/v1/me/today`, the patient app's most frequent call, as one lean unit of work.

The token's session, the patient and the active plan version come back from one query,
and the audit event is one INSERT. On PostgreSQL the two are a single statement (a
data-modifying CTE, atomic on its own), so a request costs one round trip to the database.
Exercise names and steps are kept in process for a minute (DORSI_RESPONSE_CACHE_SECONDS):
an edit to a clinic's own exercise shows in "today" within that time.
"""

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    func,
    insert,
    literal,
    select,
)
from sqlmodel import SQLModel

from app.adherence.models import AdherenceRecord
from app.audit.models import AuditEvent
from app.auth.models import ActorKind, AuthSession
from app.auth.security import Secrets
from app.core.columns import utcnow
from app.core.errors import Forbidden, Unauthorized
from app.exercises.models import Exercise
from app.patients.models import Patient
from app.plans.models import Plan, PlanStatus, PlanVersion

_exercises: dict[uuid.UUID, tuple[float, dict[str, Any]]] = {}


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


sessions, patients, plans = _table(AuthSession), _table(Patient), _table(Plan)
versions, audit_events, exercise_table = _table(PlanVersion), _table(AuditEvent), _table(Exercise)
records = _table(AdherenceRecord)


def _state_query() -> Any:
    return (
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
            and_(
                plans.c.patient_id == patients.c.id,
                plans.c.status == PlanStatus.active.value,
            ),
        )
        .outerjoin(
            versions,
            and_(
                versions.c.plan_id == plans.c.id,
                versions.c.number == plans.c.version,
            ),
        )
        .where(
            sessions.c.id == bindparam("session_id", type_=sessions.c.id.type),
            sessions.c.actor_kind == ActorKind.patient.value,
        )
    )


AUDIT = {"actor_kind": ActorKind.patient.value, "action": "read", "resource_type": "today"}


def _postgresql_statement() -> Any:
    """The state query and the audit INSERT as one statement, built once."""
    state = _state_query().cte("state")
    valid = and_(
        state.c.revoked_at.is_(None),
        state.c.expires_at > func.now(),
        state.c.deleted_at.is_(None),
    )
    audit = (
        insert(audit_events)
        .from_select(
            ["clinic_id", "occurred_at", "actor_id", "patient_id", *AUDIT, "ip", "request_id"],
            select(
                state.c.clinic_id,
                func.now(),
                state.c.patient_id,
                state.c.patient_id,
                *(literal(value, audit_events.c[key].type) for key, value in AUDIT.items()),
                bindparam("ip", type_=audit_events.c.ip.type),
                bindparam("request_id", type_=audit_events.c.request_id.type),
            ).where(valid),
        )
        .cte("audit")
    )
    return select(state).add_cte(audit)


STATE = _state_query()
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
        records.c.patient_id == bindparam("patient_id", type_=records.c.patient_id.type),
        records.c.performed_on == bindparam("day", type_=records.c.performed_on.type),
        records.c.deleted_at.is_(None),
    )
    .order_by(records.c.performed_at)
)
STATE_AND_AUDIT = _postgresql_statement()


def _exercise_details(
    connection: Connection, ids: set[uuid.UUID], ttl: float
) -> dict[uuid.UUID, dict[str, Any]]:
    now = time.monotonic()
    found = {
        i: entry
        for i in ids
        if (cached := _exercises.get(i)) and (entry := cached[1]) and cached[0] > now
    }
    missing = ids - found.keys()
    if missing:
        table = exercise_table
        rows = connection.execute(
            select(table.c.id, table.c.slug, table.c.name, table.c.steps).where(
                table.c.id.in_(missing)
            )
        )
        for row in rows:
            entry = {"id": str(row.id), "slug": row.slug, "name": row.name, "steps": row.steps}
            found[row.id] = entry
            if ttl > 0:
                _exercises[row.id] = (now + ttl, entry)
    return found


def today(
    engine: Engine,
    autocommit_engine: Engine | None,
    secrets: Secrets,
    token: str | None,
    ip: str | None,
    request_id: str | None,
    cache_seconds: float,
) -> bytes:
    """The patient's today as JSON bytes, or Unauthorized/Forbidden/NotFound."""
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
        session_id = uuid.UUID(claims["sid"])
    except (ValueError, TypeError):
        raise Unauthorized("The access token is invalid.") from None

    if autocommit_engine is not None:
        # One statement, atomic by itself: no BEGIN or COMMIT round trips.
        with autocommit_engine.connect() as connection:
            parameters = {"session_id": session_id, "ip": ip, "request_id": request_id}
            row = connection.execute(STATE_AND_AUDIT, parameters).first()
            if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
                raise Unauthorized("The access token has been revoked.")
            if row.deleted_at is not None:
                raise Unauthorized("The access token has been revoked.")
            return _render(connection, row, cache_seconds)
    with engine.begin() as connection:
        row = connection.execute(STATE, {"session_id": session_id}).first()
        if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
            raise Unauthorized("The access token has been revoked.")
        if row.deleted_at is not None:
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
        return _render(connection, row, cache_seconds)


def _render(connection: Connection, row: Any, cache_seconds: float) -> bytes:
    day = datetime.now(ZoneInfo(row.time_zone)).date()
    body: dict[str, Any] = {
        "date": day.isoformat(),
        "time_zone": row.time_zone,
        "plan_id": str(row.plan_id) if row.plan_id else None,
        "plan_version": row.number,
        "items": [],
    }
    if row.plan_id is None or day < row.start_date or (row.end_date and day > row.end_date):
        return orjson.dumps(body)
    items = row.items
    exercises = _exercise_details(
        connection, {uuid.UUID(item["exercise_id"]) for item in items}, cache_seconds
    )
    done: dict[str, list[dict[str, Any]]] = {}
    for record in connection.execute(RECORDED, {"patient_id": row.patient_id, "day": day}):
        offset = timezone(timedelta(minutes=record.utc_offset_minutes))
        done.setdefault(str(record.item_id), []).append(
            {
                "id": str(record.id),
                "status": record.status,
                # Spelled as the rest of the API spells it: UTC as "Z".
                "performed_at": record.performed_at.astimezone(offset)
                .isoformat()
                .replace("+00:00", "Z"),
                "sets_done": record.sets_done,
                "reps_done": record.reps_done,
                "pain": record.pain,
            }
        )
    weekday = day.isoweekday()
    for order, item in enumerate(items, start=1):
        schedule = item["schedule"]
        days = schedule.get("days_of_week")
        if days is not None and weekday not in days:
            continue
        body["items"].append(
            {
                "item_id": item["id"],
                "order": order,
                "exercise": exercises[uuid.UUID(item["exercise_id"])],
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
