"""What the audit API answers."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.pagination import Page, PageQuery
from app.core.timestamps import Instant

AUDIT_EXAMPLE: dict[str, Any] = {
    "id": 1042,
    "occurred_at": "2026-11-23T10:00:00Z",
    "actor_kind": "clinician",
    "actor_id": "5a3c1e7b-9d2f-4b6a-8c1e-2f3a4b5c6d7e",
    "action": "read",
    "resource_type": "patient",
    "resource_id": "3f0e8a52-2c1b-4a8e-9d3f-1b2c3d4e5f60",
    "patient_id": "3f0e8a52-2c1b-4a8e-9d3f-1b2c3d4e5f60",
    "ip": "203.0.113.7",
    "request_id": "9f1c2b3a4d5e",
}


class AuditEventPublic(BaseModel):
    """One access to patient data."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [AUDIT_EXAMPLE]})

    id: int
    occurred_at: datetime
    actor_kind: str
    actor_id: uuid.UUID | None
    action: str = Field(
        description="list, read, export, create, update, delete, pair, revoke, or suspected_theft "
        "(a used refresh token presented again after the reuse window: the device was "
        "signed out)."
    )
    resource_type: str
    resource_id: str | None
    patient_id: uuid.UUID | None
    ip: str | None
    request_id: str | None


class AuditEventPage(Page[AuditEventPublic]):
    """A page of audit events, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [AUDIT_EXAMPLE], "next_cursor": None}]}
    )


class AuditQuery(PageQuery):
    patient_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None
    since: Annotated[Instant | None, Field(alias="from", description="Inclusive, with offset.")] = (
        None
    )
    until: Annotated[Instant | None, Field(alias="to", description="Exclusive, with offset.")] = (
        None
    )
