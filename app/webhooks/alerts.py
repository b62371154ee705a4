"""Clinical alerts, each fired once per occurrence and queued like any event:

- `adherence.below_threshold` when a patient's 7-day adherence (the overview's figure)
  first drops under the clinic's threshold, and `adherence.recovered` when it is back at
  or above it. The last state announced is kept per patient (`AdherenceAlertState`); a
  state moves only by a conditional write, so two workers evaluating the same patient
  announce the move once.
- `pain.reported_high` when an adherence record is created with pain at or above the
  clinic's `pain_alert_at`, or corrected up to it from below. The records' changes are
  followed through the change feed from a per-clinic cursor (`AlertCursor`), moved in the
  same transaction as the alerts it causes; on PostgreSQL a worker skips a clinic whose
  cursor another worker holds.
"""

import uuid
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Insert, Integer, and_, bindparam, false, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence import records
from app.adherence.models import AdherenceRollup
from app.adherence.rollups import ClinicSettings
from app.core.db import dialect_of, execute, table_of
from app.core.http import rendered_json
from app.core.pagination import encode_cursor
from app.sync.models import Change
from app.webhooks.fanout import NEWEST_CHANGE
from app.webhooks.models import AdherenceAlertState, AlertCursor, WebhookDelivery, WebhookEndpoint
from app.webhooks.schemas import subscribed

ROLLUPS = table_of(AdherenceRollup)
STATES = table_of(AdherenceAlertState)
CURSORS = table_of(AlertCursor)
CHANGES = table_of(Change)
ENDPOINTS = table_of(WebhookEndpoint)
DELIVERIES = table_of(WebhookDelivery)
BELOW, RECOVERED, PAIN = "adherence.below_threshold", "adherence.recovered", "pain.reported_high"
CHANGES_PER_ROUND = 1000

_threshold = bindparam("threshold", type_=Integer())
_is_below = and_(ROLLUPS.c.percent_7d.is_not(None), ROLLUPS.c.percent_7d < _threshold)
# Fresh figures whose side of the threshold differs from the one last announced.
_MOVED = (
    select(ROLLUPS.c.patient_id, ROLLUPS.c.percent_7d, ROLLUPS.c.as_of, STATES.c.below)
    .outerjoin(
        STATES,
        and_(
            STATES.c.clinic_id == ROLLUPS.c.clinic_id, STATES.c.patient_id == ROLLUPS.c.patient_id
        ),
    )
    .where(
        ROLLUPS.c.clinic_id == bindparam("clinic_id"),
        ROLLUPS.c.valid_until > bindparam("now"),
        or_(
            and_(_is_below, or_(STATES.c.below.is_(None), STATES.c.below == false())),
            and_(~_is_below, STATES.c.below == true()),
        ),
    )
)
_MOVE = (
    update(STATES)
    .where(
        STATES.c.clinic_id == bindparam("state_clinic"),
        STATES.c.patient_id == bindparam("state_patient"),
        STATES.c.below == bindparam("was"),
    )
    .values(below=bindparam("below"), changed_at=bindparam("now"))
)
_ENDPOINTS = select(ENDPOINTS.c.id, ENDPOINTS.c.events).where(
    ENDPOINTS.c.clinic_id == bindparam("clinic_id"), ENDPOINTS.c.enabled
)


def _first_state(dialect: str) -> Insert:
    """A patient's first announced state, unless another worker wrote one meanwhile."""
    insert_: Any = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement: Insert = (
        insert_(STATES)
        .on_conflict_do_nothing(index_elements=[STATES.c.clinic_id, STATES.c.patient_id])
        .returning(STATES.c.patient_id)
    )
    return statement


