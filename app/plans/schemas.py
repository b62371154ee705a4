"""What the plan and template APIs read and write. Limits are enforced and documented here."""

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.pagination import Page, PageQuery
from app.core.text import Name, Text
from app.core.timestamps import Day
from app.exercises.catalog import catalog_id
from app.patients.models import Side
from app.plans.models import BandColour, PlanStatus, Provenance

Weekday = Annotated[
    int, Field(ge=1, le=7, strict=True, description="ISO weekday: 1 Monday … 7 Sunday.")
]


class Schedule(BaseModel):
    """When an item is due: on given weekdays, or a number of sessions a week on any days;
    `times_per_day` sessions on each day it is done."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"days_of_week": [1, 3, 5], "times_per_day": 1}]},
    )

    days_of_week: Annotated[list[Weekday] | None, Field(min_length=1, max_length=7)] = None
    sessions_per_week: Annotated[int | None, Field(ge=1, le=21, strict=True)] = None
    times_per_day: Annotated[int, Field(ge=1, le=6, strict=True)] = 1

    @model_validator(mode="after")
    def _one_rule(self) -> Self:
        if (self.days_of_week is None) == (self.sessions_per_week is None):
            raise ValueError("Give exactly one of days_of_week or sessions_per_week.")
        if self.days_of_week is not None:
            if len(set(self.days_of_week)) != len(self.days_of_week):
                raise ValueError("days_of_week has a day twice.")
            self.days_of_week = sorted(self.days_of_week)
        return self


class ItemDose(BaseModel):
    """Dose limits: sets 1 to 20, reps 1 to 100, hold and rest 0 to 600 seconds."""

    sets: Annotated[int | None, Field(ge=1, le=20, strict=True)] = None
    reps: Annotated[int | None, Field(ge=1, le=100, strict=True)] = None
    hold_seconds: Annotated[int | None, Field(ge=0, le=600, strict=True)] = None
    rest_seconds: Annotated[int | None, Field(ge=0, le=600, strict=True)] = None


# Examples name the shipped catalog's own ids: a client can try them as they are.
GLOBAL_TEMPLATE_SLUG = "foot-drop-home-program"
GLOBAL_TEMPLATE_ID = catalog_id(f"template:{GLOBAL_TEMPLATE_SLUG}")
ITEM_EXAMPLE: dict[str, Any] = {
    "exercise_id": "0f64f410-4838-54e7-ba8d-49203dceac9e",
    "sets": 3,
    "reps": 10,
    "hold_seconds": None,
    "rest_seconds": 60,
    "side": "left",
    "schedule": {"sessions_per_week": 3, "times_per_day": 1},
    "resistance": "yellow",
    "notes": "Slowly, both ways.",
}


class TemplateItemIn(ItemDose):
    """One exercise of a template, in order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ITEM_EXAMPLE]})

    exercise_id: uuid.UUID
    side: Side | None = Field(default=None, description="Null: the patient's affected side.")
    schedule: Schedule
    resistance: BandColour | None = None
    notes: Annotated[Text | None, Field(max_length=1000)] = None


