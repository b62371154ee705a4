"""What a client developer relies on in `openapi.yaml`: examples that validate against their
own schemas and name real catalog ids, a description on every operation, every list a page,
and the headers each operation may send or take."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from app.cli import openapi_yaml
from app.exercises.catalog import catalog_id, read_catalog
from tests.contract import check_headers

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DOCUMENT_URI = "urn:dorsi:openapi"
# Keywords whose value is a schema, or a list or map of schemas (JSON Schema 2020-12).
ONE_SCHEMA = ("items", "not", "additionalProperties", "contains", "if", "then", "else")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SCHEMA_MAPS = ("properties", "$defs", "patternProperties")
# Fields whose values are ids of the shipped catalog wherever an example shows them.
CATALOG_ID_FIELDS = ("exercise_id", "template_id", "easier_variant_id", "harder_variant_id")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(openapi_yaml())
    return parsed


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def schemas_within(schema: Any, at: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The schema at ``at`` and every schema nested in it, each with its JSON pointer."""
    if not isinstance(schema, dict):
        return
    yield at, schema
    for keyword in ONE_SCHEMA:
        yield from schemas_within(schema.get(keyword), f"{at}{pointer(keyword)}")
    for keyword in SCHEMA_LISTS:
        for index, sub in enumerate(schema.get(keyword, [])):
            yield from schemas_within(sub, f"{at}{pointer(keyword, str(index))}")
    for keyword in SCHEMA_MAPS:
        for name, sub in schema.get(keyword, {}).items():
            yield from schemas_within(sub, f"{at}{pointer(keyword, name)}")


