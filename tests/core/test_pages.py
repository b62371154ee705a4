"""Every list is a page, `{items, next_cursor}`, short lists too: following `next_cursor`
one item at a time gives what one large page gives, in the same order."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from tests.adherence.test_corrections import uploaded
from tests.conftest import World
from tests.core.problems import assert_problem
from tests.plans import changed_plan, new_patient, new_plan, paired_headers

Made = tuple[str, dict[str, str]]


async def walk(client: AsyncClient, path: str, headers: dict[str, str]) -> list[Any]:
    """Every item of a list, one page of one item at a time."""
    items: list[Any] = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = await client.get(path, params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= 1
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert len(items) < 100, "the cursor never ends"


async def plan_versions(client: AsyncClient, world: World) -> Made:
    clinician = world["clinician1"]
    patient = await new_patient(client, clinician)
    plan, etag = await new_plan(client, clinician, patient["id"])
    for title in ("Second", "Third"):
        plan, etag = await changed_plan(client, clinician, plan["id"], etag, title=title)
    return f"/v1/plans/{plan['id']}/versions", clinician.headers


async def record_versions(client: AsyncClient, world: World) -> Made:
    clinician = world["clinician1"]
    _, app_headers, record = await uploaded(client, clinician)
    path = f"/v1/adherence/{record['id']}"
    for reps in (6, 7):
        etag = (await client.get(path, headers=app_headers)).headers["etag"]
        corrected = await client.patch(
            path, headers={**app_headers, "If-Match": etag}, json={"reps_done": reps}
        )
        assert corrected.status_code == 200, corrected.text
    return f"{path}/versions", clinician.headers


async def devices(client: AsyncClient, world: World) -> Made:
    clinician = world["clinician1"]
    patient = await new_patient(client, clinician)
    for _ in range(3):
        await paired_headers(client, clinician, patient["id"])
    return f"/v1/patients/{patient['id']}/devices", clinician.headers


async def clinicians(client: AsyncClient, world: World) -> Made:
    admin = world["admin1"]
    for _ in range(2):
        body = {"email": f"page-{uuid.uuid4().hex[:8]}@clinic.example", "password": "x" * 12}
        made = await client.post("/v1/clinicians", json=body, headers=admin.headers)
        assert made.status_code == 201, made.text
    return "/v1/clinicians", admin.headers


async def api_clients(client: AsyncClient, world: World) -> Made:
    admin = world["admin1"]
    for name in ("First EHR", "Second EHR"):
        body = {"name": name, "scopes": ["patients:read"]}
        made = await client.post("/v1/api-clients", json=body, headers=admin.headers)
        assert made.status_code == 201, made.text
    return "/v1/api-clients", admin.headers


@pytest.mark.parametrize(
    "make",
    [plan_versions, record_versions, devices, clinicians, api_clients],
    ids=lambda make: make.__name__,
)
async def test_a_list_is_paged_by_its_cursor(
    client: AsyncClient, world: World, make: Callable[[AsyncClient, World], Awaitable[Made]]
) -> None:
    path, headers = await make(client, world)
    whole = await client.get(path, params={"limit": 100}, headers=headers)
    assert whole.status_code == 200, whole.text
    assert whole.json()["next_cursor"] is None
    assert len(whole.json()["items"]) >= 2
    assert await walk(client, path, headers) == whole.json()["items"]
    assert_problem(
        await client.get(path, params={"cursor": "not-ours"}, headers=headers), 422, "validation"
    )
    assert_problem(
        await client.get(path, params={"limit": 101}, headers=headers), 422, "validation"
    )
