"""POSTs with an Idempotency-Key: a retry gets the first answer, never a second write."""

import uuid

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col, func, select

from app.core.db import transaction
from app.patients.models import Patient
from tests.conftest import World
from tests.core.problems import assert_problem


def patient_body() -> dict[str, str]:
    return {
        "reference": f"IDEM-{uuid.uuid4().hex[:10]}",
        "affected_side": "right",
        "cause": "multiple_sclerosis",
        "time_zone": "Europe/Berlin",
    }


async def count(app: FastAPI, reference: str) -> int:
    async with transaction(app.state.engine) as session:
        found = (
            await session.exec(
                select(func.count()).select_from(Patient).where(col(Patient.reference) == reference)
            )
        ).one()
    return int(found)


async def test_a_retried_create_answers_the_same_and_writes_once(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    headers = {**world["clinician1"].headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = patient_body()
    first = await client.post("/v1/patients", headers=headers, json=body)
    again = await client.post("/v1/patients", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count(app, body["reference"]) == 1


async def test_the_same_key_with_another_body_is_refused(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    headers = {**world["clinician1"].headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    await client.post("/v1/patients", headers=headers, json=patient_body())
    other = patient_body()
    refused = await client.post("/v1/patients", headers=headers, json=other)
    assert_problem(refused, 422, "validation")
    assert await count(app, other["reference"]) == 0


async def test_keys_belong_to_their_caller(world: World, client: AsyncClient) -> None:
    key = f"k-{uuid.uuid4()}"
    body = patient_body()
    mine = await client.post(
        "/v1/patients", headers={**world["clinician1"].headers, "Idempotency-Key": key}, json=body
    )
    theirs = await client.post(
        "/v1/patients", headers={**world["clinician2"].headers, "Idempotency-Key": key}, json=body
    )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


async def test_failed_or_secret_answers_are_not_kept(world: World, client: AsyncClient) -> None:
    headers = {**world["clinician1"].headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    path = f"/v1/patients/{world.patient_a}/access-codes"
    first = await client.post(path, headers=headers)
    second = await client.post(path, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["code"] != second.json()["code"]
    assert "idempotent-replayed" not in second.headers


@pytest.mark.parametrize("key", ["", "x" * 201])
async def test_a_malformed_key_is_400(world: World, client: AsyncClient, key: str) -> None:
    answer = await client.post(
        "/v1/patients",
        headers={**world["clinician1"].headers, "Idempotency-Key": key},
        json=patient_body(),
    )
    assert_problem(answer, 400, "bad-request")
