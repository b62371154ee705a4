"""Queueing deliveries in the transaction of the change that causes them.

Before a transaction that recorded a clinic's changes commits, each enabled endpoint of
the clinic gets one delivery per new change it subscribes to, and its ``through_change``
moves past them. Per clinic, change ids follow commit order and the transactions that
record them queue on the clinic's lock (`app.sync.outbox`), so the changes after an
endpoint's ``through_change`` are exactly those not yet queued for it: none is skipped
and none is queued twice. The endpoint rows are locked as well, so a worker sweeping
the same clinic (`sweep`, for writers that queued nothing, e.g. before an endpoint's
events changed) waits for the writer, or the writer for it.

Written against a synchronous connection, because a session's ``before_commit`` event
is synchronous; the worker runs the same function through ``run_sync``.
"""

import uuid
from typing import Any

from sqlalchemy import Connection, bindparam, event, func, insert, select, update
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.columns import utcnow
from app.core.db import table_of
from app.sync.models import Change
from app.sync.signal import changed_clinics
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.schemas import OPERATION_EVENTS, RESOURCE_TYPES, subscribed

ENDPOINTS = table_of(WebhookEndpoint)
DELIVERIES = table_of(WebhookDelivery)
CHANGES = table_of(Change)

_ENABLED = (
    select(ENDPOINTS.c.id, ENDPOINTS.c.events, ENDPOINTS.c.through_change)
    .where(ENDPOINTS.c.clinic_id == bindparam("clinic_id"), ENDPOINTS.c.enabled)
    .order_by(ENDPOINTS.c.id)
    .with_for_update()
)
_NEW_CHANGES = (
    select(CHANGES.c.id, CHANGES.c.resource_type, CHANGES.c.operation)
    .where(CHANGES.c.clinic_id == bindparam("clinic_id"), CHANGES.c.id > bindparam("after"))
    .order_by(CHANGES.c.id)
)
_ADVANCE = (
    update(ENDPOINTS)
    .where(ENDPOINTS.c.id == bindparam("endpoint_id"))
    .values(through_change=bindparam("through"))
)
NEWEST_CHANGE = select(func.coalesce(func.max(CHANGES.c.id), 0)).where(
    CHANGES.c.clinic_id == bindparam("clinic_id")
)


def event_type_of(resource_type: str, operation: str) -> str | None:
    """The webhook event a change makes (None: a change webhooks do not carry)."""
    if resource_type not in RESOURCE_TYPES:
        return None
    return f"{resource_type}.{OPERATION_EVENTS[operation]}"


def fan_out(connection: Connection, clinic_id: uuid.UUID) -> int:
    """Queue the clinic's changes not yet queued for its enabled endpoints; how many."""
    endpoints = connection.execute(_ENABLED, {"clinic_id": clinic_id}).all()
    if not endpoints:
        return 0
    after = min(endpoint.through_change for endpoint in endpoints)
    changes = connection.execute(_NEW_CHANGES, {"clinic_id": clinic_id, "after": after}).all()
    if not changes:
        return 0
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for endpoint in endpoints:
        for change in changes:
            if change.id <= endpoint.through_change:
                continue
            kind = event_type_of(change.resource_type, change.operation)
            if kind is None or not subscribed(endpoint.events, kind):
                continue
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "clinic_id": clinic_id,
                    "endpoint_id": endpoint.id,
                    "event_id": f"evt_{change.id}",
                    "event_type": kind,
                    "change_id": change.id,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    if rows:
        connection.execute(insert(DELIVERIES), rows)
    through = changes[-1].id
    behind = [
        {"endpoint_id": endpoint.id, "through": through}
        for endpoint in endpoints
        if endpoint.through_change < through
    ]
    if behind:
        connection.execute(_ADVANCE, behind)
    return len(rows)


@event.listens_for(Session, "before_commit")
def _queue_deliveries(session: Session) -> None:
    clinics = changed_clinics(session)
    if not clinics:
        return
    session.flush()  # the changes added as objects get their ids
    connection = session.connection()
    for clinic_id in sorted(clinics):
        fan_out(connection, clinic_id)


async def sweep(session: AsyncSession, clinic_id: uuid.UUID) -> int:
    """`fan_out` from the worker, for changes committed by a process that did not load
    this module (and so queued nothing)."""
    queued: int = await session.run_sync(lambda sync: fan_out(sync.connection(), clinic_id))
    return queued
