"""What the exercise API reads and writes."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from app.core.pagination import Page, PageQuery
from app.core.text import Line, Name, Text
from app.exercises.models import BodyRegion, Equipment, Mode, Movement, Position, catalog_id


class Dose(BaseModel):
    """A dose as the source gives it; a field is null where the source gives no number."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sets": 3,
                    "reps": 10,
                    "hold_seconds": None,
                    "rest_seconds": None,
                    "sessions_per_week": 3,
                    "each_side": True,
                }
            ]
        },
    )

    sets: Annotated[int | None, Field(ge=1, le=20, strict=True)] = None
    reps: Annotated[int | None, Field(ge=1, le=100, strict=True)] = None
    hold_seconds: Annotated[int | None, Field(ge=0, le=600, strict=True)] = None
    rest_seconds: Annotated[int | None, Field(ge=0, le=600, strict=True)] = None
    sessions_per_week: Annotated[int | None, Field(ge=1, le=21, strict=True)] = None
    each_side: bool | None = Field(
        default=None, strict=True, description="True when the dose is for each foot or leg in turn."
    )


class Reference(BaseModel):
    """A published source the exercise is drawn from."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "citation": "Mount J, Dacko S. Effects of dorsiflexor endurance exercises "
                    "on foot drop secondary to multiple sclerosis: a pilot study. "
                    "NeuroRehabilitation. 2006;21(1):43-50.",
                    "kind": "journal_article",
                    "url": None,
                }
            ]
        },
    )

    citation: Annotated[Name, Field(min_length=1, max_length=500)]
    kind: Literal["journal_article", "web_article", "clinical_guideline", "other"]
    url: HttpUrl | None = None


class Media(BaseModel):
    """An image or video that shows the exercise."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "video",
                    "url": "https://media.example.org/dorsiflexion.mp4",
                    "caption": None,
                }
            ]
        },
    )

    kind: Literal["image", "video"]
    url: HttpUrl
    caption: Annotated[Line | None, Field(max_length=300)] = None


class ExerciseRef(BaseModel):
    """A short link to another exercise, such as an easier or harder variant."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": str(catalog_id("ankle-abduction-adduction-active")),
                    "slug": "ankle-abduction-adduction-active",
                    "name": "Ankle abduction/adduction, active",
                }
            ]
        }
    )

    id: uuid.UUID
    slug: str
    name: str


EXERCISE_EXAMPLE: dict[str, Any] = {
    "id": str(catalog_id("ankle-dorsiflexion")),
    "slug": "ankle-dorsiflexion",
    "name": "Ankle dorsiflexion with a band or towel",
    "summary": "Flex the ankle by drawing the toes toward you with a stretch band or towel.",
    "steps": [
        "Sit on the floor with both legs stretched out in front of you.",
        "Loop a stretch band or a towel around the affected foot.",
        "Slowly bring your toes up toward you.",
        "Return to the starting position.",
    ],
    "body_region": "ankle",
    "movements": ["dorsiflexion"],
    "mode": "active_assisted",
    "position": "long_sitting",
    "equipment": ["stretch_band", "towel"],
    "default_dose": {
        "sets": 3,
        "reps": 10,
        "hold_seconds": None,
        "rest_seconds": None,
        "sessions_per_week": 3,
        "each_side": True,
    },
    "cautions": [],
    "easier_variant": None,
    "harder_variant": None,
    "media": [],
    "references": [
        {
            "citation": "Mount J, Dacko S. Effects of dorsiflexor endurance exercises on foot "
            "drop secondary to multiple sclerosis: a pilot study. NeuroRehabilitation. "
            "2006;21(1):43-50.",
            "kind": "journal_article",
            "url": None,
        }
    ],
    "owner": "global",
    "version": 1,
    "created_at": "2026-11-23T10:00:00Z",
    "updated_at": "2026-11-23T10:00:00Z",
}


class ExercisePublic(BaseModel):
    """An exercise definition as clients see it."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXERCISE_EXAMPLE]})

    id: uuid.UUID
    slug: str
    name: str
    summary: str
    steps: list[str] = Field(description="What to do, in order.")
    body_region: BodyRegion
    movements: list[Movement]
    mode: Mode
    position: Position | None = Field(
        description="Starting position; null where the source does not name one."
    )
    equipment: list[Equipment] = Field(
        description="Everything the exercise may use; the steps say where one item "
        "can stand in for another (a band or a towel)."
    )
    default_dose: Dose | None = Field(description="Null where the source gives no dosage.")
    cautions: list[str]
    easier_variant: ExerciseRef | None
    harder_variant: ExerciseRef | None
    media: list[Media]
    references: list[Reference]
    owner: Literal["global", "clinic"] = Field(
        description="`global` for the shipped catalog, `clinic` for a clinic's own exercise."
    )
    version: int = Field(description="Goes up by one with every change.")
    created_at: datetime
    updated_at: datetime


