"""Reading a page of the clinic's changes and rendering each as its resource's GET does.

Per clinic, change ids follow commit order (`app.sync.outbox`), so the changes a
statement sees are always a prefix of the clinic's ids: paging by id never skips one.
Each read is a short transaction of its own, so a reader that waits holds no connection.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence import records
from app.audit import service as audit
from app.auth.principal import Caller
from app.core.db import execute, table_of, transaction
from app.core.errors import Gone
from app.core.http import rendered_json
from app.core.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.feed.schemas import ChangeQuery, ChangeType
from app.plans import service as plans
from app.sync import retention
from app.sync.models import Change

CHANGES = table_of(Change)
_COLUMNS = (
    CHANGES.c.id,
    CHANGES.c.resource_type,
    CHANGES.c.resource_id,
    CHANGES.c.operation,
    CHANGES.c.version,
    CHANGES.c.occurred_at,
    CHANGES.c.data,
)
_AFTER = (CHANGES.c.clinic_id == bindparam("clinic_id")) & (CHANGES.c.id > bindparam("after"))
PAGE = select(*_COLUMNS).where(_AFTER).order_by(CHANGES.c.id).limit(bindparam("limit"))
# With `types`: the newest id first, so the page below it sees every change up to it.
NEWEST = select(func.max(CHANGES.c.id)).where(_AFTER)
TYPED_PAGE = (
    select(*_COLUMNS)
    .where(
        _AFTER,
        CHANGES.c.id <= bindparam("newest"),
        CHANGES.c.resource_type.in_(bindparam("types", expanding=True)),
    )
    .order_by(CHANGES.c.id)
    .limit(bindparam("limit"))
)
# Resources whose changes name a patient, for the audit trail.
_PATIENT_DATA = {ChangeType.patient, ChangeType.plan, ChangeType.adherence_record}


@dataclass(frozen=True, slots=True)
class ChangesPage:
    items: list[dict[str, Any]]
    position: int  # the last change id read past: next_cursor's

    def body(self) -> bytes:
        page = {"items": self.items, "next_cursor": encode_cursor([self.position])}
        return rendered_json(page)


def position_of(cursor: str | None) -> int | None:
    """The change id a cursor stands after (None: no cursor, from the oldest kept)."""
    if cursor is None:
        return None
    (after,) = decode_cursor(cursor, 1)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise invalid_cursor()
    return after


async def read_page(
    engine: AsyncEngine, caller: Caller, after: int | None, query: ChangeQuery
) -> ChangesPage:
    """The clinic's changes after ``after`` (None: from the oldest kept), rendered, in one
    short transaction (which also records who read which patients' data).

    A position before the clinic's retention horizon would miss pruned changes: 410. The
    horizon is read after the page, so a prune that committed meanwhile is seen."""
    clinic_id = caller.clinic_id
    start = after or 0
    params: dict[str, Any] = {"clinic_id": clinic_id, "after": start, "limit": query.limit}
    async with transaction(engine) as session:
        rows: Sequence[Any] = []
        position = start
        if query.types:
            newest = (await execute(session, NEWEST, params)).scalar()
            if newest is not None:
                types = sorted({str(kind) for kind in query.types})
                rows = (
                    await execute(session, TYPED_PAGE, params | {"newest": newest, "types": types})
                ).all()
                # A full page ends at its last change; a short one read up to the newest.
                position = rows[-1].id if len(rows) == query.limit else newest
        else:
            rows = (await execute(session, PAGE, params)).all()
            position = rows[-1].id if rows else start
        kept_after = await retention.horizon(session, clinic_id)
        if after is not None and after < kept_after:
            raise Gone(
                "This cursor is older than the changes kept (DORSI_CHANGE_RETENTION_DAYS): "
                "changes after it were pruned. Export again (GET /v1/export/{type}.ndjson) "
                "and follow the feed from the export's Dorsi-Change-Cursor."
            )
        if after is None and not rows:
            position = max(position, kept_after)
        items = await render_changes(session, clinic_id, rows)
        # Each patient once, as a UUID: rendered from a row or kept as JSON, a page holds
        # both, and parsing a thousand would cost more than the page's rendering.
        shown = {
            item["id"] if item["type"] == "patient" else data["patient_id"]
            for item in items
            if item["type"] in _PATIENT_DATA and (data := item["data"]) is not None
        }
        patients = sorted({uuid.UUID(str(patient)) for patient in shown})
        await audit.record_many(
            session, caller, "list", "change", [(None, patient) for patient in patients]
        )
    return ChangesPage(items, position)


async def render_changes(
    session: AsyncSession, clinic_id: uuid.UUID, rows: Sequence[Any]
) -> list[Any]:
    """Each change as a feed item; plans and adherence records rendered from the version
    each change names, the rest carried by the change itself."""
    plan_versions: set[tuple[uuid.UUID, int]] = set()
    record_changes: list[int] = []
    for row in rows:
        if row.operation == "delete":
            continue
        if row.resource_type == "plan":
            plan_versions.add((uuid.UUID(row.resource_id), row.version))
        elif row.resource_type == "adherence_record":
            record_changes.append(row.id)
    plans_rendered = await plans.plans_at(session, clinic_id, plan_versions)
    records_rendered = await records.records_changed(session, clinic_id, record_changes)
    items = []
    for row in rows:
        data = row.data
        if row.operation == "delete":
            data = None
        elif row.resource_type == "plan":
            data = plans_rendered.get((uuid.UUID(row.resource_id), row.version))
        elif row.resource_type == "adherence_record":
            data = records_rendered.get(row.id)
        items.append(
            {
                "cursor": encode_cursor([row.id]),
                "type": row.resource_type,
                "id": row.resource_id,
                "operation": row.operation,
                "version": row.version,
                "occurred_at": row.occurred_at,
                "data": data,
            }
        )
    return items