class PlanItemIn(TemplateItemIn):
    """One exercise of a plan. Send an item's `id` back to keep it the same item (and its
    adherence history) across versions; items without one are new."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ITEM_EXAMPLE]})

    id: uuid.UUID | None = None


class ExerciseBrief(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0f64f410-4838-54e7-ba8d-49203dceac9e",
                    "slug": "ankle-dorsiflexion",
                    "name": "Ankle dorsiflexion with a band or towel",
                }
            ]
        }
    )

    id: uuid.UUID
    slug: str
    name: str


ITEM_PUBLIC_EXAMPLE: dict[str, Any] = {
    **ITEM_EXAMPLE,
    "dose_source": "clinician",
    "schedule_source": "article",
    "id": "8d5c0f7e-1a2b-4c3d-9e8f-7a6b5c4d3e2f",
    "order": 1,
    "exercise": {
        "id": "0f64f410-4838-54e7-ba8d-49203dceac9e",
        "slug": "ankle-dorsiflexion",
        "name": "Ankle dorsiflexion with a band or towel",
    },
}


class PlanItemPublic(ItemDose):
    model_config = ConfigDict(json_schema_extra={"examples": [ITEM_PUBLIC_EXAMPLE]})

    id: uuid.UUID
    order: int
    exercise_id: uuid.UUID
    exercise: ExerciseBrief
    side: Side | None
    schedule: Schedule
    resistance: BandColour | None
    notes: str | None
    dose_source: Provenance | None = Field(
        description="Where `sets`, `reps`, `hold_seconds` and `rest_seconds` came from: "
        "`article` (the source article prescribes them), `default` (Dorsi filled them in) "
        "or `clinician` (the clinic set or changed them); null when the item gives no dose. "
        "Set by Dorsi: an item keeps its source while its dose is unchanged."
    )
    schedule_source: Provenance = Field(
        description="Where `schedule` came from: `article`, `default` (Dorsi's default, "
        "such as the global template's daily schedules where the article gives no "
        "frequency) or `clinician`. Set by Dorsi: an item keeps its source while its "
        "schedule is unchanged."
    )


Items = Annotated[list[PlanItemIn], Field(max_length=30, description="At most 30 items.")]
Title = Annotated[Name, Field(min_length=1, max_length=120)]
Notes = Annotated[Text | None, Field(max_length=2000)]


class PlanCreate(BaseModel):
    """A new draft plan, from a template (copied: later template edits don't touch it) or
    from its own items."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"template_id": str(GLOBAL_TEMPLATE_ID), "start_date": "2026-11-24"}]
        },
    )

    template_id: uuid.UUID | None = None
    title: Title | None = None
    notes: Notes = None
    start_date: Day | None = Field(default=None, description="Default: today for the patient.")
    end_date: Day | None = None
    items: Items | None = None


class PlanUpdate(BaseModel):
    """Changes to a plan; each makes a new version. `items`, when given, replaces them all."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "active"}]}
    )

    status: PlanStatus | None = None
    title: Title | None = None
    notes: Notes = None
    start_date: Day | None = None
    end_date: Day | None = None
    items: Items | None = None


PLAN_EXAMPLE: dict[str, Any] = {
    "id": "5e4d3c2b-1a09-4f8e-8d7c-6b5a4f3e2d1c",
    "patient_id": "3f0e8a52-2c1b-4a8e-9d3f-1b2c3d4e5f60",
    "template_id": None,
    "status": "active",
    "version": 2,
    "title": "Foot drop home program",
    "notes": None,
    "start_date": "2026-11-24",
    "end_date": None,
    "items": [ITEM_PUBLIC_EXAMPLE],
    "created_at": "2026-11-23T10:00:00Z",
    "updated_at": "2026-11-23T10:05:00Z",
    "governs_from": "2026-11-24",
    "governs_to": None,
}


class PlanPublic(BaseModel):
    """A plan as it is now (its newest version)."""

    model_config = ConfigDict(json_schema_extra={"examples": [PLAN_EXAMPLE]})

    id: uuid.UUID
    patient_id: uuid.UUID
    template_id: uuid.UUID | None
    status: PlanStatus
    version: int
    title: str
    notes: str | None
    start_date: date
    end_date: date | None
    items: list[PlanItemPublic]
    created_at: datetime
    updated_at: datetime
    governs_from: date | None = Field(
        description="The first of the patient's local days the plan governs, as of this "
        "version: its first active version's start date (a plan moved from paper counts "
        "from when it began). Null while it governs no day (a draft, or a plan completed "
        "or cancelled before any day it governed). Uploads, today, the summary, the "
        "overview, the change feed and FHIR follow the same rule (see the README)."
    )
    governs_to: date | None = Field(
        description="The last day it governs, as of this version: its end date, or for a "
        "completed or cancelled plan the day before that version was made. Null: no end "
        "yet, or it governs no day."
    )


class PlanPage(Page[PlanPublic]):
    """A page of a patient's plans, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [PLAN_EXAMPLE], "next_cursor": None}]}
    )


