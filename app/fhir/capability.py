"""The CapabilityStatement: exactly what the facade serves, built from the same tables the
routes use, so that it cannot promise a search the routes refuse."""

from typing import Any

from app.fhir import codes
from app.fhir.service import SEARCHES

DESCRIPTIONS = {
    "identifier": ("token", "The clinic's own patient reference: `system|value` or `value`."),
    "patient": ("reference", "`Patient/<id>` or `<id>`."),
    "status": ("token", "Comma-separated alternatives."),
    "date": (
        "date",
        "When the session was done: a date (YYYY-MM-DD) compares with the patient's local "
        "date, a time with its offset with the instant. Prefixes eq, gt, ge, lt, le.",
    ),
    "based-on": ("reference", "`CarePlan/<id>` (a version's `_history/<vid>` is ignored)."),
    "code": ("token", f"`{codes.LOINC}|{codes.PAIN_CODE}` (pain is all Dorsi observes)."),
    "title": ("string", "Case-insensitive, from the start of the title."),
    "_lastUpdated": ("date", "Prefixes gt, ge, lt, le; a date stands for its day in UTC."),
}
SCOPES = {
    "ActivityDefinition": "exercises:read",
    "PlanDefinition": "plans:read",
    "Patient": "patients:read",
    "CarePlan": "plans:read",
    "Procedure": "adherence:read",
    "Observation": "adherence:read",
}
EXPORT_TYPES = ("Patient", "CarePlan", "Procedure", "Observation")


def _resource(kind: str) -> dict[str, Any]:
    interactions = [{"code": "read"}]
    if kind == "CarePlan":
        interactions.append({"code": "vread"})
    searched = kind in SEARCHES
    if searched:
        interactions.append({"code": "search-type"})
    resource: dict[str, Any] = {
        "type": kind,
        "interaction": interactions,
        "versioning": "versioned",
        "readHistory": kind == "CarePlan",
        "documentation": f"Needs the `{SCOPES[kind]}` scope.",
    }
    if searched:
        resource["searchParam"] = [
            {"name": name, "type": DESCRIPTIONS[name][0], "documentation": DESCRIPTIONS[name][1]}
            for name in SEARCHES[kind]
        ]
    if kind == "Patient":
        resource["operation"] = [
            {
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
            }
        ]
    return resource


def capability_statement(base: str, software_version: str, date: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Dorsi",
        "kind": "instance",
        "software": {"name": "Dorsi", "version": software_version},
        "implementation": {"description": "Dorsi's read-only FHIR R4 facade", "url": base},
        "fhirVersion": codes.FHIR_VERSION,
        "format": ["json"],
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only. Search answers Bundle searchsets paged by "
                "`link.next` (`_count` 1 to 1000, 50 by default); an unsupported search "
                "parameter answers 400. `_format=json` is accepted; answers are "
                "application/fhir+json.",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Send `Authorization: Bearer <token>`, the access token "
                    "from `POST /v1/auth/token` (clinicians: password grant; clinic systems: "
                    "client credentials). Scopes: "
                    + ", ".join(f"{kind} needs `{scope}`" for kind, scope in SCOPES.items())
                    + "; `$export` needs `changes:read` and the scope of each type. Patient "
                    "app tokens are refused.",
                },
                "resource": [_resource(kind) for kind in SCOPES],
                "operation": [
                    {
                        "name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                    }
                ],
            }
        ],
    }
