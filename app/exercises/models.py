"""The exercise table and the vocabulary its fields use."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, String, text
from sqlmodel import Field, SQLModel

from app.core.columns import JSONType, UTCDateTime, utcnow

# Catalog ids are derived from slugs so that every installation shares them.
CATALOG_NAMESPACE = uuid.UUID("5b1f7c1e-8d0a-4c55-9a51-7d6f2f0c0d15")


def catalog_id(slug: str) -> uuid.UUID:
    """The id of the shipped catalog's exercise (or template, `template:<slug>`) ``slug``."""
    return uuid.uuid5(CATALOG_NAMESPACE, slug)


class BodyRegion(StrEnum):
    ankle = "ankle"
    hip = "hip"


class Movement(StrEnum):
    dorsiflexion = "dorsiflexion"
    plantarflexion = "plantarflexion"
    inversion = "inversion"
    eversion = "eversion"
    ankle_abduction = "ankle_abduction"
    ankle_adduction = "ankle_adduction"
    hip_internal_rotation = "hip_internal_rotation"
    hip_external_rotation = "hip_external_rotation"
    hip_abduction = "hip_abduction"
    hip_adduction = "hip_adduction"


class Mode(StrEnum):
    passive = "passive"
    active_assisted = "active_assisted"
    active = "active"
    resisted = "resisted"


class Position(StrEnum):
    long_sitting = "long_sitting"
    legs_crossed = "legs_crossed"
    seated = "seated"
    standing = "standing"
    supine = "supine"


class Equipment(StrEnum):
    stretch_band = "stretch_band"
    towel = "towel"
    cloth = "cloth"
    chair = "chair"


class Exercise(SQLModel, table=True):
    """One exercise definition. ``clinic_id`` is null for the shipped global catalog.

    Vocabulary columns hold the enum values as plain strings; the API schemas enforce them.
    """

    __table_args__ = (
        Index(
            "uq_exercise_global_slug",
            "slug",
            unique=True,
            sqlite_where=text("clinic_id IS NULL"),
            postgresql_where=text("clinic_id IS NULL"),
        ),
        Index("uq_exercise_clinic_slug", "clinic_id", "slug", unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID | None = Field(default=None, foreign_key="clinic.id", index=True)
    slug: str = Field(sa_type=String(80))
    name: str = Field(sa_type=String(120))
    summary: str = Field(sa_type=String(2000))
    steps: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    body_region: str = Field(sa_type=String(32), index=True)
    movements: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    mode: str = Field(sa_type=String(32), index=True)
    position: str | None = Field(default=None, sa_type=String(32))
    equipment: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    default_dose: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    cautions: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    easier_variant_id: uuid.UUID | None = Field(default=None, foreign_key="exercise.id")
    harder_variant_id: uuid.UUID | None = Field(default=None, foreign_key="exercise.id")
    media: list[dict[str, Any]] = Field(sa_column=Column(JSONType, nullable=False))
    references: list[dict[str, Any]] = Field(sa_column=Column(JSONType, nullable=False))
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
