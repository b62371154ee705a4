"""What the clinic, clinician and API client routes read and answer."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.auth.models import Role
from app.auth.principal import Scope
from app.core.pagination import Page
from app.core.text import Email, Line, Name

# ------------------------------------------------------------------------ clinic settings

_CLINIC_EXAMPLE: dict[str, Any] = {
    "id": "0b6f2d4e-8a1c-4e3f-9b5d-7c2a1e4f6b8d",
    "name": "Riverside Neuro Rehab",
    "adherence_threshold_percent": 70,
    "pain_alert_at": 7,
}
ThresholdPercent = Annotated[
    int,
    Field(
        ge=1, le=100, strict=True, description="Below this 7-day adherence a patient is flagged."
    ),
]
PainAlertAt = Annotated[
    int,
    Field(
        ge=1, le=10, strict=True, description="A session with pain at or above this is an alert."
    ),
]


class ClinicPublic(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_CLINIC_EXAMPLE]}
    )

    id: uuid.UUID
    name: str
    adherence_threshold_percent: ThresholdPercent
    pain_alert_at: PainAlertAt


class ClinicUpdate(BaseModel):
    """Thresholds: adherence 1 to 100 %, pain 1 to 10."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"adherence_threshold_percent": 80, "pain_alert_at": 6}]},
    )

    adherence_threshold_percent: ThresholdPercent | None = None
    pain_alert_at: PainAlertAt | None = None


# ----------------------------------------------------------------------------- clinicians

_CLINICIAN_EXAMPLE: dict[str, Any] = {
    "id": "5a3c1e7b-9d2f-4b6a-8c1e-2f3a4b5c6d7e",
    "email": "physio@clinic.example",
    "role": "clinician",
    "active": True,
    "created_at": "2026-11-23T10:00:00Z",
}


class ClinicianCreate(BaseModel):
    """A new clinician of the caller's clinic. Passwords: 12 to 256 characters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "physio@clinic.example",
                    "password": "a long passphrase",
                    "role": "clinician",
                }
            ]
        },
    )

    email: Email
    password: Annotated[Line, Field(min_length=12, max_length=256)]
    role: Role = Role.clinician


class ClinicianUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"active": False}]})

    role: Role | None = None
    active: Annotated[bool | None, Field(strict=True)] = None


class ClinicianPublic(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_CLINICIAN_EXAMPLE]}
    )

    id: uuid.UUID
    email: str
    role: Role
    active: bool
    created_at: datetime


class ClinicianPage(Page[ClinicianPublic]):
    """A page of the clinic's clinicians, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_CLINICIAN_EXAMPLE], "next_cursor": None}]}
    )


# ---------------------------------------------------------------------------- API clients

_API_CLIENT_EXAMPLE: dict[str, Any] = {
    "id": "0d6f5a3e-7b2c-4e1f-9a8b-3c4d5e6f7a8b",
    "name": "Rehab EHR",
    "scopes": ["adherence:read", "changes:read"],
    "created_at": "2026-11-23T10:00:00Z",
}


class ApiClientCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Rehab EHR", "scopes": ["adherence:read"]}]},
    )

    name: Annotated[Name, Field(min_length=1, max_length=120)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(Scope))]


class ApiClientPublic(BaseModel):
    """A clinic system's credentials; `client_id` is its `id`."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_API_CLIENT_EXAMPLE]}
    )

    id: uuid.UUID
    name: str
    scopes: list[str]
    created_at: datetime


class ApiClientPage(Page[ApiClientPublic]):
    """A page of the clinic's API clients that are not revoked, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_API_CLIENT_EXAMPLE], "next_cursor": None}]}
    )


class ApiClientCreated(ApiClientPublic):
    """As created: the only answer that shows the secret."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_API_CLIENT_EXAMPLE, "client_secret": "s3cr3t…"}]}
    )

    client_secret: str = Field(description="Shown once; Dorsi keeps only a hash.")


class ApiClientUpdate(BaseModel):
    """Fields to change. Changing the scopes signs the client's current tokens out."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"scopes": ["adherence:read"]}]}
    )

    name: Annotated[Name | None, Field(min_length=1, max_length=120)] = None
    scopes: Annotated[list[Scope] | None, Field(min_length=1, max_length=len(Scope))] = None
