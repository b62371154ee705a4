"""Clinics (the tenant), clinicians, API clients, and sign-in sessions with their tokens."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, ForeignKeyConstraint, Index, Integer, String
from sqlmodel import Field, SQLModel

from app.core.columns import JSONType, UTCDateTime, utcnow


class Role(StrEnum):
    admin = "admin"
    clinician = "clinician"


class ActorKind(StrEnum):
    clinician = "clinician"
    patient = "patient"
    api_client = "api_client"
    system = "system"


class Clinic(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(sa_type=String(200))
    # The clinic overview flags patients below this adherence over the last 7 days, and
    # reports sessions with pain at or above pain_alert_at (the summary too).
    adherence_threshold_percent: int = Field(default=70, sa_column_kwargs={"server_default": "70"})
    pain_alert_at: int = Field(default=7, sa_column_kwargs={"server_default": "7"})
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Clinician(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", index=True)
    email: str = Field(sa_type=String(254), unique=True)
    password_hash: str = Field(sa_type=String(200))
    role: str = Field(sa_type=String(16))
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ApiClient(SQLModel, table=True):
    """A clinic system (EHR, rehab software) that signs in with client credentials."""

    __tablename__ = "api_client"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", index=True)
    name: str = Field(sa_type=String(120))
    secret_hash: str = Field(sa_type=String(200))
    scopes: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuthSession(SQLModel, table=True):
    """One sign-in: a clinician's, an API client's, or a patient's device after pairing.

    Every access token names its session; revoking the session refuses the token on its
    next request, and ends the refresh tokens bound to it.
    """

    __tablename__ = "auth_session"
    __table_args__ = (
        ForeignKeyConstraint(["clinic_id", "patient_id"], ["patient.clinic_id", "patient.id"]),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", index=True)
    actor_kind: str = Field(sa_type=String(16))
    clinician_id: uuid.UUID | None = Field(default=None, foreign_key="clinician.id", index=True)
    patient_id: uuid.UUID | None = Field(default=None, index=True)
    api_client_id: uuid.UUID | None = Field(default=None, foreign_key="api_client.id", index=True)
    device_name: str | None = Field(default=None, sa_type=String(120))
    scopes: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RefreshToken(SQLModel, table=True):
    """A patient device's refresh token, stored as a hash; each is good for one use."""

    __tablename__ = "refresh_token"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="auth_session.id", index=True)
    token_hash: str = Field(sa_type=String(64), unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AccessCode(SQLModel, table=True):
    """A short single-use code a clinician gives a patient to pair the mobile app."""

    __tablename__ = "access_code"
    __table_args__ = (
        ForeignKeyConstraint(["clinic_id", "patient_id"], ["patient.clinic_id", "patient.id"]),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", index=True)
    patient_id: uuid.UUID = Field(index=True)
    code_hash: str = Field(sa_type=String(64), unique=True)
    created_by: uuid.UUID | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RateLimitHit(SQLModel, table=True):
    """One counted attempt (a failed sign-in, a pairing, a refresh) under a limit's key.
    In the database so that every API process counts against the same limits."""

    __tablename__ = "rate_limit_hit"
    __table_args__ = (Index("ix_rate_limit_hit_key_at", "key", "at"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    key: str = Field(sa_type=String(400))
    at: datetime = Field(sa_type=UTCDateTime, index=True)
