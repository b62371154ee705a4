"""Recording audit events, in the caller's transaction, and listing them for clinic admins."""

import uuid
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.models import AuditEvent
from app.core.columns import utcnow
from app.core.db import execute
from app.core.driver import insert_many


class Actor(Protocol):
    """Who acts, as the trail records them: `app.auth.principal.Principal` is one. (The
    trail sits below identity, so it names only what it reads.)"""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def clinic_id(self) -> uuid.UUID: ...


class Caller(Protocol):
    """An actor and where the request came from: `app.auth.principal.Caller` is one."""

    @property
    def principal(self) -> Actor: ...
    @property
    def ip(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...


EVENTS: Table = AuditEvent.__table__  # type: ignore[attr-defined]
# One event: a plain INSERT into the table, built once, not an ORM object. Reads record
# one too, so it is on every hot path.
EVENT = insert(EVENTS).values(
    {
        name: bindparam(f"event_{name}", type_=EVENTS.c[name].type)
        for name in (
            "clinic_id",
            "occurred_at",
            "actor_kind",
            "actor_id",
            "action",
            "resource_type",
            "resource_id",
            "patient_id",
            "ip",
            "request_id",
        )
    }
    # Optional: only admin and security actions say what they changed.
    | {"changes": bindparam("event_changes", None, type_=EVENTS.c.changes.type, required=False)}
)

Changes = dict[str, dict[str, Any]]


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> Changes:
    """{field: {"before": ..., "after": ...}} for each field whose value differs (JSON
    values): what an admin or security action changed, as its audit event keeps it."""
    return {
        name: {"before": before.get(name), "after": value}
        for name, value in after.items()
        if before.get(name) != value
    }


def event(
    caller: Caller,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None = None,
    patient_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """The values of `EVENT` for one event: `record` writes one, `record_events` many."""
    principal = caller.principal
    return {
        "event_clinic_id": principal.clinic_id,
        "event_occurred_at": utcnow(),
        "event_actor_kind": principal.kind,
        "event_actor_id": principal.id,
        "event_action": action,
        "event_resource_type": resource_type,
        "event_resource_id": str(resource_id) if resource_id is not None else None,
        "event_patient_id": patient_id,
        "event_ip": caller.ip,
        "event_request_id": caller.request_id,
    }


async def record(
    session: AsyncSession,
    caller: Caller,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None = None,
    patient_id: uuid.UUID | None = None,
    *,
    changes: Changes | None = None,
) -> None:
    """Add an audit event to the session; it commits (or not) with the work it records.
    ``changes``: what an admin or security action changed (see `changes_between`)."""
    values = event(caller, action, resource_type, resource_id, patient_id)
    await execute(session, EVENT, values | {"event_changes": changes or None})


async def record_system(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str | None = None,
    *,
    changes: Changes | None = None,
) -> None:
    """An event of an operator's command (`dorsi create-clinic`, `dorsi create-client`):
    actor kind ``system``, no actor id, no address or request."""
    values = {
        "event_clinic_id": clinic_id,
        "event_occurred_at": utcnow(),
        "event_actor_kind": "system",
        "event_actor_id": None,
        "event_action": action,
        "event_resource_type": resource_type,
        "event_resource_id": str(resource_id) if resource_id is not None else None,
        "event_patient_id": None,
        "event_ip": None,
        "event_request_id": None,
        "event_changes": changes or None,
    }
    await execute(session, EVENT, values)


async def record_events(session: AsyncSession, events: list[dict[str, Any]]) -> None:
    """Events of any callers (each made by `event`), in one statement in the session's
    transaction: requests answered together record theirs together."""
    if not events:
        return
    prefix = len("event_")
    await insert_many(
        session, EVENTS, [{name[prefix:]: value for name, value in e.items()} for e in events]
    )


async def record_many(
    session: AsyncSession,
    caller: Caller,
    action: str,
    resource_type: str,
    resources: list[tuple[uuid.UUID | str | None, uuid.UUID | None]],
) -> None:
    """One event per (resource id, patient id), in one statement: a list shows many."""
    if not resources:
        return
    principal, now = caller.principal, utcnow()
    common = {
        "clinic_id": principal.clinic_id,
        "occurred_at": now,
        "actor_kind": str(principal.kind),
        "actor_id": principal.id,
        "action": action,
        "resource_type": resource_type,
        "ip": caller.ip,
        "request_id": caller.request_id,
    }
    await insert_many(
        session,
        AuditEvent.__table__,  # type: ignore[attr-defined]
        [
            {
                "resource_id": str(resource_id) if resource_id is not None else None,
                "patient_id": patient_id,
            }
            for resource_id, patient_id in resources
        ],
        common=common,
    )


async def list_events(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    *,
    patient_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    since: datetime | None,
    until: datetime | None,
    after_id: int | None,
    limit: int,
) -> list[AuditEvent]:
    """Newest first; ``after_id`` continues below the last id of the previous page."""
    statement = select(AuditEvent).where(AuditEvent.clinic_id == clinic_id)
    if patient_id is not None:
        statement = statement.where(AuditEvent.patient_id == patient_id)
    if actor_id is not None:
        statement = statement.where(AuditEvent.actor_id == actor_id)
    if since is not None:
        statement = statement.where(col(AuditEvent.occurred_at) >= since)
    if until is not None:
        statement = statement.where(col(AuditEvent.occurred_at) < until)
    if after_id is not None:
        statement = statement.where(col(AuditEvent.id) < after_id)
    statement = statement.order_by(col(AuditEvent.id).desc()).limit(limit)
    return list((await session.exec(statement)).all())
