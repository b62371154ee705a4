"""Recording changes so that, per clinic, their ids come out in commit order.

PostgreSQL: before drawing the id, the transaction takes an advisory lock on its clinic
and holds it to commit, so a later id of the same clinic can only be drawn once every
earlier one has committed or rolled back. SQLite: the database write lock already does it.

A reader paging a clinic's changes by id therefore never passes an id that a transaction
still open will commit later. The same statement that takes the lock queues a
``NOTIFY`` on `CHANNEL` (PostgreSQL delivers it at commit, to every process), and a
commit in this process wakes this process's waiting readers (`app.sync.signal`).
"""

import uuid
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.columns import utcnow
from app.core.db import dialect_of, execute
from app.core.driver import insert_many
from app.sync.models import Change
from app.sync.signal import CHANNEL, changed_in

# One round trip: the lock, and the notice the commit sends (identical notices of one
# transaction are sent once).
LOCK = select(
    func.pg_advisory_xact_lock(bindparam("key")),
    func.pg_notify(CHANNEL, bindparam("clinic")),
)


def _lock_key(clinic_id: uuid.UUID) -> int:
    return int.from_bytes(clinic_id.bytes[:8], "big", signed=True)


async def _lock(session: AsyncSession, clinic_id: uuid.UUID) -> None:
    changed_in(session, clinic_id)
    if dialect_of(session) == "postgresql":
        # Re-entrant within a transaction, and released by its commit or rollback.
        await execute(session, LOCK, {"key": _lock_key(clinic_id), "clinic": str(clinic_id)})


async def record_change(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    resource_type: str,
    resource_id: uuid.UUID | str,
    operation: str,
    *,
    version: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Add a change row to the caller's transaction (create, update or delete).

    ``data``: the resource as its own GET renders it (JSON values), for resources that keep
    no history of their own versions; the feed renders plans and adherence records from
    their stored versions instead."""
    await _lock(session, clinic_id)
    session.add(
        Change(
            clinic_id=clinic_id,
            resource_type=resource_type,
            resource_id=str(resource_id),
            operation=operation,
            version=version,
            data=data,
        )
    )


async def record_changes(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    resource_type: str,
    changes: list[tuple[uuid.UUID | str, str, int | None]],
) -> None:
    """Many (resource id, operation, version) changes of one clinic, in one INSERT."""
    if not changes:
        return
    await _lock(session, clinic_id)
    now = utcnow()
    # Ids are drawn in the order given.
    await insert_many(
        session,
        Change.__table__,  # type: ignore[attr-defined]
        [
            {"resource_id": str(resource_id), "operation": operation, "version": version}
            for resource_id, operation, version in changes
        ],
        common={"clinic_id": clinic_id, "resource_type": resource_type, "occurred_at": now},
    )
