"""Request bodies: one of another media type is a 415 that says which the operation takes;
one that cannot be parsed is a 400, on every operation, naming the line and column."""

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import AsyncClient

from app.core.errors import FORM_BODIES
from tests.auth.test_sign_in import clinician, password_grant
from tests.conftest import PASSWORD, World
from tests.core.problems import assert_problem
from tests.patients.test_routes import patient_body


def operations_with_a_body(app: FastAPI) -> list[tuple[str, str, bool]]:
    """(method, path, takes a form) of every operation that reads a body."""
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            path = re.sub(r"{\w+(:\w+)?}", lambda _: str(uuid.uuid4()), route.path)
            form = route.body_field.field_info.__class__.__name__ == "Form"
            found += [(method, path, form) for method in sorted(route.methods or ())]
    return found


MALFORMED = [
    # (body, line, column, what the detail says)
    (b'{"reference": "MRN-1",\n  "cause" "stroke"}', 2, 11, "Not JSON"),
    (b'{"reference": "MRN-\xff"}', 1, 20, "Not UTF-8"),
    (b"\n\n   ", 3, 4, "Not JSON"),
]


@pytest.mark.parametrize(("body", "line", "column", "says"), MALFORMED)
async def test_a_body_that_cannot_be_parsed_is_400_everywhere_with_line_and_column(
    app: FastAPI, client: AsyncClient, body: bytes, line: int, column: int, says: str
) -> None:
    operations = [(m, p) for m, p, form in operations_with_a_body(app) if not form]
    assert len(operations) > 15
    for method, path in operations:
        response = await client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
        problem = assert_problem(response, 400, "malformed-body")
        (error,) = problem["errors"]
        assert (error["location"], error["pointer"]) == ("body", "#"), path
        assert (error["line"], error["column"]) == (line, column), path
        assert error["detail"].startswith(says), path
        assert f"line {line}, column {column}" in error["detail"]


async def test_an_unparsed_body_is_documented_as_400_and_415_on_every_operation_with_one(
    app: FastAPI,
) -> None:
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= operation["responses"].keys(), (method, path)


@pytest.mark.parametrize(
    ("method", "path", "content_type", "accept"),
    [
        ("POST", "/v1/patients", "text/plain", "Accept-Post"),
        ("POST", "/v1/patients", "application/x-www-form-urlencoded", "Accept-Post"),
        ("POST", "/v1/patients", None, "Accept-Post"),
        ("PATCH", "/v1/patients/{patient}", "text/plain", "Accept-Patch"),
    ],
)
async def test_a_json_body_of_another_media_type_is_415(
    client: AsyncClient,
    world: World,
    method: str,
    path: str,
    content_type: str | None,
    accept: str,
) -> None:
    headers = dict(world["clinician1"].headers)
    if content_type:
        headers["Content-Type"] = content_type
    path = path.format(patient=world.patient_a)
    response = await client.request(
        method,
        path,
        content=httpx.Request("POST", "/", json=patient_body()).content,
        headers=headers,
    )
    problem = assert_problem(response, 415, "unsupported-media-type")
    assert "application/json" in problem["detail"]
    assert response.headers[accept] == "application/json"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/x+json"])
async def test_json_media_types_with_parameters_or_suffixes_are_json(
    client: AsyncClient, world: World, content_type: str
) -> None:
    response = await client.post(
        "/v1/patients",
        content=httpx.Request("POST", "/", json=patient_body()).content,
        headers={**world["clinician1"].headers, "Content-Type": content_type},
    )
    assert response.status_code == 201, response.text


async def test_the_token_form_refuses_json_with_415(client: AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/token", json={"grant_type": "password", "username": "a", "password": "b"}
    )
    assert_problem(response, 415, "unsupported-media-type")
    assert response.headers["accept-post"] == ", ".join(FORM_BODIES)


async def test_revocation_takes_the_rfc_7009_form(app: FastAPI, client: AsyncClient) -> None:
    token = (await password_grant(client, await clinician(app), PASSWORD)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/patients", headers=headers)).status_code == 200
    revoked = await client.post(
        "/v1/auth/revoke",
        data={"token": token, "token_type_hint": "access_token", "unknown": "ignored"},
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.content == b""
    assert (await client.get("/v1/patients", headers=headers)).status_code == 401


@pytest.mark.parametrize(
    ("content", "content_type", "status", "slug"),
    [
        (b"token=", "application/x-www-form-urlencoded", 422, "validation"),
        (b'{"token": "x", "extra": 1}', "application/json", 422, "validation"),
        (b'{"token": ', "application/json", 400, "malformed-body"),
        (b'{"token": "\xff"}', "application/json", 400, "malformed-body"),
        (b"token=x", "text/plain", 415, "unsupported-media-type"),
    ],
)
async def test_revocation_refuses_what_it_cannot_read(
    client: AsyncClient, content: bytes, content_type: str, status: int, slug: str
) -> None:
    response = await client.post(
        "/v1/auth/revoke", content=content, headers={"Content-Type": content_type}
    )
    assert_problem(response, status, slug)


def test_only_the_token_endpoint_takes_a_form(app: FastAPI) -> None:
    forms = [(m, p) for m, p, form in operations_with_a_body(app) if form]
    assert forms == [("POST", "/v1/auth/token")]
