"""HTTP methods: HEAD wherever GET is, with the GET's status and headers and no body; a
405 names every method of its path; literal paths are not taken for ids."""

import re
import uuid

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from starlette.routing import Route

from tests.conftest import World
from tests.core.problems import assert_problem

# Headers that differ between two answers to the same request by nature.
PER_ANSWER = {"x-request-id", "date"}


def get_paths(app: FastAPI, world: World) -> list[str]:
    """Every GET route of the app, its parameters filled with clinic 1's patient A (or an
    id nobody has: its 404 must be the same for HEAD)."""
    values = {"patient_id": str(world.patient_a), "exercise": "ankle-dorsiflexion"}
    paths = []
    for route in app.routes:
        if isinstance(route, Route) and route.methods and "GET" in route.methods:
            paths.append(
                re.sub(
                    r"{(\w+)(:\w+)?}",
                    lambda m: values.get(m.group(1), str(uuid.uuid4())),
                    route.path,
                )
            )
    return paths


async def test_head_answers_every_get_route_like_get_without_the_body(
    app: FastAPI, client: AsyncClient, world: World
) -> None:
    paths = get_paths(app, world)
    assert len(paths) > 30
    for path in paths:
        actor = world["patient_a"] if path.startswith("/v1/me") else world["admin1"]
        got = await client.get(path, headers=actor.headers)
        head = await client.head(path, headers=actor.headers)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        # A problem names its request id, and metrics count the request just made.
        volatile = path == "/metrics" or got.status_code >= 400
        varying = PER_ANSWER | ({"content-length"} if volatile else set())
        expected = {k: v for k, v in got.headers.items() if k not in varying}
        assert {k: v for k, v in head.headers.items() if k not in varying} == expected, path


async def test_head_of_a_public_read_is_answered_from_the_same_cache_and_tag(
    client: AsyncClient,
) -> None:
    got = await client.get("/v1/exercises/ankle-dorsiflexion")
    head = await client.head(
        "/v1/exercises/ankle-dorsiflexion", headers={"If-None-Match": got.headers["etag"]}
    )
    assert head.status_code == 304
    assert head.headers["etag"] == got.headers["etag"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/patients", "GET, HEAD, POST"),
        ("DELETE", "/v1/exercises", "GET, HEAD, POST"),
        ("POST", "/v1/patients/{patient}", "GET, HEAD, PATCH, DELETE"),
        ("GET", "/v1/adherence/batch", "POST"),
        ("HEAD", "/v1/adherence/batch", "POST"),
        ("PATCH", "/v1/adherence/batch", "POST"),
        ("DELETE", "/v1/adherence/batch", "POST"),
        ("GET", "/v1/auth/token", "POST"),
    ],
)
async def test_a_405_allows_every_method_of_the_path_and_says_so(
    client: AsyncClient, world: World, method: str, path: str, allowed: str
) -> None:
    path = path.format(patient=world.patient_a)
    response = await client.request(method, path, headers=world["clinician1"].headers)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    if method != "HEAD":
        problem = assert_problem(response, 405, "method-not-allowed")
        assert problem["detail"] == f"{method} is not allowed on {path}; it answers {allowed}."


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_a_record_path_takes_only_uuids(
    client: AsyncClient, world: World, method: str
) -> None:
    response = await client.request(
        method, "/v1/adherence/not-a-uuid", headers=world["clinician1"].headers
    )
    assert_problem(response, 404, "not-found")
