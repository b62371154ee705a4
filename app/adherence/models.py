"""The adherence record table: one exercise session, identified by the client's own UUID."""

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ForeignKeyConstraint, Index, PrimaryKeyConstraint, String, text
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
        # The app's own id is unique within its clinic only: another clinic's use of an id
        # is invisible (no "taken" answer betrays it), and the key leads with the clinic,
        # as distributing the data by clinic needs.
        PrimaryKeyConstraint("clinic_id", "id"),
        ForeignKeyConstraint(["clinic_id", "patient_id"], ["patient.clinic_id", "patient.id"]),
        ForeignKeyConstraint(["clinic_id", "plan_id"], ["plan.clinic_id", "plan.id"]),
        Index("ix_adherence_record_patient_day", "clinic_id", "patient_id", "performed_on"),
    )

    # The app's own id: a replayed upload finds its record instead of making another.
    id: uuid.UUID
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id")
    patient_id: uuid.UUID
    plan_id: uuid.UUID
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
    __table_args__ = (
        PrimaryKeyConstraint("clinic_id", "record_id", "version"),
        ForeignKeyConstraint(
            ["clinic_id", "record_id"], ["adherence_record.clinic_id", "adherence_record.id"]
        ),
    )

    clinic_id: uuid.UUID
    record_id: uuid.UUID
    version: int
    content: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    replaced_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    replaced_by: uuid.UUID


# The overview's sort key for its default order (nothing expected sorts last), spelled as
# its index spells it, so that SQLite and PostgreSQL both recognise the index in the page
# query, and as PostgreSQL gives it back, so that `alembic check` can compare the two.
PERCENT_7D_ORDER = "coalesce(percent_7d, 1000000000)"

# A rollup whose valid_until has passed is recomputed before it is read.
STALE = datetime(1970, 1, 1, tzinfo=UTC)


class AdherenceRollup(SQLModel, table=True):
    """The clinic overview's figures for one patient, as of a local date.

    A patient's row is made when the overview (or an upload) first needs it. The windows
    are complete local days, so the figures hold until the patient's next midnight
    (``valid_until``) unless something they were computed from changes. Shortly before
    that midnight the worker computes the next day's figures beside them (``next_*``),
    which are in force as it passes, so that no reader recomputes the clinic then. The
    overview notices by itself what other packages change: a row computed in another time
    zone than the patient's now, or with another pain alert level than the clinic's now,
    is recomputed before it is read (the adherence threshold is compared at read time). A
    write to the patient's records, or a new version of their plans, marks the row stale
    (``STALE``), spends the next day's figures, and bumps ``generation``, so a
    recomputation that read older records or versions cannot overwrite the mark.
    """

    __tablename__ = "adherence_rollup"
    __table_args__ = (
        ForeignKeyConstraint(["clinic_id", "patient_id"], ["patient.clinic_id", "patient.id"]),
        Index("ix_adherence_rollup_clinic_valid", "clinic_id", "valid_until"),
        # The overview's default order (lowest 7-day adherence first, nothing expected
        # last): a page is read off this index instead of sorting the whole clinic.
        Index(
            "ix_adherence_rollup_clinic_percent_7d",
            "clinic_id",
            text(PERCENT_7D_ORDER),
            "patient_id",
        ),
    )

    patient_id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id")
    generation: int = 0
    valid_until: datetime = Field(default=STALE, sa_type=UTCDateTime)
    as_of: date | None = None
    expected_7d: float = 0.0
    credited_7d: float = 0.0
    percent_7d: float | None = None
    expected_30d: float = 0.0
    credited_30d: float = 0.0
    percent_30d: float | None = None
    pain_alerts_7d: int = 0
    max_pain_7d: int | None = None
    last_upload_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # What the figures were computed with (None: never computed).
    time_zone: str | None = Field(default=None, sa_type=String(64))
    pain_alert_at: int | None = None
    # The next local day's figures, computed by the worker shortly before the patient's
    # midnight (`rollups.AHEAD`) with the same time zone and pain alert level: they are in
    # force from ``valid_until`` until ``next_valid_until``, and the worker moves them into
    # the columns above once that midnight has passed. None: not computed, or spent (moved,
    # or a write marked the row stale).
    next_valid_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_as_of: date | None = None
    next_expected_7d: float | None = None
    next_credited_7d: float | None = None
    next_percent_7d: float | None = None
    next_expected_30d: float | None = None
    next_credited_30d: float | None = None
    next_percent_30d: float | None = None
    next_pain_alerts_7d: int | None = None
    next_max_pain_7d: int | None = None
