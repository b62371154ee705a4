"""Webhook endpoints, the queue of their deliveries, and what alerts remember so that each
fires once per occurrence."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKeyConstraint, Index, String
from sqlmodel import Field, SQLModel

from app.core.columns import JSONType, UTCDateTime, utcnow


class WebhookEndpoint(SQLModel, table=True):
    """Where a clinic wants its events sent, and with which secrets they are signed.

    The secrets are kept as they are: signing needs them (an HMAC cannot be checked
    against a hash). After a rotation the previous secret signs beside the new one until
    ``previous_secret_expires_at``."""

    __tablename__ = "webhook_endpoint"
    __table_args__ = (Index("ix_webhook_endpoint_clinic_id_created_at", "clinic_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id")
    url: str = Field(sa_type=String(2048))
    description: str = Field(default="", sa_type=String(500))
    events: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, sa_type=String(200))
    secret: str = Field(sa_type=String(100))
    previous_secret: str | None = Field(default=None, sa_type=String(100))
    previous_secret_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Since when every attempt failed (None: the last one succeeded, or none was made).
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The newest change of the clinic already turned into deliveries for this endpoint.
    through_change: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint, sent until it is answered 2xx or given up on.

    A worker claims a pending delivery by moving ``next_attempt_at`` a lease ahead (and
    counting the attempt) in a transaction of its own; if it dies mid-send, the delivery
    is due again when the lease ends, so nothing claimed is lost."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_endpoint_id_created_at_id", "endpoint_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id")
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoint.id")
    # The Standard Webhooks message id: the same for every attempt, so receivers dedupe.
    event_id: str = Field(sa_type=String(64))
    event_type: str = Field(sa_type=String(40))
    change_id: int | None = Field(default=None, sa_type=BigInteger)
    # The body sent (made at the first attempt from the change, or at queueing for
    # alerts and tests), so that every attempt sends the same bytes.
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    status: str = Field(default="pending", sa_type=String(12))
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, sa_type=String(64))
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_latency_ms: int | None = None
    last_error: str | None = Field(default=None, sa_type=String(500))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AdherenceAlertState(SQLModel, table=True):
    """Whether a patient is below the clinic's adherence threshold, as last announced:
    `adherence.below_threshold` fires on the move into it, `adherence.recovered` out."""

    __tablename__ = "adherence_alert_state"
    __table_args__ = (
        ForeignKeyConstraint(["clinic_id", "patient_id"], ["patient.clinic_id", "patient.id"]),
    )

    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", primary_key=True)
    patient_id: uuid.UUID = Field(primary_key=True)
    below: bool = False
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AlertCursor(SQLModel, table=True):
    """Per clinic, the newest change the pain alerts were evaluated through."""

    __tablename__ = "alert_cursor"

    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", primary_key=True)
    through_change: int = Field(default=0, sa_type=BigInteger)
