"""What the patient API reads and writes."""

import uuid
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.pagination import Page, PageQuery
from app.core.text import Line
from app.patients.models import Cause, Side

_ZONES = frozenset(available_timezones())


def _known_zone(value: str) -> str:
    if value not in _ZONES:
        raise ValueError("Not an IANA time zone (for example Europe/Lisbon).")
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_known_zone)]
Reference = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
]

PATIENT_EXAMPLE: dict[str, Any] = {
    "reference": "MRN-004217",
    "affected_side": "left",
    "cause": "stroke",
    "time_zone": "Europe/Lisbon",
}


class PatientCreate(BaseModel):
    """A new patient. Pseudonymous: the clinic's own reference, no name or birth date."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PATIENT_EXAMPLE]})

    reference: Reference = Field(description="The clinic's own identifier; unique per clinic.")
    affected_side: Side
    cause: Cause
    time_zone: TimeZone = Field(description="IANA zone; 'today' for the patient is in it.")


class PatientUpdate(BaseModel):
    """Fields to change; those left out stay as they are."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"time_zone": "Pacific/Auckland"}]}
    )

    reference: Reference | None = None
    affected_side: Side | None = None
    cause: Cause | None = None
    time_zone: TimeZone | None = None


PATIENT_PUBLIC_EXAMPLE: dict[str, Any] = {
    "id": "3f0e8a52-2c1b-4a8e-9d3f-1b2c3d4e5f60",
    **PATIENT_EXAMPLE,
    "version": 1,
    "created_at": "2026-11-23T10:00:00Z",
    "updated_at": "2026-11-23T10:00:00Z",
}


class PatientPublic(BaseModel):
    """A patient as the clinic sees it."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [PATIENT_PUBLIC_EXAMPLE]}
    )

    id: uuid.UUID
    reference: str
    affected_side: Side
    cause: Cause
    time_zone: str
    version: int
    created_at: datetime
    updated_at: datetime


class PatientPage(Page[PatientPublic]):
    """A page of patients, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [PATIENT_PUBLIC_EXAMPLE], "next_cursor": None}]}
    )


class PatientQuery(PageQuery):
    reference: Annotated[Line | None, Field(max_length=64, description="Exact reference.")] = None


class AccessCodePublic(BaseModel):
    """The code to give the patient, shown once; it works once, until it expires."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"code": "7KQ4M9XT", "expires_at": "2026-11-23T11:00:00Z"}]}
    )

    code: str
    expires_at: datetime


DEVICE_EXAMPLE: dict[str, Any] = {
    "id": "9b1d6f1e-0c55-4a9a-8f3e-6d2b7c1a0e44",
    "device_name": "Ana's phone",
    "created_at": "2026-11-23T10:05:00Z",
    "expires_at": "2026-12-23T10:05:00Z",
    "revoked_at": None,
}


class DevicePublic(BaseModel):
    """A paired app: one sign-in session of the patient."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [DEVICE_EXAMPLE]}
    )

    id: uuid.UUID
    device_name: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class DevicePage(Page[DevicePublic]):
    """A page of the patient's paired apps, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [DEVICE_EXAMPLE], "next_cursor": None}]}
    )