class ExerciseQuery(PageQuery):
    """Filters for the exercise list; all given filters must match."""

    body_region: BodyRegion | None = None
    movement: Movement | None = None
    mode: Mode | None = None
    position: Position | None = None
    equipment: Equipment | None = None
    q: Annotated[
        Line | None,
        Field(min_length=1, max_length=100, description="Words in the name or summary."),
    ] = None


class ExercisePage(Page[ExercisePublic]):
    """A page of exercises."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [EXERCISE_EXAMPLE], "next_cursor": None}]}
    )


Slug = Annotated[str, Field(min_length=2, max_length=80, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
Step = Annotated[Text, Field(min_length=1, max_length=500)]
Caution = Annotated[Text, Field(min_length=1, max_length=500)]

EXERCISE_CREATE_EXAMPLE: dict[str, Any] = {
    "slug": "seated-toe-taps",
    "name": "Seated toe taps",
    "summary": "Tapping the toes while the heel stays down.",
    "steps": ["Sit with both feet flat.", "Lift the toes of the affected foot and tap them."],
    "body_region": "ankle",
    "movements": ["dorsiflexion"],
    "mode": "active",
    "position": "seated",
    "equipment": ["chair"],
    "default_dose": {"sets": 2, "reps": 15},
}


class ExerciseCreate(BaseModel):
    """A clinic's own exercise. Limits: 1 to 30 steps of ≤ 500 characters, ≤ 10 references."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [EXERCISE_CREATE_EXAMPLE]}
    )

    slug: Slug = Field(
        description="Lowercase words joined by hyphens; unique in the clinic "
        "and never the slug of a global exercise."
    )
    name: Annotated[Name, Field(min_length=1, max_length=120)]
    summary: Annotated[Text, Field(min_length=1, max_length=2000)]
    steps: Annotated[list[Step], Field(min_length=1, max_length=30)]
    body_region: BodyRegion
    movements: Annotated[list[Movement], Field(min_length=1, max_length=len(Movement))]
    mode: Mode
    position: Position | None = None
    equipment: Annotated[list[Equipment], Field(max_length=len(Equipment))] = []
    default_dose: Dose | None = None
    cautions: Annotated[list[Caution], Field(max_length=20)] = []
    easier_variant_id: uuid.UUID | None = None
    harder_variant_id: uuid.UUID | None = None
    media: Annotated[list[Media], Field(max_length=10)] = []
    references: Annotated[list[Reference], Field(max_length=10)] = []


class ExerciseUpdate(BaseModel):
    """Fields to change on a clinic's own exercise; those left out stay as they are."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"default_dose": {"sets": 3, "reps": 12}}]},
    )

    slug: Slug | None = None
    name: Annotated[Name | None, Field(min_length=1, max_length=120)] = None
    summary: Annotated[Text | None, Field(min_length=1, max_length=2000)] = None
    steps: Annotated[list[Step] | None, Field(min_length=1, max_length=30)] = None
    body_region: BodyRegion | None = None
    movements: Annotated[list[Movement] | None, Field(min_length=1, max_length=len(Movement))] = (
        None
    )
    mode: Mode | None = None
    position: Position | None = None
    equipment: Annotated[list[Equipment] | None, Field(max_length=len(Equipment))] = None
    default_dose: Dose | None = None
    cautions: Annotated[list[Caution] | None, Field(max_length=20)] = None
    easier_variant_id: uuid.UUID | None = None
    harder_variant_id: uuid.UUID | None = None
    media: Annotated[list[Media] | None, Field(max_length=10)] = None
    references: Annotated[list[Reference] | None, Field(max_length=10)] = None
