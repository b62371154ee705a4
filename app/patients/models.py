"""The patient table and its vocabulary. Pseudonymous: no names or birth dates."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import PrimaryKeyConstraint, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.columns import UTCDateTime, utcnow


class Side(StrEnum):
    left = "left"
    right = "right"
    both = "both"


class Cause(StrEnum):
    stroke = "stroke"
    multiple_sclerosis = "multiple_sclerosis"
    peroneal_nerve_injury = "peroneal_nerve_injury"
    sciatic_nerve_injury = "sciatic_nerve_injury"
    spinal_cord_injury = "spinal_cord_injury"
    other = "other"


class Patient(SQLModel, table=True):
    __table_args__ = (
        # Keyed by clinic first, as the rows of every clinic's data are, so that the data
        # can be distributed by clinic; what refers to a patient names its clinic too.
        PrimaryKeyConstraint("clinic_id", "id"),
        UniqueConstraint("clinic_id", "reference"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", index=True)
    reference: str = Field(sa_type=String(64))
    affected_side: str = Field(sa_type=String(8))
    cause: str = Field(sa_type=String(32))
    time_zone: str = Field(sa_type=String(64))
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
