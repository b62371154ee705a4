"""A clinic's own exercises: written by its staff, seen only inside the clinic."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from tests.conftest import Actor, World, make_client
from tests.core.problems import assert_problem

GLOBAL_SLUG = "ankle-dorsiflexion"
PUBLIC = "public, max-age=60"
PRIVATE = "private, no-cache"

Create = Callable[..., Awaitable[Response]]
LIST_FIELDS = ("equipment", "cautions", "media", "references")


def exercise_body(**fields: Any) -> dict[str, Any]:
    """A valid clinic exercise with a slug (and a word in its name) no other test uses."""
    tag = uuid.uuid4().hex[:10]
    return {
        "slug": f"seated-toe-taps-{tag}",
        "name": f"Seated toe taps {tag}",
        "summary": "Tapping the toes while the heel stays down.",
        "steps": ["Sit with both feet flat.", "Lift the toes of the affected foot and tap them."],
        "body_region": "ankle",
        "movements": ["dorsiflexion"],
        "mode": "active",
        "position": "seated",
        "equipment": ["chair"],
        "default_dose": {"sets": 2, "reps": 15},
        **fields,
    }


@pytest.fixture
async def create(client: AsyncClient, world: World) -> AsyncIterator[Create]:
    """POSTs an exercise (as clinician 1 unless told); deletes what it made afterwards, so
    clinic 1's list is the catalog again for the tests that follow."""
    made: list[tuple[Actor, str]] = []

    async def post(actor: Actor | None = None, **fields: Any) -> Response:
        actor = actor or world["clinician1"]
        response = await client.post(
            "/v1/exercises", json=exercise_body(**fields), headers=actor.headers
        )
        if response.status_code == 201:
            made.append((actor, response.json()["id"]))
        return response

    yield post
    for actor, exercise_id in made:
        await client.delete(f"/v1/exercises/{exercise_id}", headers=actor.headers)


async def created(create: Create, actor: Actor | None = None, **fields: Any) -> dict[str, Any]:
    response = await create(actor, **fields)
    assert response.status_code == 201, response.text
    exercise: dict[str, Any] = response.json()
    return exercise