async def queue(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    event_type: str,
    now: datetime,
    *,
    change_id: int,
    resource: dict[str, Any],
    data: dict[str, Any],
) -> int:
    """An alert for every enabled endpoint of the clinic that subscribes to it."""
    endpoints = [
        e
        for e in (await execute(session, _ENDPOINTS, {"clinic_id": clinic_id})).all()
        if subscribed(e.events, event_type)
    ]
    if not endpoints:
        return 0
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = orjson.loads(
        rendered_json(
            {
                "id": event_id,
                "type": event_type,
                "timestamp": now,
                "cursor": encode_cursor([change_id]),
                "resource": resource,
                "data": data,
            },
        )
    )
    await execute(
        session,
        insert(DELIVERIES),
        [
            {
                "id": uuid.uuid4(),
                "clinic_id": clinic_id,
                "endpoint_id": endpoint.id,
                "event_id": event_id,
                "event_type": event_type,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for endpoint in endpoints
        ],
    )
    return len(endpoints)


async def evaluate_adherence(session: AsyncSession, clinic: ClinicSettings, now: datetime) -> int:
    """Announce each patient of the clinic whose fresh 7-day figure crossed the threshold
    since the last announcement (run after `rollups.refresh`); how many alerts."""
    params = {"clinic_id": clinic.id, "now": now, "threshold": clinic.adherence_threshold_percent}
    moved = (await execute(session, _MOVED, params)).all()
    if not moved:
        return 0
    position = int((await execute(session, NEWEST_CHANGE, {"clinic_id": clinic.id})).scalar_one())
    fired = 0
    for row in moved:
        below = row.percent_7d is not None and row.percent_7d < clinic.adherence_threshold_percent
        if row.below is None:
            first = {
                "patient_id": row.patient_id,
                "clinic_id": clinic.id,
                "below": below,
                "changed_at": now,
            }
            made = (await execute(session, _first_state(dialect_of(session)), first)).first()
            changed = made is not None
        else:
            values = {
                "state_clinic": clinic.id,
                "state_patient": row.patient_id,
                "was": row.below,
                "below": below,
                "now": now,
            }
            result: Any = await execute(session, _MOVE, values)
            changed = result.rowcount == 1
        if not changed:
            continue  # another worker announced it
        fired += 1
        await queue(
            session,
            clinic.id,
            BELOW if below else RECOVERED,
            now,
            change_id=position,
            resource={"type": "patient", "id": str(row.patient_id), "version": None},
            data={
                "patient_id": str(row.patient_id),
                "adherence_7d_percent": row.percent_7d,
                "threshold_percent": clinic.adherence_threshold_percent,
                "as_of": row.as_of.isoformat() if row.as_of else None,
            },
        )
    return fired


_CURSOR = select(CURSORS.c.through_change).where(CURSORS.c.clinic_id == bindparam("clinic_id"))
_RECORD_CHANGES = (
    select(
        CHANGES.c.id,
        CHANGES.c.resource_type,
        CHANGES.c.resource_id,
        CHANGES.c.operation,
        CHANGES.c.version,
    )
    .where(CHANGES.c.clinic_id == bindparam("clinic_id"), CHANGES.c.id > bindparam("after"))
    .order_by(CHANGES.c.id)
    .limit(CHANGES_PER_ROUND)
)
_ADVANCE = (
    update(CURSORS)
    .where(CURSORS.c.clinic_id == bindparam("cursor_clinic"))
    .values(through_change=bindparam("through"))
)


def _cursor(dialect: str) -> Any:
    if dialect == "postgresql":
        return _CURSOR.with_for_update(skip_locked=True)
    return _CURSOR


async def evaluate_pain(session: AsyncSession, clinic: ClinicSettings, now: datetime) -> int:
    """Announce the records reported since the clinic's cursor with pain at or above its
    `pain_alert_at` (new, or corrected up to it); how many alerts."""
    through = (
        await execute(session, _cursor(dialect_of(session)), {"clinic_id": clinic.id})
    ).scalar()
    if through is None:
        # A clinic made after the migration: its feed starts empty, nothing to skip. (A
        # cursor held by another worker also reads as none: the insert then finds its row.)
        row = {"clinic_id": clinic.id, "through_change": 0}
        insert_: Any = postgresql_insert if dialect_of(session) == "postgresql" else sqlite_insert
        first = (
            insert_(CURSORS)
            .on_conflict_do_nothing(index_elements=[CURSORS.c.clinic_id])
            .returning(CURSORS.c.clinic_id)
        )
        if (await execute(session, first, row)).first() is None:
            return 0
        through = 0
    changes = (
        await execute(session, _RECORD_CHANGES, {"clinic_id": clinic.id, "after": through})
    ).all()
    if not changes:
        return 0
    wanted: set[tuple[uuid.UUID, int]] = set()
    for change in changes:
        if change.resource_type == "adherence_record" and change.operation != "delete":
            record_id = uuid.UUID(change.resource_id)
            wanted.add((record_id, change.version))
            if change.version > 1:
                wanted.add((record_id, change.version - 1))
    rendered = await records.records_at(session, clinic.id, wanted)
    fired = 0
    level = clinic.pain_alert_at
    for change in changes:
        if change.resource_type != "adherence_record" or change.operation == "delete":
            continue
        record_id = uuid.UUID(change.resource_id)
        record = rendered.get((record_id, change.version))
        before = rendered.get((record_id, change.version - 1))
        pain = record.get("pain") if record else None
        if pain is None or pain < level:
            continue
        if before is not None and before.get("pain") is not None and before["pain"] >= level:
            continue  # already announced at that level
        assert record is not None
        fired += (
            await queue(
                session,
                clinic.id,
                PAIN,
                now,
                change_id=change.id,
                resource={
                    "type": "adherence_record",
                    "id": str(record_id),
                    "version": change.version,
                },
                data={
                    "patient_id": str(record["patient_id"]),
                    "adherence_record_id": str(record_id),
                    "pain": pain,
                    "pain_alert_at": level,
                    "performed_at": record.get("performed_at"),
                },
            )
            and 1
        )
    await execute(session, _ADVANCE, {"cursor_clinic": clinic.id, "through": changes[-1].id})
    return fired
