"""What the change feed reads and answers: one item type per kind of resource, told apart
by `type`, each carrying that resource's own public schema."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.adherence.schemas import RecordPublic
from app.clinics.schemas import ClinicPublic
from app.core.timestamps import Instant
from app.exercises.schemas import ExercisePublic
from app.patients.schemas import PATIENT_PUBLIC_EXAMPLE, PatientPublic
from app.plans.schemas import PlanPublic, TemplatePublic

MAX_LIMIT = 1000
MAX_WAIT_SECONDS = 30


class ChangeType(StrEnum):
    patient = "patient"
    exercise = "exercise"
    plan_template = "plan_template"
    plan = "plan"
    adherence_record = "adherence_record"
    clinic = "clinic"


class Operation(StrEnum):
    create = "create"
    update = "update"
    delete = "delete"


class ChangeQuery(BaseModel):
    """Where to read from, how much, of what, and how long to wait for it."""

    model_config = ConfigDict(extra="forbid")

    cursor: Annotated[
        str | None,
        Field(
            max_length=512,
            description="A `cursor` or `next_cursor` the feed gave; left out: from the "
            "oldest change kept.",
        ),
    ] = None
    limit: Annotated[
        int, Field(ge=1, le=MAX_LIMIT, description=f"Page size, 1 to {MAX_LIMIT}.")
    ] = 100
    types: Annotated[
        list[ChangeType] | None,
        Field(
            description="Only these types (repeat the parameter for several). The cursor "
            "still moves past the changes of other types.",
        ),
    ] = None
    wait: Annotated[
        float,
        Field(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Seconds to wait for a change when there is none yet (long poll), "
            f"0 to {MAX_WAIT_SECONDS}.",
        ),
    ] = 0


class ExportQuery(BaseModel):
    """Which resources of the type to export."""

    model_config = ConfigDict(extra="forbid")

    since: Annotated[
        Instant | None,
        Field(
            description="Only resources created or changed at or after this time (RFC 3339, "
            "with its offset). Left out: every live resource. Clinic settings are always "
            "exported.",
            examples=["2026-11-23T10:00:00Z"],
        ),
    ] = None


_CHANGE_EXAMPLE: dict[str, Any] = {
    "cursor": "WzQyXQ",
    "type": "patient",
    "id": PATIENT_PUBLIC_EXAMPLE["id"],
    "operation": "create",
    "version": 1,
    "occurred_at": "2026-11-23T10:00:00Z",
    "data": PATIENT_PUBLIC_EXAMPLE,
}


class _Change(BaseModel):
    cursor: str = Field(description="This change's position: read on from here.")
    id: uuid.UUID = Field(description="The resource's id.")
    operation: Operation
    version: int | None = Field(
        description="The resource's version this change made (clinic settings have none)."
    )
    occurred_at: datetime


class PatientChange(_Change):
    model_config = ConfigDict(json_schema_extra={"examples": [_CHANGE_EXAMPLE]})

    type: Literal["patient"]
    data: PatientPublic | None = Field(description="As `getPatient`; null for a delete.")


class ExerciseChange(_Change):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**_CHANGE_EXAMPLE, "type": "exercise", "data": None, "operation": "delete"}
            ]
        }
    )

    type: Literal["exercise"]
    data: ExercisePublic | None = Field(description="As `getExercise`; null for a delete.")


class PlanTemplateChange(_Change):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**_CHANGE_EXAMPLE, "type": "plan_template", "data": None, "operation": "delete"}
            ]
        }
    )

    type: Literal["plan_template"]
    data: TemplatePublic | None = Field(description="As `getPlanTemplate`; null for a delete.")


class PlanChange(_Change):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_CHANGE_EXAMPLE, "type": "plan", "data": None}]}
    )

    type: Literal["plan"]
    data: PlanPublic | None = Field(
        description="As `getPlan` answered while this version was the newest."
    )


class AdherenceRecordChange(_Change):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**_CHANGE_EXAMPLE, "type": "adherence_record", "data": None, "operation": "delete"}
            ]
        }
    )

    type: Literal["adherence_record"]
    data: RecordPublic | None = Field(
        description="As `getAdherenceRecord` answered while this version was current; "
        "null for a delete."
    )


class ClinicChange(_Change):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_CHANGE_EXAMPLE,
                    "type": "clinic",
                    "data": None,
                    "version": None,
                    "operation": "update",
                }
            ]
        }
    )

    type: Literal["clinic"]
    data: ClinicPublic | None = Field(description="As `getClinic` after the change.")


Change = Annotated[
    PatientChange
    | ExerciseChange
    | PlanTemplateChange
    | PlanChange
    | AdherenceRecordChange
    | ClinicChange,
    Field(discriminator="type"),
]


class ChangePage(BaseModel):
    """Changes in commit order. Follow `next_cursor` forever: it is never null."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_CHANGE_EXAMPLE], "next_cursor": "WzQyXQ"}]}
    )

    items: list[Change]
    next_cursor: str = Field(description="Where to read from next time, even after an empty page.")
