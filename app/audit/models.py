"""The audit event table: append-only, written in the same transaction as what it records."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.columns import UTCDateTime, utcnow

# SQL NULL, not JSON null, for the events (nearly all) that change nothing.
CHANGES_TYPE = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    # Each serves the admins' newest-first list: the clinic's, a patient's, an actor's.
    __table_args__ = (
        Index("ix_audit_event_clinic", "clinic_id", "id"),
        Index("ix_audit_event_clinic_patient", "clinic_id", "patient_id", "id"),
        Index("ix_audit_event_clinic_actor", "clinic_id", "actor_id", "id"),
    )

    # BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER primary key.
    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id")
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_kind: str = Field(sa_type=String(16))
    actor_id: uuid.UUID | None = None
    action: str = Field(sa_type=String(16))
    resource_type: str = Field(sa_type=String(32))
    resource_id: str | None = Field(default=None, sa_type=String(64))
    patient_id: uuid.UUID | None = None
    ip: str | None = Field(default=None, sa_type=String(45))
    request_id: str | None = Field(default=None, sa_type=String(128))
    # What an admin or security action changed: {field: {"before": ..., "after": ...}}.
    changes: dict[str, Any] | None = Field(default=None, sa_column=Column(CHANGES_TYPE))
