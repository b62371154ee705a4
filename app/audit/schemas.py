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
    "changes": None,
}

ADMIN_EXAMPLE: dict[str, Any] = {
    **AUDIT_EXAMPLE,
    "id": 1043,
    "action": "update",
    "resource_type": "clinician",
    "resource_id": "7b1d9e2c-4a6f-4e3b-9c8d-1e2f3a4b5c6d",
    "patient_id": None,
    "changes": {"role": {"before": "admin", "after": "clinician"}},
}


class FieldChange(BaseModel):
    """One field an admin or security action changed. Null `before`: the thing was made."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"before": "admin", "after": "clinician"}]}
    )

    before: Any = Field(description="The value before the action (JSON).")
    after: Any = Field(description="The value after it (JSON).")


class AuditEventPublic(BaseModel):
    """One access to patient data, or one admin or security action: clinicians added or
    changed (`clinician`), API clients created, rescoped or revoked (`api_client`), the
    clinic's settings changed (`clinic`), access codes issued (`access_code`), devices and
    sign-in sessions signed out (`device`, `session`). What the operator's commands
    (`dorsi create-clinic`, `dorsi create-client`) make is recorded too, with
    `actor_kind` `system` and no actor id."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [AUDIT_EXAMPLE, ADMIN_EXAMPLE]}
    )

    id: int
    occurred_at: datetime
    actor_kind: str
    actor_id: uuid.UUID | None
    action: str = Field(
        description="list, read, export, create, update, delete, pair, revoke, or suspected_theft "
        "(a used refresh token presented again after the reuse window: the device was "
        "signed out). On `clinician`, `api_client` and `clinic`: create, update, delete; on "
        "`device` and `session`: revoke."
    )
    resource_type: str
    resource_id: str | None
    patient_id: uuid.UUID | None
    ip: str | None
    request_id: str | None
    changes: dict[str, FieldChange] | None = Field(
        description="What an admin or security action changed, by field, before and after "
        "(a made thing: null before; secrets and password hashes never appear). Null for "
        "events that change no settings (reads, lists, deletes, revocations)."
    )


class AuditEventPage(Page[AuditEventPublic]):
    """A page of audit events, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [ADMIN_EXAMPLE, AUDIT_EXAMPLE], "next_cursor": None}]
        }
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
