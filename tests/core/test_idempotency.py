"""POSTs with an Idempotency-Key: a retry gets the first answer, never a second write."""

import json
import uuid

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import col, func, select
from starlette.types import Message

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


async def test_a_retry_sent_the_moment_the_answer_arrives_gets_it_again(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    """The answer is kept before its last byte goes out, so an app that sends the batch
    again as soon as it has the answer (or a second device of the same caller) gets the
    answer again, never 409 "still being processed"."""
    key = f"k-{uuid.uuid4()}"
    headers = {**world["clinician1"].headers, "Idempotency-Key": key}
    body = json.dumps(patient_body()).encode()
    answers: list[Response] = []
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answers.append(await client.post("/v1/patients", headers=headers, content=body))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/patients",
        "raw_path": b"/v1/patients",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"dorsi.test"),
            (b"content-type", b"application/json"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("dorsi.test", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 201
    (again,) = answers
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == b"".join(m.get("body", b"") for m in sent[1:])
