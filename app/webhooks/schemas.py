"""What the webhook routes read and answer, and the events an endpoint may subscribe to."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.text import Line

MAX_URL_LENGTH = 2048


class EventType(StrEnum):
    """What an endpoint subscribes to: one event, or every event of a resource (`.*`)."""

    patient_all = "patient.*"
    patient_created = "patient.created"
    patient_updated = "patient.updated"
    patient_deleted = "patient.deleted"
    plan_all = "plan.*"
    plan_created = "plan.created"
    plan_updated = "plan.updated"
    plan_deleted = "plan.deleted"
    adherence_record_all = "adherence_record.*"
    adherence_record_created = "adherence_record.created"
    adherence_record_updated = "adherence_record.updated"
    adherence_record_deleted = "adherence_record.deleted"
    adherence_below_threshold = "adherence.below_threshold"
    adherence_recovered = "adherence.recovered"
    pain_reported_high = "pain.reported_high"


# The change feed's resources that webhooks carry, and the event each operation makes.
RESOURCE_TYPES = ("patient", "plan", "adherence_record")
OPERATION_EVENTS = {"create": "created", "update": "updated", "delete": "deleted"}
TEST_EVENT = "webhook.test"


def subscribed(events: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``events`` receives ``event_type`` (tests always)."""
    if event_type == TEST_EVENT:
        return True
    resource = event_type.split(".", 1)[0]
    return event_type in events or f"{resource}.*" in events


_ENDPOINT_EXAMPLE: dict[str, Any] = {
    "id": "5a1f3c9e-2b7d-4e8a-9c6f-1d2e3f4a5b6c",
    "url": "https://ehr.example.org/hooks/dorsi",
    "description": "Riverside EHR",
    "events": ["adherence.below_threshold", "pain.reported_high", "plan.*"],
    "enabled": True,
    "disabled_reason": None,
    "failing_since": None,
    "previous_secret_expires_at": None,
    "created_at": "2026-12-03T10:00:00Z",
    "updated_at": "2026-12-03T10:00:00Z",
}
SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

URL = Annotated[
    str,
    Field(
        min_length=8,
        max_length=MAX_URL_LENGTH,
        description="Where events are POSTed: https, on a public address.",
    ),
]
Events = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EventType), description="The events to send here."),
]
Description = Annotated[Line, Field(max_length=500, description="What the endpoint is.")]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{k: _ENDPOINT_EXAMPLE[k] for k in ("url", "events", "description")}]
        },
    )

    url: URL
    events: Events
    description: Description = ""

    @field_validator("events")
    @classmethod
    def _distinct(cls, events: list[EventType]) -> list[EventType]:
        return sorted(set(events))


class WebhookUpdate(BaseModel):
    """Only the fields sent change. Enabling a disabled endpoint sends only events that
    happen from then on."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": True}]})

    url: URL | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = None

    @field_validator("events")
    @classmethod
    def _distinct(cls, events: list[EventType] | None) -> list[EventType] | None:
        return None if events is None else sorted(set(events))


class WebhookPublic(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_ENDPOINT_EXAMPLE]}
    )

    id: uuid.UUID
    url: str
    description: str
    events: list[EventType]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why Dorsi disabled it: `gone` (answered 410) or `failing` (failed "
        "for 5 days). Null while enabled or when disabled by a person."
    )
    failing_since: datetime | None = Field(
        description="Since when every attempt has failed; null after a success."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation, until when the previous secret also signs."
    )
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookPublic):
    """The endpoint with its signing secret: shown on creation and rotation only."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_ENDPOINT_EXAMPLE, "secret": SECRET_EXAMPLE}]}
    )

    secret: str = Field(
        description="The `whsec_` signing secret (Standard Webhooks). Shown this once."
    )


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


_DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "8e2d4c6a-1f3b-4a5c-9d7e-2b4c6d8e0f1a",
    "event_id": "evt_42",
    "event_type": "plan.updated",
    "status": "pending",
    "attempts": 2,
    "last_attempt_at": "2026-12-03T10:00:35Z",
    "response_status_code": 503,
    "latency_ms": 84,
    "error": "HTTP 503",
    "next_attempt_at": "2026-12-03T10:02:05Z",
    "created_at": "2026-12-03T10:00:00Z",
    "delivered_at": None,
}


class DeliveryPublic(BaseModel):
    """One event for this endpoint, and how its attempts went (the last one's answer)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY_EXAMPLE]})

    id: uuid.UUID
    event_id: str = Field(description="The `webhook-id` sent: the same on every attempt.")
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_attempt_at: datetime | None
    response_status_code: int | None = Field(description="The last attempt's HTTP status.")
    latency_ms: int | None = Field(description="How long the last attempt took.")
    error: str | None = Field(description="What went wrong with the last attempt.")
    next_attempt_at: datetime | None = Field(description="When it is tried next, if at all.")
    created_at: datetime
    delivered_at: datetime | None


class WebhookPage(BaseModel):
    """Oldest first; follow `next_cursor` until it is null."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_ENDPOINT_EXAMPLE], "next_cursor": None}]}
    )

    items: list[WebhookPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class DeliveryPage(BaseModel):
    """Newest first; follow `next_cursor` until it is null."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_DELIVERY_EXAMPLE], "next_cursor": None}]}
    )

    items: list[DeliveryPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )
