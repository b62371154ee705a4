"""What the patient app reads."""

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.adherence.models import SessionStatus
from app.patients.models import Side
from app.plans.models import BandColour
from app.plans.schemas import ITEM_PUBLIC_EXAMPLE


class Me(BaseModel):
    """The signed-in patient."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f0e8a52-2c1b-4a8e-9d3f-1b2c3d4e5f60",
                    "affected_side": "left",
                    "time_zone": "Europe/Lisbon",
                    "today": "2026-11-23",
                }
            ]
        }
    )

    id: uuid.UUID
    affected_side: Side
    time_zone: str
    today: date = Field(description="Today's date where the patient is.")


class TodayExercise(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0f64f410-4838-54e7-ba8d-49203dceac9e",
                    "slug": "ankle-dorsiflexion",
                    "name": "Ankle dorsiflexion with a band or towel",
                    "steps": ["Sit on the floor with your legs stretched out in front of you."],
                }
            ]
        }
    )

    id: uuid.UUID
    slug: str
    name: str
    steps: list[str]


TODAY_RECORD_EXAMPLE: dict[str, Any] = {
    "id": "6c1f0d6e-93b2-4c57-b4c8-2f0b1d7e9a10",
    "status": "completed",
    "performed_at": "2026-11-23T18:30:00Z",
    "sets_done": 3,
    "reps_done": 10,
    "pain": 2,
}


class TodayRecord(BaseModel):
    """A session of this item the patient already recorded today."""

    model_config = ConfigDict(json_schema_extra={"examples": [TODAY_RECORD_EXAMPLE]})

    id: uuid.UUID
    status: SessionStatus
    performed_at: datetime = Field(description="When, with the offset it was recorded with.")
    sets_done: int | None
    reps_done: int | None
    pain: int | None


TODAY_ITEM_EXAMPLE: dict[str, Any] = {
    "item_id": ITEM_PUBLIC_EXAMPLE["id"],
    "order": 1,
    "exercise": {
        "id": "0f64f410-4838-54e7-ba8d-49203dceac9e",
        "slug": "ankle-dorsiflexion",
        "name": "Ankle dorsiflexion with a band or towel",
        "steps": ["Sit on the floor with your legs stretched out in front of you."],
    },
    "sets": 3,
    "reps": 10,
    "hold_seconds": None,
    "rest_seconds": None,
    "side": "left",
    "resistance": None,
    "notes": None,
    "times_per_day": 1,
    "due": "flexible",
    "sessions_per_week": 3,
    "recorded": [],
}


class TodayItem(BaseModel):
    """An item due today: on one of its weekdays (`scheduled`), or any day until its weekly
    sessions are done (`flexible`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [TODAY_ITEM_EXAMPLE]})

    item_id: uuid.UUID
    order: int
    exercise: TodayExercise
    sets: int | None
    reps: int | None
    hold_seconds: int | None
    rest_seconds: int | None
    side: Side | None
    resistance: BandColour | None
    notes: str | None
    times_per_day: int
    due: Literal["scheduled", "flexible"]
    sessions_per_week: int | None
    recorded: list[TodayRecord] = Field(
        description="What the patient already recorded for this item today."
    )


class Today(BaseModel):
    """What the patient's plan asks of today, in the patient's time zone."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "date": "2026-11-23",
                    "time_zone": "Europe/Lisbon",
                    "plan_id": "5e4d3c2b-1a09-4f8e-8d7c-6b5a4f3e2d1c",
                    "plan_version": 2,
                    "items": [TODAY_ITEM_EXAMPLE],
                }
            ]
        }
    )

    date: date
    time_zone: str
    plan_id: uuid.UUID | None = Field(description="Null when no plan is active today.")
    plan_version: int | None
    items: list[TodayItem]