PLAN_VERSION_EXAMPLE: dict[str, Any] = {
    "plan_id": PLAN_EXAMPLE["id"],
    "number": 1,
    "status": "draft",
    "title": "Foot drop home program",
    "notes": None,
    "start_date": "2026-11-24",
    "end_date": None,
    "items": [ITEM_PUBLIC_EXAMPLE],
    "created_at": "2026-11-23T10:00:00Z",
    "created_by": "5a3c1e7b-9d2f-4b6a-8c1e-2f3a4b5c6d7e",
    "governs_from": None,
    "governs_to": None,
}


class PlanVersionPublic(BaseModel):
    """A plan as it was from `created_at` until the next version."""

    model_config = ConfigDict(json_schema_extra={"examples": [PLAN_VERSION_EXAMPLE]})

    plan_id: uuid.UUID
    number: int
    status: PlanStatus
    title: str
    notes: str | None
    start_date: date
    end_date: date | None
    items: list[PlanItemPublic]
    created_at: datetime
    created_by: uuid.UUID | None
    governs_from: date | None = Field(
        description="The first of the patient's local days this version governs: the "
        "plan's start date for its first active version (a plan moved from paper counts "
        "from when it began), the day it was made for later ones, never before its own "
        "start date. Null: it governs no day (a draft, a version that completed or "
        "cancelled the plan, or one replaced on the day it was made). Uploads, today, the "
        "summary and the overview follow the same rule (see the README)."
    )
    governs_to: date | None = Field(
        description="The last day it governs: the day before the plan's next version was "
        "made, or its end date, whichever is earlier. Null: no end yet, or it governs no "
        "day."
    )


class PlanVersionPage(Page[PlanVersionPublic]):
    """A page of a plan's versions, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [PLAN_VERSION_EXAMPLE],
                    "next_cursor": None,
                }
            ]
        }
    )


# The global template's second item, as the shipped catalog has it.
GLOBAL_TEMPLATE_ITEM_EXAMPLE: dict[str, Any] = {
    **ITEM_PUBLIC_EXAMPLE,
    "id": str(catalog_id(f"template:{GLOBAL_TEMPLATE_SLUG}:ankle-dorsiflexion")),
    "order": 2,
    "sets": 3,
    "reps": 10,
    "hold_seconds": None,
    "rest_seconds": None,
    "side": None,
    "schedule": {"sessions_per_week": 3, "times_per_day": 1},
    "resistance": None,
    "notes": None,
}
TEMPLATE_EXAMPLE: dict[str, Any] = {
    "id": str(GLOBAL_TEMPLATE_ID),
    "name": "Foot drop home program",
    "description": "The seven foot-drop exercises of the source article, with its dosage.",
    "owner": "global",
    "version": 1,
    "items": [GLOBAL_TEMPLATE_ITEM_EXAMPLE],
    "created_at": "2026-11-23T10:00:00Z",
    "updated_at": "2026-11-23T10:00:00Z",
}


class TemplateItemPublic(PlanItemPublic):
    model_config = ConfigDict(json_schema_extra={"examples": [GLOBAL_TEMPLATE_ITEM_EXAMPLE]})


class TemplatePublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [TEMPLATE_EXAMPLE]})

    id: uuid.UUID
    name: str
    description: str
    owner: str = Field(description="`global` (shipped, read-only) or `clinic`.")
    version: int
    items: list[TemplateItemPublic]
    created_at: datetime
    updated_at: datetime


class TemplatePage(Page[TemplatePublic]):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [TEMPLATE_EXAMPLE], "next_cursor": None}]}
    )


class TemplateCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Early stroke program", "items": [ITEM_EXAMPLE]}]},
    )

    name: Title
    description: Annotated[Text, Field(max_length=2000)] = ""
    items: Annotated[list[TemplateItemIn], Field(min_length=1, max_length=30)]


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Early stroke program v2"}]}
    )

    name: Title | None = None
    description: Annotated[Text | None, Field(max_length=2000)] = None
    items: Annotated[list[TemplateItemIn] | None, Field(min_length=1, max_length=30)] = None


class TemplateCopy(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Our foot drop program"}]}
    )

    name: Title | None = None


class PlanQuery(PageQuery):
    status: PlanStatus | None = None
