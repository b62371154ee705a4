"""`/fhir/R4`: Dorsi's data, read-only, as FHIR R4 resources for clinic systems.

Staff tokens from `POST /v1/auth/token` (clinicians, and API clients holding each type's
scope); patient apps are refused, as on every clinic route. Every answer, errors
included, is application/fhir+json.
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth.deps import staff
from app.auth.principal import Caller, Scope
from app.core.db import SessionDep
from app.core.errors import BadRequest, Forbidden, NotFound, Unauthorized
from app.fhir import search, service
from app.fhir.capability import SCOPES, capability_statement
from app.fhir.outcome import FHIR_MEDIA_TYPE, PREFIX, fhir_content, outcome_responses
from app.fhir.resources import Resource

router = APIRouter(tags=["fhir"])
STARTED = datetime.now(UTC).isoformat()


class FhirResponse(Response):
    media_type = FHIR_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def base_url(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}{PREFIX}"


def reader(kind: str) -> Callable[..., Awaitable[Caller]]:
    return staff(Scope(SCOPES[kind]))


FhirId = Annotated[str, Path(max_length=64, description="The resource's id (a UUID).")]
READ_ERRORS = outcome_responses(BadRequest, Unauthorized, Forbidden, NotFound)
SEARCH_ERRORS = outcome_responses(BadRequest, Unauthorized, Forbidden)


def _read_params(request: Request) -> None:
    search.check_format(request.query_params)
    search.check_names(request.query_params, ())


EXAMPLE_META = {"versionId": "1", "lastUpdated": "2026-11-23T10:00:00+00:00"}
EXAMPLES: dict[str, dict[str, Any]] = {
    "Patient": {
        "resourceType": "Patient",
        "id": "3f0e8a52-1d2c-4b5a-9e8f-7a6b5c4d3e2f",
        "meta": EXAMPLE_META,
        "identifier": [
            {
                "use": "usual",
                "system": "https://dorsi.dev/fhir/clinics/9b1c7e4a-2f3d-4e5f-8a9b-0c1d2e3f4a5b/"
                "patient-reference",
                "value": "MRN-0042",
            }
        ],
        "active": True,
    },
    "CarePlan": {
        "resourceType": "CarePlan",
        "id": "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
        "meta": {**EXAMPLE_META, "versionId": "2"},
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/3f0e8a52-1d2c-4b5a-9e8f-7a6b5c4d3e2f"},
        "period": {"start": "2026-11-23"},
    },
    "Procedure": {
        "resourceType": "Procedure",
        "id": "8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5f6e",
        "meta": EXAMPLE_META,
        "basedOn": [{"reference": "CarePlan/5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a/_history/2"}],
        "status": "completed",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "229065009"}]},
        "subject": {"reference": "Patient/3f0e8a52-1d2c-4b5a-9e8f-7a6b5c4d3e2f"},
        "performedDateTime": "2026-11-24T09:15:00+01:00",
    },
    "Observation": {
        "resourceType": "Observation",
        "id": "8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5f6e",
        "meta": EXAMPLE_META,
        "partOf": [{"reference": "Procedure/8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5f6e"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": "Patient/3f0e8a52-1d2c-4b5a-9e8f-7a6b5c4d3e2f"},
        "effectiveDateTime": "2026-11-24T09:15:00+01:00",
        "valueInteger": 3,
    },
    "ActivityDefinition": {
        "resourceType": "ActivityDefinition",
        "id": "0f64f410-4838-54e7-ba8d-49203dceac9e",
        "meta": EXAMPLE_META,
        "url": "https://dorsi.dev/fhir/ActivityDefinition/0f64f410-4838-54e7-ba8d-49203dceac9e",
        "title": "Ankle dorsiflexion with a band or towel",
        "status": "active",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "229065009"}]},
    },
    "PlanDefinition": {
        "resourceType": "PlanDefinition",
        "id": "a3f1c2d4-5b6e-5f70-8a9b-0c1d2e3f4a5b",
        "meta": EXAMPLE_META,
        "title": "Foot drop home program",
        "status": "active",
    },
}


def _bundle_example(kind: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [
            {"relation": "self", "url": f"https://dorsi.example{PREFIX}/{kind}?_count=1"},
            {
                "relation": "next",
                "url": f"https://dorsi.example{PREFIX}/{kind}?_count=1&_cursor=WyJhYiJd",
            },
        ],
        "entry": [
            {
                "fullUrl": f"https://dorsi.example{PREFIX}/{kind}/{EXAMPLES[kind]['id']}",
                "resource": EXAMPLES[kind],
                "search": {"mode": "match"},
            }
        ],
    }


@router.get(
    f"{PREFIX}/metadata",
    operation_id="getFhirCapabilityStatement",
    summary="What the FHIR facade serves",
    response_class=FhirResponse,
    responses={
        200: fhir_content(
            "CapabilityStatement",
            {"resourceType": "CapabilityStatement", "status": "active", "fhirVersion": "4.0.1"},
            "The CapabilityStatement: resources, interactions, search parameters, security.",
        ),
        **outcome_responses(BadRequest),
    },
)
async def capabilities(request: Request) -> Response:
    """Public, as FHIR clients read it before they sign in."""
    search.check_format(request.query_params)
    version = request.app.version
    return FhirResponse(capability_statement(base_url(request), version, STARTED))


Reader = Callable[[AsyncSession, Caller, str], Awaitable[Resource]]


def _read_route(kind: str, read: Reader, summary: str) -> None:
    caller_dependency = reader(kind)

    async def read_one(
        request: Request,
        id: FhirId,
        session: SessionDep,
        caller: Annotated[Caller, Depends(caller_dependency)],
    ) -> Response:
        _read_params(request)
        return FhirResponse(await read(session, caller, id))

    read_one.__doc__ = f"Needs `{SCOPES[kind]}`. Another clinic's id answers 404."
    router.add_api_route(
        f"{PREFIX}/{kind}/{{id}}",
        read_one,
        methods=["GET"],
        operation_id=f"readFhir{kind}",
        summary=summary,
        response_class=FhirResponse,
        responses={
            200: fhir_content(kind, EXAMPLES[kind], f"The {kind}."),
            **READ_ERRORS,
        },
    )


def _search_route(kind: str, summary: str) -> None:
    caller_dependency = reader(kind)
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": description,
        }
        for name, description in (
            *((n, f"FHIR search parameter `{n}`.") for n in service.SEARCHES[kind]),
            ("_count", f"Page size, 1 to {search.MAX_COUNT} ({search.DEFAULT_COUNT})."),
            ("_cursor", "The page: as `link.next` gives it."),
            ("_format", "json (the only format)."),
        )
    ]

    async def search_type(
        request: Request,
        session: SessionDep,
        caller: Annotated[Caller, Depends(caller_dependency)],
    ) -> Response:
        params = request.query_params
        search.check_format(params)
        page = await service.run_search(session, caller, kind, params)
        base = base_url(request)
        links = [{"relation": "self", "url": str(request.url)}]
        if page.next_cursor is not None:
            kept = [(k, v) for k, v in params.multi_items() if k != "_cursor"]
            query = urlencode([*kept, ("_cursor", page.next_cursor)])
            links.append({"relation": "next", "url": f"{base}/{kind}?{query}"})
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/{kind}/{resource['id']}",
                    "resource": resource,
                    "search": {"mode": "match"},
                }
                for resource in page.resources
            ],
        }
        if not bundle["entry"]:
            del bundle["entry"]
        return FhirResponse(bundle)

    search_type.__doc__ = (
        f"Needs `{SCOPES[kind]}`. A Bundle searchset, newest session first for adherence, "
        "else in id order; follow `link.next`. An unsupported parameter answers 400."
    )
    router.add_api_route(
        f"{PREFIX}/{kind}",
        search_type,
        methods=["GET"],
        operation_id=f"searchFhir{kind}",
        summary=summary,
        response_class=FhirResponse,
        responses={
            200: fhir_content("Bundle", _bundle_example(kind), "A searchset Bundle."),
            **SEARCH_ERRORS,
        },
        openapi_extra={"parameters": parameters},
    )


@router.get(
    f"{PREFIX}/CarePlan/{{id}}/_history/{{vid}}",
    operation_id="readFhirCarePlanVersion",
    summary="Read a CarePlan at one of its versions",
    response_class=FhirResponse,
    responses={
        200: fhir_content("CarePlan", EXAMPLES["CarePlan"], "The CarePlan at that version."),
        **READ_ERRORS,
    },
)
async def read_care_plan_version(
    request: Request,
    id: FhirId,
    vid: Annotated[int, Path(ge=1, le=2**31 - 1, description="The plan version.")],
    session: SessionDep,
    caller: Annotated[Caller, Depends(reader("CarePlan"))],
) -> Response:
    """Needs `plans:read`. Every version of a plan stays readable: an adherence record's
    Procedure is `basedOn` the version it was done under."""
    _read_params(request)
    return FhirResponse(await service.read_care_plan(session, caller, id, vid))


for _kind, _summary in (
    ("Patient", "Search patients"),
    ("CarePlan", "Search care plans"),
    ("Procedure", "Search exercise sessions"),
    ("Observation", "Search pain ratings"),
    ("ActivityDefinition", "Search exercises"),
):
    _search_route(_kind, _summary)

for _kind, _read, _summary in (
    ("Patient", service.read_patient, "Read a patient"),
    ("CarePlan", service.read_care_plan, "Read a care plan"),
    ("Procedure", service.read_procedure, "Read an exercise session"),
    ("Observation", service.read_observation, "Read a pain rating"),
    ("ActivityDefinition", service.read_activity_definition, "Read an exercise"),
    ("PlanDefinition", service.read_plan_definition, "Read a plan template"),
):
    _read_route(_kind, _read, _summary)
