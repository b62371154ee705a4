"""`/v1/me/today` on PostgreSQL, where requests arriving together share one statement: the
same answers as the route, an audit event for each request, and the route as the fallback."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.config import Settings
from app.main import create_app, dispose_engines
from tests.adherence.test_batch import patient_with_plan, record, upload
from tests.audit.test_routes import events
from tests.conftest import Actor, World, make_client
from tests.core.problems import assert_problem


@pytest.fixture(autouse=True)
def postgresql_only(app: FastAPI) -> None:
    if app.state.today_queue is None:
        pytest.skip("requests are batched on PostgreSQL only")


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


@pytest.fixture
async def route_only(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app on the same database that answers today with the route alone."""
    application = create_app(settings)
    application.state.today_queue = None
    async with make_client(application) as http:
        yield http
    dispose_engines(application)


def with_id(headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    request_id = f"today-{uuid.uuid4().hex}"
    return request_id, {**headers, "X-Request-ID": request_id}


async def today_events(client: AsyncClient, admin: Actor, patient_id: str) -> list[dict[str, Any]]:
    found = await events(client, admin, patient_id=patient_id)
    return [e for e in found if e["resource_type"] == "today"]


async def today_request_ids(client: AsyncClient, admin: Actor, patient_id: str) -> list[str]:
    return [e["request_id"] for e in await today_events(client, admin, patient_id)]


async def test_batched_answers_are_the_routes_bytes(
    client: AsyncClient, route_only: AsyncClient, clinician: Actor
) -> None:
    zone = "Asia/Kolkata"
    patient = await patient_with_plan(client, clinician, time_zone=zone)
    now = datetime.now(ZoneInfo(zone)).replace(microsecond=0)
    done = [
        record(patient.plan, 0, performed_at=now.isoformat(), pain=3),
        record(patient.plan, 1, performed_at=now.isoformat(), status="skipped", skip_reason="pain")
        | dict.fromkeys(("sets_done", "reps_done")),
    ]
    assert {r["result"] for r in await upload(client, patient.app, *done)} == {"created"}

    batched = await client.get("/v1/me/today", headers=patient.app)
    routed = await route_only.get("/v1/me/today", headers=patient.app)
    assert batched.status_code == routed.status_code == 200
    assert batched.content == routed.content
    assert sum(len(entry["recorded"]) for entry in batched.json()["items"]) == 2
    ignored = {"x-request-id", "date"}
    assert {k: v for k, v in batched.headers.items() if k not in ignored} == {
        k: v for k, v in routed.headers.items() if k not in ignored
    }


async def test_concurrent_requests_each_get_their_own_answer_and_audit_event(
    client: AsyncClient, world: World, clinician: Actor
) -> None:
    patients = [await patient_with_plan(client, clinician) for _ in range(3)]
    calls = [(p, *with_id(p.app)) for p in patients for _ in range(8)]

    responses = await asyncio.gather(
        *(client.get("/v1/me/today", headers=headers) for _, _, headers in calls)
    )

    for (patient, request_id, _), response in zip(calls, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == request_id
        assert response.json()["plan_id"] == patient.plan["id"]
    committed = []
    for patient in patients:
        sent = sorted(request_id for p, request_id, _ in calls if p is patient)
        found = await today_events(client, world["admin1"], patient.id)
        assert sorted(e["request_id"] for e in found) == sent
        committed += [e["occurred_at"] for e in found]
    # Requests that waited together were answered by one statement: one transaction time.
    assert len(set(committed)) < len(calls)


async def test_a_revoked_app_is_refused_and_not_audited(
    client: AsyncClient, world: World, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    assert (await client.get("/v1/me/today", headers=patient.app)).status_code == 200
    devices = await client.get(f"/v1/patients/{patient.id}/devices", headers=clinician.headers)
    for device in devices.json():
        path = f"/v1/patients/{patient.id}/devices/{device['id']}"
        assert (await client.delete(path, headers=clinician.headers)).status_code == 204

    request_id, headers = with_id(patient.app)
    refused = await client.get("/v1/me/today", headers=headers)
    assert_problem(refused, 401, "unauthorized")
    assert request_id not in await today_request_ids(client, world["admin1"], patient.id)


async def test_the_route_answers_when_the_batch_cannot_reach_the_database(
    settings: Settings, client: AsyncClient, world: World, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    expected = await client.get("/v1/me/today", headers=patient.app)
    application = create_app(settings)
    application.state.awaited_reads.conninfo = "postgresql://postgres@127.0.0.1:1/nowhere"
    request_id, headers = with_id(patient.app)
    try:
        async with make_client(application) as http:
            response = await http.get("/v1/me/today", headers=headers)
    finally:
        dispose_engines(application)

    assert response.status_code == 200, response.text
    assert response.content == expected.content
    ids = await today_request_ids(client, world["admin1"], patient.id)
    assert ids.count(request_id) == 1
