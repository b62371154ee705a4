"""The exercise read API: filters, pagination, lookups, ETags."""

import uuid

import pytest
from httpx import AsyncClient

CATALOG_SIZE = 8


async def slugs(client: AsyncClient, **params: str | int) -> list[str]:
    response = await client.get("/v1/exercises", params=params)
    assert response.status_code == 200, response.text
    return [item["slug"] for item in response.json()["items"]]


async def test_lists_the_whole_catalog_in_slug_order(client: AsyncClient) -> None:
    response = await client.get("/v1/exercises")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    names = [item["slug"] for item in body["items"]]
    assert len(names) == CATALOG_SIZE
    assert names == sorted(names)
    assert body["next_cursor"] is None
    assert all(item["owner"] == "global" for item in body["items"])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"body_region": "hip"}, ["hip-abduction-adduction", "hip-rotation"]),
        ({"movement": "dorsiflexion"}, ["ankle-dorsiflexion"]),
        ({"movement": "hip_external_rotation"}, ["hip-rotation"]),
        ({"mode": "passive"}, ["ankle-abduction-adduction"]),
        (
            {"position": "legs_crossed", "mode": "active"},
            ["ankle-abduction-adduction-active", "ankle-inversion"],
        ),
        ({"equipment": "towel"}, ["ankle-dorsiflexion"]),
        ({"equipment": "chair"}, ["hip-abduction-adduction", "hip-rotation"]),
        ({"q": "EVERSION"}, ["ankle-eversion"]),
        ({"q": "midline"}, ["ankle-inversion"]),
        ({"q": "%"}, []),
        ({"body_region": "hip", "movement": "dorsiflexion"}, []),
    ],
)
async def test_filters_combine(
    client: AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert await slugs(client, **params) == expected


async def test_pages_walk_the_catalog_once(client: AsyncClient) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(CATALOG_SIZE):
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/v1/exercises", params=params)).json()
        assert len(body["items"]) <= 3
        seen += [item["slug"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == await slugs(client)


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"limit": 0}, "#/limit"),
        ({"limit": 101}, "#/limit"),
        ({"limit": "many"}, "#/limit"),
        ({"cursor": "not-a-cursor"}, "#/cursor"),
        ({"cursor": "W10"}, "#/cursor"),
        ({"mode": "vigorous"}, "#/mode"),
        ({"q": ""}, "#/q"),
        ({"q": "x" * 101}, "#/q"),
        ({"moode": "passive"}, "#/moode"),
    ],
)
async def test_bad_query_is_a_422_that_points_at_the_parameter(
    client: AsyncClient, params: dict[str, str | int], pointer: str
) -> None:
    response = await client.get("/v1/exercises", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert {"location": "query", "pointer": pointer} in [
        {"location": e["location"], "pointer": e["pointer"]} for e in problem["errors"]
    ]


async def test_get_by_slug_and_by_id_agree(client: AsyncClient) -> None:
    by_slug = await client.get("/v1/exercises/ankle-dorsiflexion")
    assert by_slug.status_code == 200
    exercise = by_slug.json()
    by_id = await client.get(f"/v1/exercises/{exercise['id']}")
    assert by_id.json() == exercise
    assert by_id.headers["etag"] == by_slug.headers["etag"]


@pytest.mark.parametrize("missing", ["toe-taps", str(uuid.uuid4()), "x" * 80])
async def test_unknown_exercise_is_404_problem(client: AsyncClient, missing: str) -> None:
    response = await client.get(f"/v1/exercises/{missing}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/not-found")


async def test_an_id_that_cannot_exist_is_404_not_422(client: AsyncClient) -> None:
    response = await client.get(f"/v1/exercises/{'x' * 81}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "path", ["/v1/exercises", "/v1/exercises/ankle-eversion", "/v1/exercises?mode=active&limit=2"]
)
async def test_etag_answers_304_until_the_representation_changes(
    client: AsyncClient, path: str
) -> None:
    first = await client.get(path)
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert "max-age" in first.headers["cache-control"]
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(path, headers={"If-None-Match": sent})
        assert again.status_code == 304, sent
        assert again.content == b""
        assert again.headers["etag"] == etag
    stale = await client.get(path, headers={"If-None-Match": '"stale"'})
    assert stale.status_code == 200
    assert stale.content == first.content


async def test_repeated_reads_are_identical(client: AsyncClient) -> None:
    first = await client.get("/v1/exercises?body_region=ankle")
    second = await client.get("/v1/exercises?body_region=ankle")
    assert first.content == second.content
    assert first.headers["etag"] == second.headers["etag"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