async def listed_slugs(client: AsyncClient, actor: Actor, **params: str | int) -> list[str]:
    response = await client.get(
        "/v1/exercises", params={"limit": 100, **params}, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    return [item["slug"] for item in response.json()["items"]]


def pointers(response: Response) -> list[str]:
    problem = assert_problem(response, 422, "validation")
    return [error["pointer"] for error in problem["errors"]]


async def test_create_answers_201_with_a_clinic_owned_first_version(
    client: AsyncClient, world: World, create: Create
) -> None:
    body = exercise_body()
    response = await create(**body)
    assert response.status_code == 201, response.text
    exercise = response.json()
    assert exercise["owner"] == "clinic"
    assert exercise["version"] == 1
    assert {key: exercise[key] for key in ("slug", "name", "steps", "movements", "mode")} == {
        key: body[key] for key in ("slug", "name", "steps", "movements", "mode")
    }
    assert exercise["default_dose"]["sets"] == 2
    assert exercise["harder_variant"] is None
    assert response.headers["location"] == f"/v1/exercises/{exercise['id']}"
    fetched = await client.get(response.headers["location"], headers=world["clinician1"].headers)
    assert fetched.json() == exercise
    assert fetched.headers["etag"] == response.headers["etag"]


async def test_the_clinic_sees_it_and_nobody_else_does(
    client: AsyncClient, world: World, create: Create
) -> None:
    exercise = await created(create)
    slug = exercise["slug"]
    for name in ("clinician1", "patient_a", "client_all"):
        actor = world[name]
        assert slug in await listed_slugs(client, actor), name
        for key in (slug, exercise["id"]):
            response = await client.get(f"/v1/exercises/{key}", headers=actor.headers)
            assert response.status_code == 200, (name, key)
            assert response.json() == exercise
    for name in ("anonymous", "clinician2", "patient_c"):
        actor = world[name]
        assert slug not in await listed_slugs(client, actor), name
        for key in (slug, exercise["id"]):
            response = await client.get(f"/v1/exercises/{key}", headers=actor.headers)
            assert_problem(response, 404, "not-found")


async def test_another_clinic_cannot_change_or_delete_it(
    client: AsyncClient, world: World, create: Create
) -> None:
    exercise = await created(create)
    path = f"/v1/exercises/{exercise['id']}"
    other = world["clinician2"].headers
    assert_problem(await client.patch(path, json={"name": "Mine"}, headers=other), 404, "not-found")
    assert_problem(await client.delete(path, headers=other), 404, "not-found")
    unchanged = await client.get(path, headers=world["clinician1"].headers)
    assert unchanged.json() == exercise


async def test_slugs_are_unique_in_the_clinic_and_never_a_global_one(
    world: World, create: Create
) -> None:
    exercise = await created(create)
    assert_problem(await create(slug=exercise["slug"]), 409, "conflict")
    assert_problem(await create(slug=GLOBAL_SLUG), 409, "conflict")
    # Another clinic may use the same slug for its own exercise.
    theirs = await created(create, world["clinician2"], slug=exercise["slug"])
    assert theirs["id"] != exercise["id"]


async def test_patch_bumps_the_version_and_honours_if_match(
    client: AsyncClient, world: World, create: Create
) -> None:
    headers = world["clinician1"].headers
    made = await create()
    exercise, etag = made.json(), made.headers["etag"]
    path = f"/v1/exercises/{exercise['id']}"
    response = await client.patch(
        path,
        json={"name": "Seated toe taps, slower", "default_dose": {"sets": 3, "reps": 12}},
        headers={**headers, "If-Match": etag},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["version"] == 2
    assert updated["name"] == "Seated toe taps, slower"
    assert updated["default_dose"]["reps"] == 12
    assert updated["slug"] == exercise["slug"]
    assert response.headers["etag"] != etag
    refetched = await client.get(path, headers={**headers, "If-None-Match": etag})
    assert refetched.status_code == 200
    assert refetched.json() == updated

    stale = await client.patch(path, json={"name": "Lost"}, headers={**headers, "If-Match": etag})
    assert_problem(stale, 412, "precondition-failed")
    assert (await client.get(path, headers=headers)).json() == updated


async def test_variants_link_to_visible_exercises_only(
    client: AsyncClient, world: World, create: Create
) -> None:
    headers = world["clinician1"].headers
    catalog = (await client.get(f"/v1/exercises/{GLOBAL_SLUG}")).json()
    linked = await created(create, harder_variant_id=catalog["id"])
    assert linked["harder_variant"] == {
        "id": catalog["id"],
        "slug": GLOBAL_SLUG,
        "name": catalog["name"],
    }
    theirs = await created(create, world["clinician2"])
    assert pointers(await create(harder_variant_id=theirs["id"])) == ["#/harder_variant_id"]
    patched = await client.patch(
        f"/v1/exercises/{linked['id']}", json={"harder_variant_id": theirs["id"]}, headers=headers
    )
    assert pointers(patched) == ["#/harder_variant_id"]
    self_link = await client.patch(
        f"/v1/exercises/{linked['id']}", json={"easier_variant_id": linked["id"]}, headers=headers
    )
    assert pointers(self_link) == ["#/easier_variant_id"]
    assert (await client.get(f"/v1/exercises/{linked['id']}", headers=headers)).json() == linked


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"difficulty": "hard"}, "#/difficulty"),
        ({"steps": [f"Step {n}." for n in range(31)]}, "#/steps"),
        ({"steps": []}, "#/steps"),
        ({"steps": ["x" * 501]}, "#/steps/0"),
        ({"name": "x" * 121}, "#/name"),
        ({"slug": "Not A Slug"}, "#/slug"),
        ({"movements": ["wiggling"]}, "#/movements/0"),
        ({"default_dose": {"sets": 0}}, "#/default_dose/sets"),
    ],
)
async def test_invalid_fields_are_422_pointing_at_the_field(
    client: AsyncClient, world: World, create: Create, fields: dict[str, Any], pointer: str
) -> None:
    assert pointers(await create(**fields)) == [pointer]
    exercise = await created(create)
    patched = await client.patch(
        f"/v1/exercises/{exercise['id']}", json=fields, headers=world["clinician1"].headers
    )
    assert pointers(patched) == [pointer]


