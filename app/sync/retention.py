"""Retention of the outbox: changes older than the retention period are pruned, and each
clinic's horizon (the newest change id pruned) remembers where its kept changes begin.

Per clinic, what is pruned is always a prefix of its change ids: every change up to the
newest one older than the cutoff. The kept changes are then exactly those after the
horizon, so a feed cursor at or after it misses nothing, and one before it would, and
is refused (410).
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.columns import utcnow
from app.core.db import dialect_of, execute, table_of, transaction
from app.sync.models import Change, ChangeHorizon

CHANGES = table_of(Change)
HORIZONS = table_of(ChangeHorizon)

# Per clinic, the newest change older than the cutoff: everything up to it goes.
_ENDS = (
    select(CHANGES.c.clinic_id, func.max(CHANGES.c.id).label("through"))
    .where(CHANGES.c.occurred_at < bindparam("cutoff"))
    .group_by(CHANGES.c.clinic_id)
)
_PRUNE = delete(CHANGES).where(
    CHANGES.c.clinic_id == bindparam("clinic_id"), CHANGES.c.id <= bindparam("through")
)
HORIZON = select(HORIZONS.c.pruned_through).where(HORIZONS.c.clinic_id == bindparam("clinic_id"))


def _raise_horizon(dialect: str) -> Insert:
    """The clinic's horizon moved up to ``through``, never down (two pruners may race).
    The same upsert on both databases, built by each dialect's own insert."""
    insert: Any = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(HORIZONS).values(
        clinic_id=bindparam("clinic_id"), pruned_through=bindparam("through")
    )
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=[HORIZONS.c.clinic_id],
        set_={"pruned_through": statement.excluded.pruned_through},
        where=HORIZONS.c.pruned_through < statement.excluded.pruned_through,
    )
    return upsert


async def horizon(session: AsyncSession, clinic_id: uuid.UUID) -> int:
    """The newest change id pruned from the clinic's feed (0: none ever was)."""
    found = (await execute(session, HORIZON, {"clinic_id": clinic_id})).scalar()
    return int(found or 0)


async def prune_changes(
    engine: AsyncEngine, retention: timedelta, now: datetime | None = None
) -> dict[uuid.UUID, int]:
    """Delete every clinic's changes older than ``retention`` (a transaction per clinic);
    answers how many were deleted per clinic. Run by `dorsi prune-changes`."""
    cutoff = (now or utcnow()) - retention
    async with transaction(engine) as session:
        ends = (await execute(session, _ENDS, {"cutoff": cutoff})).all()
    pruned: dict[uuid.UUID, int] = {}
    for end in ends:
        params = {"clinic_id": end.clinic_id, "through": end.through}
        async with transaction(engine) as session:
            await execute(session, _raise_horizon(dialect_of(session)), params)
            deleted: Any = await execute(session, _PRUNE, params)
            pruned[end.clinic_id] = int(deleted.rowcount)
    return pruned
