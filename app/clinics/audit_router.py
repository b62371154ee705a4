"""The audit trail, for clinic admins. Read-only: nobody alters it through the API. (The
trail itself, `app.audit`, sits below identity; its list route is an admin route.)"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.audit import service
from app.audit.schemas import AuditEventPage, AuditEventPublic, AuditQuery
from app.auth.deps import staff
from app.auth.principal import Caller
from app.core.db import SessionDep
from app.core.errors import Forbidden, InvalidInput, Unauthorized, responses
from app.core.pagination import decode_cursor, encode_cursor, invalid_cursor

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])


@router.get(
    "",
    operation_id="listAuditEvents",
    summary="List audit events",
    response_model=AuditEventPage,
    responses=responses(Unauthorized, Forbidden, InvalidInput),
)
async def list_audit_events(
    session: SessionDep,
    caller: Annotated[Caller, Depends(staff(admin=True))],
    query: Annotated[AuditQuery, Query()],
) -> AuditEventPage:
    """Newest first, filtered by patient, actor and time range (`from` ≤ t < `to`)."""
    after_id = None
    if query.cursor is not None:
        (after_id,) = decode_cursor(query.cursor, 1)
        if type(after_id) is not int or not 0 < after_id < 2**63:
            raise invalid_cursor()
    rows = await service.list_events(
        session,
        caller.clinic_id,
        patient_id=query.patient_id,
        actor_id=query.actor_id,
        since=query.since,
        until=query.until,
        after_id=after_id,
        limit=query.limit + 1,
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return AuditEventPage(
        items=[AuditEventPublic.model_validate(row) for row in rows],
        next_cursor=encode_cursor([rows[-1].id]) if more else None,
    )
