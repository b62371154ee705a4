"""Plan templates, plans and plan versions.

A plan's items live in its versions: every change makes a new immutable version, and
adherence records point at the version they were done under. Items keep their ``id``
from version to version while they stay in the plan.
"""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from app.core.columns import JSONType, UTCDateTime, utcnow


class PlanStatus(StrEnum):
    draft = "draft"
    active = "active"
    paused = "paused"
    completed = "completed"
    cancelled = "cancelled"


# Where each status may go next; completed and cancelled are final.
TRANSITIONS: dict[PlanStatus, frozenset[PlanStatus]] = {
    PlanStatus.draft: frozenset({PlanStatus.active, PlanStatus.cancelled}),
    PlanStatus.active: frozenset({PlanStatus.paused, PlanStatus.completed, PlanStatus.cancelled}),
    PlanStatus.paused: frozenset({PlanStatus.active, PlanStatus.completed, PlanStatus.cancelled}),
    PlanStatus.completed: frozenset(),
    PlanStatus.cancelled: frozenset(),
}


class Provenance(StrEnum):
    """Where an item's dose or schedule came from."""

    # The source article prescribes it.
    article = "article"
    # Dorsi filled it in where the article gives none.
    default = "default"
    # The clinic's staff set or changed it.
    clinician = "clinician"


class BandColour(StrEnum):
    """Resistance band colours, lightest to heaviest."""

    tan = "tan"
    yellow = "yellow"
    red = "red"
    green = "green"
    blue = "blue"
    black = "black"
    silver = "silver"
    gold = "gold"


class PlanTemplate(SQLModel, table=True):
    """A reusable program. ``clinic_id`` is null for the shipped global template."""

    __tablename__ = "plan_template"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID | None = Field(default=None, foreign_key="clinic.id", index=True)
    name: str = Field(sa_type=String(120))
    description: str = Field(default="", sa_type=String(2000))
    items: list[dict[str, Any]] = Field(sa_column=Column(JSONType, nullable=False))
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Plan(SQLModel, table=True):
    """A patient's plan; its current content is version ``version``."""

    __table_args__ = (
        PrimaryKeyConstraint("clinic_id", "id"),
        ForeignKeyConstraint(["clinic_id", "patient_id"], ["patient.clinic_id", "patient.id"]),
        # At most one active plan per patient, even when two activations race.
        Index(
            "uq_plan_one_active_per_patient",
            "patient_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", index=True)
    patient_id: uuid.UUID = Field(index=True)
    template_id: uuid.UUID | None = Field(default=None, foreign_key="plan_template.id")
    status: str = Field(sa_type=String(16))
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PlanVersion(SQLModel, table=True):
    """One immutable state of a plan, in force from ``created_at`` until the next one."""

    __tablename__ = "plan_version"
    __table_args__ = (
        PrimaryKeyConstraint("clinic_id", "id"),
        ForeignKeyConstraint(["clinic_id", "plan_id"], ["plan.clinic_id", "plan.id"]),
        UniqueConstraint("plan_id", "number"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    plan_id: uuid.UUID
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", index=True)
    number: int
    status: str = Field(sa_type=String(16))
    title: str = Field(sa_type=String(120))
    notes: str | None = Field(default=None, sa_type=String(2000))
    start_date: date
    end_date: date | None = None
    items: list[dict[str, Any]] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: uuid.UUID | None = None
