"""Bulk Data export jobs and their output files, kept in the database so that any process
(the app now, `dorsi worker` later) can run a job and any process can answer its status."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, String, Text
from sqlmodel import Field, SQLModel

from app.core.columns import JSONType, UTCDateTime, utcnow


class ExportStatus:
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"


class FhirExportJob(SQLModel, table=True):
    """One `$export` request. A cancelled job is deleted with its files (status then 404s)."""

    __tablename__ = "fhir_export_job"
    __table_args__ = (Index("ix_fhir_export_job_status", "status", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", index=True)
    # Who asked: only they read its status and files.
    actor_kind: str = Field(sa_type=String(16))
    actor_id: uuid.UUID
    level: str = Field(sa_type=String(16), description="`system` or `patient`.")
    types: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    request_url: str = Field(sa_type=String(2000))
    status: str = Field(default=ExportStatus.queued, sa_type=String(16))
    progress: str | None = Field(default=None, sa_type=String(200))
    error: str | None = Field(default=None, sa_type=String(2000))
    # The snapshot's: when its changes end (`_since` of the next export), and their id.
    transaction_time: datetime | None = Field(default=None, sa_type=UTCDateTime)
    change_cursor: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class FhirExportFile(SQLModel, table=True):
    """One NDJSON output file of a job: up to `bulk.FILE_LINES` resources of one type,
    held as `FhirExportChunk`s."""

    __tablename__ = "fhir_export_file"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="fhir_export_job.id", index=True)
    number: int
    resource_type: str = Field(sa_type=String(32))
    deleted: bool = Field(default=False, description="Deleted resources, as Bundles.")
    count: int


class FhirExportChunk(SQLModel, table=True):
    """A piece of a file's NDJSON (whole lines), in order: a file is written and read a
    piece at a time, so neither the export nor a download holds a whole file in memory."""

    __tablename__ = "fhir_export_chunk"

    file_id: uuid.UUID = Field(foreign_key="fhir_export_file.id", primary_key=True)
    number: int = Field(primary_key=True)
    content: str = Field(sa_column=Column(Text, nullable=False))
