"""The developer's view: offline /docs and /redoc, and an OpenAPI document worth reading."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from httpx import AsyncClient

from app.cli import openapi_yaml
from app.core.errors import PROBLEM_MEDIA_TYPE

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Where a page points: attributes, Swagger UI's `url: '...'`, and any quoted absolute path.
REFERENCE = re.compile(
    r"""(?:\b(?:src|href|spec-url)\s*=\s*|\burl:\s*)["']([^"']*)["']|["'](/[^"'\s]*)["']"""
)
EXTERNAL = ("http://", "https://", "//")
LOWER_CAMEL_CASE = re.compile(r"^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*$")


def references(html: str) -> set[str]:
    return {attribute or literal for attribute, literal in REFERENCE.findall(html)}


@pytest.fixture(scope="module")
def generated() -> str:
    return openapi_yaml()


@pytest.fixture(scope="module")
def document(generated: str) -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(generated)
    return parsed


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_everything_from_the_app(client: AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    found = references(response.text)
    assert "/openapi.json" in found
    assert any(ref.endswith(".js") for ref in found)
    external = sorted(ref for ref in found if ref.startswith(EXTERNAL))
    assert external == []
    for ref in sorted(found):
        asset = await client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.content, ref


def test_reference_finder_sees_external_urls() -> None:
    html = """<script src="https://cdn.example/x.js"></script><link href='//fonts.example/f'>
    <redoc spec-url="/openapi.json"></redoc>"""
    assert references(html) == {"https://cdn.example/x.js", "//fonts.example/f", "/openapi.json"}


async def test_openapi_json_is_the_generated_document(
    client: AsyncClient, document: dict[str, Any]
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == document


def test_committed_openapi_yaml_is_current(project_root: Path, generated: str) -> None:
    committed = (project_root / "openapi.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(committed) == yaml.safe_load(generated), "run `make openapi`"
    assert committed == generated, "run `make openapi`"


def test_every_schema_has_an_example(document: dict[str, Any]) -> None:
    schemas: dict[str, dict[str, Any]] = document["components"]["schemas"]
    assert schemas
    missing = sorted(n for n, s in schemas.items() if "example" not in s and "examples" not in s)
    assert missing == []


def test_operation_ids_are_unique_lower_camel_case(document: dict[str, Any]) -> None:
    ids = [operation.get("operationId", "") for _, _, operation in operations(document)]
    assert ids
    assert [i for i in ids if not LOWER_CAMEL_CASE.match(i)] == []
    assert len(ids) == len(set(ids))


def test_every_v1_operation_documents_a_client_error_problem(document: dict[str, Any]) -> None:
    undocumented = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(document)
        if path.startswith("/v1/")
        and not any(
            code.startswith("4") and PROBLEM_MEDIA_TYPE in response.get("content", {})
            for code, response in operation["responses"].items()
        )
    ]
    assert undocumented == []


def test_error_responses_are_documented_as_problem_json_only(document: dict[str, Any]) -> None:
    """Problem+json everywhere; under `/fhir/R4`, FHIR's OperationOutcome instead."""
    wrong = [
        f"{method.upper()} {path} {code}: {sorted(response.get('content', {}))}"
        for path, method, operation in operations(document)
        for code, response in operation["responses"].items()
        if code[0] in "45"
        and response.get("content", {})
        != (
            {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
            if path.startswith("/fhir/R4")
            else {PROBLEM_MEDIA_TYPE: response.get("content", {}).get(PROBLEM_MEDIA_TYPE)}
        )
    ]
    assert wrong == []


def test_every_tag_is_declared_with_a_description(document: dict[str, Any]) -> None:
    declared = {tag["name"]: tag.get("description", "") for tag in document["tags"]}
    used = {tag for _, _, operation in operations(document) for tag in operation.get("tags", [])}
    assert used
    assert sorted(used - declared.keys()) == []
    assert [name for name, description in declared.items() if not description.strip()] == []
    assert all(operation.get("tags") for _, _, operation in operations(document))


def test_creates_link_to_the_operations_on_what_they_made(document: dict[str, Any]) -> None:
    """OpenAPI links from each create to the read, update and delete of what it made, so
    that a client (or the stateful fuzzer) can follow them."""
    by_id = {op["operationId"]: (path, method) for path, method, op in operations(document)}
    expected = {
        "createPatient": {"getPatient", "updatePatient", "deletePatient", "createPlan"},
        "createPlan": {"getPlan", "updatePlan", "listPlanVersions", "getPlanVersion"},
        "createPlanTemplate": {"getPlanTemplate", "updatePlanTemplate", "deletePlanTemplate"},
        "createExercise": {"getExercise", "updateExercise", "deleteExercise"},
        "createApiClient": {"getApiClient", "updateApiClient", "deleteApiClient"},
        "createClinician": {"updateClinician"},
        "uploadAdherence": {"getAdherenceRecord", "correctAdherenceRecord"},
    }
    for source, targets in expected.items():
        path, method = by_id[source]
        answers = document["paths"][path][method]["responses"]
        links = next(a["links"] for a in answers.values() if "links" in a)
        assert targets <= set(links), source
        for link in links.values():
            assert link["operationId"] in by_id
            target = document["paths"][by_id[link["operationId"]][0]]
            declared = {
                f"{p['in']}.{p['name']}"
                for op in target.values()
                if op["operationId"] == link["operationId"]
                for p in (
                    document["components"]["parameters"][q["$ref"].rpartition("/")[2]]
                    if "$ref" in q
                    else q
                    for q in op.get("parameters", [])
                )
            }
            assert set(link["parameters"]) <= declared, link


def test_every_answer_declares_its_headers(document: dict[str, Any]) -> None:
    for _path, method, operation in operations(document):
        for status, answer in operation["responses"].items():
            headers = answer.get("headers", {})
            assert "X-Request-ID" in headers, (operation["operationId"], status)
            if status == "429":
                assert "Retry-After" in headers
            if status == "401":
                assert "WWW-Authenticate" in headers
            if (
                method == "get"
                and status == "200"
                and "If-None-Match"
                in {
                    document["components"]["parameters"][p["$ref"].rpartition("/")[2]]["name"]
                    if "$ref" in p
                    else p["name"]
                    for p in operation.get("parameters", [])
                }
            ):
                assert {"ETag"} <= set(headers)
                assert "304" in operation["responses"]