def with_schema(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every parameter, header and media type object: what holds a `schema` and may hold
    `example` or `examples` (a map of Example objects) for it."""
    components = document.get("components", {})
    for kind in ("parameters", "headers"):
        for name, holder in components.get(kind, {}).items():
            yield pointer("components", kind, name), holder
    for path, method, operation in operations(document):
        at = pointer("paths", path, method)
        for index, parameter in enumerate(operation.get("parameters", [])):
            if "$ref" not in parameter:
                yield f"{at}{pointer('parameters', str(index))}", parameter
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            yield f"{at}{pointer('requestBody', 'content', media_type)}", content
        for status, response in operation["responses"].items():
            for name, header in response.get("headers", {}).items():
                if "$ref" not in header:
                    yield f"{at}{pointer('responses', status, 'headers', name)}", header
            for media_type, content in response.get("content", {}).items():
                yield f"{at}{pointer('responses', status, 'content', media_type)}", content


def all_schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        yield from schemas_within(schema, pointer("components", "schemas", name))
    for at, holder in with_schema(document):
        if "schema" in holder:
            yield from schemas_within(holder["schema"], f"{at}/schema")


def examples(document: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Every example in the document: where it is, the pointer of the schema it must
    validate against, and its value."""
    for at, schema in all_schemas(document):
        for index, value in enumerate(schema.get("examples", [])):
            yield f"{at}/examples/{index}", at, value
        if "example" in schema:
            yield f"{at}/example", at, schema["example"]
    for at, holder in with_schema(document):
        if "schema" not in holder:
            continue
        if "example" in holder:
            yield f"{at}/example", f"{at}/schema", holder["example"]
        for name, example in holder.get("examples", {}).items():
            if "value" in example:
                yield f"{at}/examples/{name}", f"{at}/schema", example["value"]


def validator_for(document: dict[str, Any], schema_at: str) -> OAS31Validator:
    """OpenAPI 3.1's dialect of JSON Schema, formats checked, refs resolved in the document."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, DRAFT202012.create_resource(document)
    )
    return OAS31Validator(
        {"$ref": f"{DOCUMENT_URI}#{schema_at}"},
        registry=registry,
        format_checker=oas31_format_checker,
    )


def test_every_example_validates_against_its_own_schema(document: dict[str, Any]) -> None:
    found = list(examples(document))
    assert len(found) > 100
    invalid = []
    for at, schema_at, value in found:
        errors = list(validator_for(document, schema_at).iter_errors(value))
        invalid += [f"{at}: {error.json_path}: {error.message[:160]}" for error in errors]
    assert invalid == []


def catalog_ids() -> set[str]:
    catalog = read_catalog()
    ids = {str(catalog_id(entry["slug"])) for entry in catalog["exercises"]}
    for template in catalog["templates"]:
        ids.add(str(catalog_id(f"template:{template['slug']}")))
    return ids


def values_of(value: Any, fields: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """The values of the named fields anywhere within an example."""
    if isinstance(value, dict):
        for name, inner in value.items():
            if name in fields:
                yield name, inner
            yield from values_of(inner, fields)
    elif isinstance(value, list):
        for inner in value:
            yield from values_of(inner, fields)


def dicts_within(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for inner in value.values():
            yield from dicts_within(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from dicts_within(inner)


def test_examples_name_the_shipped_catalogs_ids(document: dict[str, Any]) -> None:
    real = catalog_ids()
    named = [
        (at, field, value)
        for at, _, example in examples(document)
        for field, value in values_of(example, CATALOG_ID_FIELDS)
        if value is not None
    ]
    assert named
    assert [entry for entry in named if entry[2] not in real] == []
    # An exercise shown by its catalog slug has the catalog's id for that slug.
    catalog = read_catalog()
    slugs = {entry["slug"] for entry in catalog["exercises"]}
    shown_by_slug = [
        (at, exercise["slug"], exercise["id"])
        for at, _, example in examples(document)
        for exercise in dicts_within(example)
        if exercise.get("slug") in slugs and "id" in exercise
    ]
    assert len(shown_by_slug) > 5
    assert [s for s in shown_by_slug if s[2] != str(catalog_id(s[1]))] == []
    # And so do the global template and its items.
    schemas = document["components"]["schemas"]
    shown = 0
    templates = [
        *schemas["TemplatePublic"]["examples"],
        *(t for page in schemas["TemplatePage"]["examples"] for t in page["items"]),
    ]
    for template in templates:
        if template["owner"] != "global":
            continue
        (shipped,) = [t for t in catalog["templates"] if t["name"] == template["name"]]
        slug = f"template:{shipped['slug']}"
        assert template["id"] == str(catalog_id(slug))
        for item in template["items"]:
            exercise = item["exercise"]["slug"]
            assert item["id"] == str(catalog_id(f"{slug}:{exercise}"))
            assert item["exercise_id"] == str(catalog_id(exercise))
        shown += 1
    assert shown


def test_plan_create_example_prescribes_the_global_template(document: dict[str, Any]) -> None:
    (example,) = document["components"]["schemas"]["PlanCreate"]["examples"]
    assert example["template_id"] == str(catalog_id("template:foot-drop-home-program"))


def test_every_operation_has_a_description(document: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(document)
        if not operation.get("description", "").strip()
    ]
    assert missing == []


def test_every_list_is_a_page(document: dict[str, Any]) -> None:
    """An answer that is a list is `{items, next_cursor}`, never a bare array, so that any
    list can grow pages without breaking its clients."""
    schemas = document["components"]["schemas"]
    bare = []
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            for media_type, content in response.get("content", {}).items():
                schema = content.get("schema", {})
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
                if schema.get("type") == "array":
                    bare.append(f"{method.upper()} {path} {status} {media_type}")
                elif "next_cursor" in schema.get("properties", {}):
                    assert {"items", "next_cursor"} <= set(schema["required"]), path
                    params = {p.get("name") for p in operation.get("parameters", [])}
                    assert {"limit", "cursor"} <= params, f"{method.upper()} {path}"
    assert bare == []


def test_request_headers_are_parameters(document: dict[str, Any]) -> None:
    """`X-Request-ID` on every operation, `Idempotency-Key` on every POST but sign-in's,
    and `If-Match` required wherever its absence answers 428."""
    parameters = document["components"]["parameters"]
    assert parameters["Idempotency-Key"]["schema"]["maxLength"] == 200

    def names(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
        found = {}
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:
                parameter = parameters[parameter["$ref"].rsplit("/", 1)[1]]
            if parameter["in"] == "header":
                found[parameter["name"]] = parameter
        return found

    for path, method, operation in operations(document):
        headers = names(operation)
        assert "X-Request-ID" in headers, f"{method} {path}"
        takes_key = method == "post" and not path.startswith("/v1/auth/")
        assert ("Idempotency-Key" in headers) == takes_key, f"{method} {path}"
        if "428" in operation["responses"]:
            assert headers["If-Match"]["required"] is True, f"{method} {path}"
        elif "If-Match" in headers:
            assert not headers["If-Match"].get("required"), f"{method} {path}"
    required = {
        (method, path)
        for path, method, operation in operations(document)
        if names(operation).get("If-Match", {}).get("required")
    }
    assert required >= {
        ("patch", "/v1/plans/{plan_id}"),
        ("patch", "/v1/adherence/{record_id}"),
        ("delete", "/v1/adherence/{record_id}"),
    }


def test_response_headers_are_declared(document: dict[str, Any]) -> None:
    """Every answer declares `X-Request-ID` and `Cache-Control`; a 401 its challenge, a 429
    when to retry, a 201 that makes a resource its `Location`, a 304 its `ETag`."""
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            where = f"{method.upper()} {path} {status}"
            assert {"X-Request-ID", "Cache-Control"} <= headers.keys(), where
            wanted = {"401": "WWW-Authenticate", "429": "Retry-After", "304": "ETag"}
            if status in wanted:
                assert wanted[status] in headers, where
            if status[0] in "23" and method == "post" and not path.startswith("/v1/auth/"):
                assert "Idempotent-Replayed" in headers, where
    declared = document["components"]["headers"]
    assert declared["X-Request-ID"]["required"] is True
    # A create answers where the new resource is, and its ETag if it has versions.
    versioned = ("/plans", "/patients", "/copy", "/exercises", "/plan-templates")
    for path, method, operation in operations(document):
        if "201" not in operation["responses"]:
            continue
        created = operation["responses"]["201"].get("headers", {})
        if path.endswith(versioned):
            assert {"Location", "ETag"} <= created.keys(), path
        elif path == "/v1/api-clients" and method == "post":
            assert "Location" in created


def test_operations_name_the_scopes_they_need(document: dict[str, Any]) -> None:
    """No operation signed in through OAuth2 leaves its scopes unsaid, but those that
    need none (admin-only, or any staff member); the catalog reads also allow anonymous
    callers."""
    scopes: dict[tuple[str, str], list[str]] = {}
    for path, method, operation in operations(document):
        for requirement in operation.get("security", []):
            if "OAuth2" in requirement:
                scopes[(method, path)] = requirement["OAuth2"]
    assert scopes[("get", "/v1/patients")] == ["patients:read"]
    assert scopes[("post", "/v1/adherence/batch")] == ["adherence:write"]
    assert scopes[("get", "/v1/changes")] == ["changes:read"]
    assert len([key for key, named in scopes.items() if named]) > 30
    for path in ("/v1/exercises", "/v1/exercises/{exercise}"):
        assert document["paths"][path]["get"]["security"] == [
            {},
            {"OAuth2": ["exercises:read"]},
        ]
    anonymous = [
        (method, path)
        for path, method, operation in operations(document)
        if {} in operation.get("security", [])
    ]
    assert sorted(anonymous) == [("get", "/v1/exercises"), ("get", "/v1/exercises/{exercise}")]


def answer(status: int, path: str, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", f"http://dorsi.test{path}")
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return httpx.Response(status, headers=named, request=request)


def test_the_contract_check_refuses_undeclared_headers_and_statuses() -> None:
    """What `tests.contract` holds every answer of the suite to: a header the operation's
    response does not declare, or a status it does not list, fails the test."""
    declared = {"x-request-id": "r-1", "cache-control": "no-store", "vary": "Accept-Encoding"}
    transport = {"content-length": "2", "date": "Thu, 03 Dec 2026 12:00:00 GMT"}
    check_headers(answer(200, "/v1/patients", **declared, **transport), "GET")
    check_headers(answer(200, "/v1/patients", **declared, x_frame_options="DENY"), "GET")
    with pytest.raises(AssertionError, match="x-debug"):
        check_headers(answer(200, "/v1/patients", **declared, x_debug="1"), "GET")
    # An ETag is declared on a patient's read, not on the list of patients.
    check_headers(answer(200, "/v1/patients/1", **declared, etag='"a-1"'), "GET")
    with pytest.raises(AssertionError, match="etag"):
        check_headers(answer(200, "/v1/patients", **declared, etag='"a-1"'), "GET")
    with pytest.raises(AssertionError, match="does not declare 418"):
        check_headers(answer(418, "/v1/patients", **declared), "GET")
    # A concrete path is matched before a template: /v1/adherence/batch has no GET.
    check_headers(answer(405, "/v1/adherence/batch", allow="POST"), "GET")
