"""Errors under `/fhir/R4` are FHIR OperationOutcomes with FHIR's status codes: the same
failures Dorsi reports everywhere (one error type each), told the way a FHIR client reads
them. Nothing here raises: `adapt_problem` translates the problem Dorsi would send."""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.errors import DorsiError

FHIR_MEDIA_TYPE = "application/fhir+json"
PREFIX = "/fhir/R4"

# The issue type (http://hl7.org/fhir/issue-type) of each status a FHIR route answers.
ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    503: "transient",
}


class Issue(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"severity": "error", "code": "not-found", "diagnostics": "No CarePlan."}]
        }
    )

    severity: str = Field(description="`error` for every failure.")
    code: str = Field(description="The issue type (http://hl7.org/fhir/issue-type).")
    diagnostics: str | None = None


class OperationOutcome(BaseModel):
    """What went wrong, as FHIR says it: every error under `/fhir/R4` has this shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "not-found",
                            "diagnostics": "No CarePlan 'ab12'.",
                        }
                    ],
                }
            ]
        }
    )

    resource_type: str = Field(alias="resourceType", examples=["OperationOutcome"])
    issue: list[Issue]


class FhirProblemAdapter:
    """Turns a problem into an OperationOutcome (`app.core.errors.problem_adapter`). A
    request that failed validation is 400 (FHIR has no 422), each invalid input an issue."""

    media_type = FHIR_MEDIA_TYPE

    @staticmethod
    def status_of(status: int) -> int:
        return 400 if status == 422 else status

    def __call__(
        self, body: Mapping[str, Any], headers: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        status = self.status_of(int(body["status"]))
        issues = [
            {
                "severity": "error",
                "code": ISSUE_TYPE.get(status, "exception" if status >= 500 else "processing"),
                "diagnostics": body.get("detail") or HTTPStatus(status).phrase,
            }
        ]
        for error in body.get("errors") or []:
            issues.append(
                {
                    "severity": "error",
                    "code": "invalid",
                    "diagnostics": f"{error['location']} {error['pointer']}: {error['detail']}",
                }
            )
        return {"resourceType": "OperationOutcome", "issue": issues}, headers


def outcome_responses(*errors: type[DorsiError]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting each OperationOutcome a FHIR route answers."""
    return {
        (400 if error.status == 422 else error.status): {
            "model": OperationOutcome,
            "description": HTTPStatus(400 if error.status == 422 else error.status).phrase,
            "content": {
                FHIR_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
            },
        }
        for error in errors
    }


def fhir_content(resource_type: str, example: dict[str, Any], description: str) -> dict[str, Any]:
    """A FHIR resource answer as the contract shows it: the resource's own definition is
    FHIR's (named in the description); the schema checks its type and that it is one."""
    return {
        "description": description,
        "content": {
            FHIR_MEDIA_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {
                        "resourceType": {"type": "string", "enum": [resource_type]},
                        "id": {"type": "string"},
                        "meta": {"type": "object"},
                    },
                    "additionalProperties": True,
                    "description": f"A FHIR R4 {resource_type}: "
                    f"https://hl7.org/fhir/R4/{resource_type.lower()}.html",
                },
                "example": example,
            }
        },
    }
