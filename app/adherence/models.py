"""The adherence record table: one exercise session, identified by the client's own UUID."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, String
from sqlmodel import Field, SQLModel

from app.core.columns import JSONType, UTCDateTime, utcnow


class SessionStatus(StrEnum):
    completed = "completed"
    partial = "partial"
    skipped = "skipped"


class SkipReason(StrEnum):
    pain = "pain"
    no_time = "no_time"
    forgot = "forgot"
    no_equipment = "no_equipment"
    felt_unwell = "felt_unwell"
    other = "other"


class AssistiveDevice(StrEnum):
    none = "none"
    afo = "afo"
    fes = "fes"


class Source(StrEnum):
    patient_app = "patient_app"
    clinician = "clinician"
    clinic_system = "clinic_system"


class AdherenceRecord(SQLModel, table=True):
    __tablename__ = "adherence_record"
    __table_args__ = (
        Index("ix_adherence_record_patient_day", "clinic_id", "patient_id", "performed_on"),
    )

    # The app's own id: a replayed upload finds its record instead of making another.
    id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id")
    patient_id: uuid.UUID = Field(foreign_key="patient.id")
    plan_id: uuid.UUID = Field(foreign_key="plan.id")
    plan_version: int
    item_id: uuid.UUID
    performed_at: datetime = Field(sa_type=UTCDateTime)
    utc_offset_minutes: int = Field(description="The offset performed_at was given with.")
    performed_on: date = Field(description="The patient's local date.")
    status: str = Field(sa_type=String(16))
    sets_done: int | None = None
    reps_done: int | None = None
    hold_seconds: int | None = None
    pain: int | None = None
    effort: int | None = None
    skip_reason: str | None = Field(default=None, sa_type=String(16))
    note: str | None = Field(default=None, sa_type=String(1000))
    assistive_device: str | None = Field(default=None, sa_type=String(8))
    source: str = Field(sa_type=String(16))
    recorded_by: uuid.UUID
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AdherenceRecordVersion(SQLModel, table=True):
    """A record as it was before a correction: corrections never overwrite history."""

    __tablename__ = "adherence_record_version"

    record_id: uuid.UUID = Field(foreign_key="adherence_record.id", primary_key=True)
    version: int = Field(primary_key=True)
    content: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    replaced_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    replaced_by: uuid.UUID
