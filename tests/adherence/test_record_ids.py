"""Record ids are made by the patient's app, so they are unique within a clinic only: two
clinics may use one id, each keeps its own record under it, and neither learns of the
other's (no "taken" answer, no shared versions, changes or exports)."""

import uuid
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.adherence.test_batch import Patient, patient_with_plan, record, upload
from tests.conftest import Actor, World, build_world
from tests.feed import follow, tail


@pytest.fixture
async def admins(app: FastAPI, world: World) -> tuple[Actor, Actor]:
    """The admins of two clinics; the second's clinic is new, so its feed is the test's."""
    return world["admin1"], (await build_world(app))["admin1"]


async def read(client: AsyncClient, actor: Actor | dict[str, str], path: str) -> Any:
    headers = actor.headers if isinstance(actor, Actor) else actor
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def correct(
    client: AsyncClient, headers: dict[str, str], record_id: str, **change: Any
) -> dict[str, Any]:
    path = f"/v1/adherence/{record_id}"
    etag = (await read(client, headers, path)).headers["etag"]
    response = await client.patch(path, headers={**headers, "If-Match": etag}, json=change)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_two_clinics_upload_one_record_id_and_each_keeps_its_own(
    client: AsyncClient, admins: tuple[Actor, Actor]
) -> None:
    first, second = admins
    cursors = [await tail(client, admin) for admin in admins]
    one: Patient = await patient_with_plan(client, first)
    two: Patient = await patient_with_plan(client, second)
    shared = str(uuid.uuid4())
    sent_one = record(one.plan, id=shared, reps_done=10)
    sent_two = record(two.plan, id=shared, reps_done=4)

    [made_one] = await upload(client, one.app, sent_one)
    [made_two] = await upload(client, two.app, sent_two)
    assert (made_one["result"], made_two["result"]) == ("created", "created")
    assert made_one["record"]["patient_id"] == one.id
    assert made_two["record"]["patient_id"] == two.id
    assert made_two["record"]["reps_done"] == 4

    # Replays in each clinic still answer from that clinic's own record.
    [again] = await upload(client, two.app, sent_two)
    assert (again["result"], again["record"]) == ("unchanged", made_two["record"])
    [clash] = await upload(client, second.headers, {**sent_two, "reps_done": 9})
    assert (clash["result"], clash["record"]) == ("conflict", made_two["record"])
    [clash] = await upload(client, one.app, {**sent_one, "reps_done": 9})
    assert (clash["result"], clash["record"]) == ("conflict", made_one["record"])

    path = f"/v1/adherence/{shared}"
    assert (await read(client, first, path)).json() == made_one["record"]
    assert (await read(client, second, path)).json() == made_two["record"]
    assert (await read(client, two.app, path)).json() == made_two["record"]

    # Each clinic corrects its own: the versions kept are the clinic's own.
    fixed_one = await correct(client, one.app, shared, reps_done=11)
    fixed_two = await correct(client, two.app, shared, reps_done=5)
    for admin, made, fixed in ((first, made_one, fixed_one), (second, made_two, fixed_two)):
        versions = (await read(client, admin, f"{path}/versions")).json()["items"]
        assert [v["record"] for v in versions] == [made["record"], fixed]

    # Each clinic's feed renders its own record at each version, and nothing of the other's.
    for admin, cursor, made, fixed in zip(
        admins, cursors, (made_one, made_two), (fixed_one, fixed_two), strict=True
    ):
        changes = await follow(client, admin, cursor, types="adherence_record")
        assert [(c["id"], c["operation"], c["data"]) for c in changes] == [
            (shared, "create", made["record"]),
            (shared, "update", fixed),
        ]
        exported = await read(client, admin, "/v1/export/adherence_record.ndjson")
        mine = list(map(orjson.loads, exported.content.splitlines()))
        assert [line for line in mine if line["id"] == shared] == [fixed]

    # Deleting one clinic's record leaves the other's.
    etag = (await read(client, first, path)).headers["etag"]
    deleted = await client.delete(path, headers={**first.headers, "If-Match": etag})
    assert deleted.status_code == 204, deleted.text
    assert (await client.get(path, headers=first.headers)).status_code == 404
    assert (await read(client, second, path)).json() == fixed_two


async def test_a_clinic_never_hears_that_another_clinic_took_an_id(
    client: AsyncClient, admins: tuple[Actor, Actor]
) -> None:
    first, second = admins
    one = await patient_with_plan(client, first)
    two = await patient_with_plan(client, second)
    sent = [record(one.plan, i % 2) for i in range(5)]
    assert [r["result"] for r in await upload(client, one.app, *sent)] == ["created"] * 5
    # The other clinic's app, and its admin, upload records with every one of those ids.
    for headers in (two.app, second.headers):
        results = await upload(client, headers, *(record(two.plan, id=r["id"]) for r in sent))
        assert {r["result"] for r in results} <= {"created", "unchanged"}
        assert all(r["errors"] is None for r in results)
    # Within the clinic, another patient's record still holds its id.
    same_clinic = await patient_with_plan(client, first)
    [taken] = await upload(client, same_clinic.app, record(same_clinic.plan, id=sent[0]["id"]))
    assert taken["result"] == "rejected"
    assert taken["errors"][0]["detail"] == "This id is taken; use a new one."
