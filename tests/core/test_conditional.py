"""Conditional requests as RFC 9110 section 13 has them, on every versioned resource:
If-Match on DELETE as on PATCH, lists of tags (in one header line or several), and `*`."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from tests.adherence.test_batch import patient_with_plan, record, upload
from tests.conftest import Actor, World
from tests.core.problems import assert_problem
from tests.exercises.test_clinic_exercises import exercise_body
from tests.plans import item, new_patient, new_plan

STALE = '"stale"'


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


async def a_patient(client: AsyncClient, clinician: Actor) -> str:
    return f"/v1/patients/{(await new_patient(client, clinician))['id']}"


async def an_exercise(client: AsyncClient, clinician: Actor) -> str:
    made = await client.post("/v1/exercises", json=exercise_body(), headers=clinician.headers)
    assert made.status_code == 201, made.text
    return f"/v1/exercises/{made.json()['id']}"


async def a_template(client: AsyncClient, clinician: Actor) -> str:
    made = await client.post(
        "/v1/plan-templates",
        json={"name": "Conditional", "items": [item()]},
        headers=clinician.headers,
    )
    assert made.status_code == 201, made.text
    return f"/v1/plan-templates/{made.json()['id']}"


async def a_record(client: AsyncClient, clinician: Actor) -> str:
    patient = await patient_with_plan(client, clinician)
    (result,) = await upload(client, patient.app, record(patient.plan))
    return f"/v1/adherence/{result['id']}"


Make = Callable[[AsyncClient, Actor], Awaitable[str]]
# Each resource a clinician may delete, and whether its writes require If-Match.
DELETABLE: list[tuple[Make, bool]] = [
    (a_patient, False),
    (an_exercise, False),
    (a_template, False),
    (a_record, True),
]


async def etag_of(client: AsyncClient, clinician: Actor, path: str) -> str:
    read = await client.get(path, headers=clinician.headers)
    assert read.status_code == 200, read.text
    etag: str = read.headers["etag"]
    return etag


@pytest.mark.parametrize(("make", "required"), DELETABLE)
async def test_a_delete_with_a_stale_tag_is_412_and_deletes_nothing(
    client: AsyncClient, clinician: Actor, make: Make, required: bool
) -> None:
    path = await make(client, clinician)
    etag = await etag_of(client, clinician, path)
    for stale in (STALE, f"W/{etag}", "not-a-tag", f'"x", W/{etag}'):
        response = await client.delete(path, headers={**clinician.headers, "If-Match": stale})
        assert_problem(response, 412, "precondition-failed")
    assert await etag_of(client, clinician, path) == etag
    deleted = await client.delete(path, headers={**clinician.headers, "If-Match": etag})
    assert deleted.status_code == 204, deleted.text
    assert (await client.get(path, headers=clinician.headers)).status_code == 404


@pytest.mark.parametrize(("make", "required"), DELETABLE)
async def test_a_delete_without_a_tag_is_428_where_a_patch_requires_one(
    client: AsyncClient, clinician: Actor, make: Make, required: bool
) -> None:
    path = await make(client, clinician)
    response = await client.delete(path, headers=clinician.headers)
    if required:
        assert_problem(response, 428, "precondition-required")
        assert (await client.get(path, headers=clinician.headers)).status_code == 200
    else:
        assert response.status_code == 204, response.text


@pytest.mark.parametrize(("make", "required"), DELETABLE)
@pytest.mark.parametrize("condition", ["*", '"x", {etag}', '"x",{etag} , "y"', "{etag},"])
async def test_a_delete_matches_any_tag_of_a_list_or_star(
    client: AsyncClient, clinician: Actor, make: Make, required: bool, condition: str
) -> None:
    path = await make(client, clinician)
    etag = await etag_of(client, clinician, path)
    if_match = condition.format(etag=etag)
    deleted = await client.delete(path, headers={**clinician.headers, "If-Match": if_match})
    assert deleted.status_code == 204, deleted.text


PATCHES: list[tuple[Make, dict[str, Any]]] = [
    (a_patient, {"cause": "other"}),
    (an_exercise, {"name": "Renamed"}),
    (a_template, {"name": "Renamed"}),
    (a_record, {"pain": 3}),
]


@pytest.mark.parametrize(("make", "body"), PATCHES)
async def test_a_patch_matches_a_list_in_one_line_or_several(
    client: AsyncClient, clinician: Actor, make: Make, body: dict[str, Any]
) -> None:
    path = await make(client, clinician)
    etag = await etag_of(client, clinician, path)
    one_line = await client.patch(
        path, json=body, headers={**clinician.headers, "If-Match": f'"x", {etag}'}
    )
    assert one_line.status_code == 200, one_line.text
    etag = one_line.headers["etag"]
    # Two header lines are one list (RFC 9110 section 5.3).
    headers = [*clinician.headers.items(), ("If-Match", STALE), ("If-Match", etag)]
    several = await client.patch(path, json=body | {}, headers=headers)
    assert several.status_code == 200, several.text
    starred = await client.patch(path, json=body, headers={**clinician.headers, "If-Match": "*"})
    assert starred.status_code == 200, starred.text


async def test_a_plan_patch_matches_a_list(client: AsyncClient, clinician: Actor) -> None:
    patient = await new_patient(client, clinician)
    plan, etag = await new_plan(client, clinician, patient["id"])
    response = await client.patch(
        f"/v1/plans/{plan['id']}",
        json={"title": "Renamed"},
        headers={**clinician.headers, "If-Match": f'W/{etag}, "x", {etag}'},
    )
    assert response.status_code == 200, response.text


async def test_if_none_match_takes_a_list_in_several_lines(
    client: AsyncClient, clinician: Actor
) -> None:
    path = await a_patient(client, clinician)
    etag = await etag_of(client, clinician, path)
    headers = [*clinician.headers.items(), ("If-None-Match", STALE), ("If-None-Match", etag)]
    assert (await client.get(path, headers=headers)).status_code == 304
    listed = await client.get(
        path, headers={**clinician.headers, "If-None-Match": f'"x", W/{etag}'}
    )
    assert listed.status_code == 304