@pytest.mark.parametrize(
    ("field", "status"),
    [
        ("position", 200),
        ("default_dose", 200),
        ("easier_variant_id", 200),
        ("name", 422),
        ("movements", 422),
        *((field, 422) for field in LIST_FIELDS),
    ],
)
async def test_null_clears_an_optional_field_and_is_refused_elsewhere(
    app: FastAPI, world: World, create: Create, field: str, status: int
) -> None:
    exercise = await created(create)
    path = f"/v1/exercises/{exercise['id']}"
    headers = world["clinician1"].headers
    async with make_client(app, raise_app_exceptions=False) as http:
        response = await http.patch(path, json={field: None}, headers=headers)
        assert response.status_code == status, response.text
        if status == 422:
            assert pointers(response) == [f"#/{field}"]
            assert (await http.get(path, headers=headers)).json() == exercise


async def test_limits_at_the_edge_are_accepted(create: Create) -> None:
    exercise = await created(create, name="x" * 120, steps=[f"Step {n}." for n in range(30)])
    assert len(exercise["steps"]) == 30


@pytest.mark.parametrize("key", [GLOBAL_SLUG, "id"])
async def test_the_global_catalog_is_read_only(client: AsyncClient, world: World, key: str) -> None:
    headers = world["clinician1"].headers
    before = await client.get(f"/v1/exercises/{GLOBAL_SLUG}", headers=headers)
    path = f"/v1/exercises/{before.json()['id'] if key == 'id' else key}"
    patched = await client.patch(path, json={"name": "Renamed"}, headers=headers)
    assert_problem(patched, 403, "forbidden")
    assert_problem(await client.delete(path, headers=headers), 403, "forbidden")
    after = await client.get(f"/v1/exercises/{GLOBAL_SLUG}", headers=headers)
    assert after.content == before.content
    assert after.headers["etag"] == before.headers["etag"]


async def test_delete_answers_204_then_404(
    client: AsyncClient, world: World, create: Create
) -> None:
    headers = world["clinician1"].headers
    exercise = await created(create)
    path = f"/v1/exercises/{exercise['id']}"
    response = await client.delete(path, headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    for key in (exercise["id"], exercise["slug"]):
        assert_problem(await client.get(f"/v1/exercises/{key}", headers=headers), 404, "not-found")
    assert_problem(await client.delete(path, headers=headers), 404, "not-found")
    assert_problem(
        await client.patch(path, json={"name": "Back"}, headers=headers), 404, "not-found"
    )
    assert exercise["slug"] not in await listed_slugs(client, world["clinician1"])


@pytest.mark.parametrize(
    ("actor", "status"),
    [("anonymous", 401), ("patient_a", 403), ("client_none", 403), ("client_all", 201)],
)
async def test_only_staff_with_the_write_scope_create(
    world: World, create: Create, actor: str, status: int
) -> None:
    response = await create(world[actor])
    assert response.status_code == status, response.text


async def test_the_public_list_is_unchanged_by_clinic_exercises(
    client: AsyncClient, world: World, create: Create
) -> None:
    before = await client.get("/v1/exercises")
    exercise = await created(create)
    word = exercise["name"].rsplit(" ", 1)[-1]
    # The clinic's staff find it; then the same URL without credentials must not, whether
    # it is answered by the database or by the shared cache.
    assert await listed_slugs(client, world["clinician1"], q=word) == [exercise["slug"]]
    for _ in range(2):
        anonymous = await client.get("/v1/exercises", params={"limit": 100, "q": word})
        assert anonymous.json()["items"] == []
    after = await client.get("/v1/exercises")
    assert after.content == before.content
    assert after.headers["etag"] == before.headers["etag"]


@pytest.mark.parametrize("path", ["/v1/exercises", f"/v1/exercises/{GLOBAL_SLUG}"])
async def test_signed_in_answers_are_private_and_anonymous_ones_public(
    client: AsyncClient, world: World, path: str
) -> None:
    for name, cache_control in (
        ("anonymous", PUBLIC),
        ("clinician1", PRIVATE),
        ("patient_a", PRIVATE),
    ):
        response = await client.get(path, headers=world[name].headers)
        assert response.status_code == 200
        assert response.headers["cache-control"] == cache_control, name
        assert response.headers["vary"] == "Authorization, Accept-Encoding", name
        again = await client.get(
            path, headers={**world[name].headers, "If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304, name
        assert again.headers["cache-control"] == cache_control, name
