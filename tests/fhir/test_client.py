"""A FHIR client library nobody here wrote (fhirpy, over aiohttp) reads the facade as an
integration would: search, page through `link.next`, read, version read. It speaks real
HTTP, so the app is served by uvicorn on a free local port for the test."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from app.core.columns import utcnow
from tests.conftest import Actor, World, build_world, make_client
from tests.fhir import valid
from tests.plans import active_plan, changed_plan, item, new_patient, paired_headers


@pytest.fixture(scope="module")
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app on a live local port, in the tests' own event loop (and so on their engine)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/fhir/R4"
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def clinic(app: FastAPI) -> World:
    return await build_world(app)


@pytest.fixture(scope="module")
async def made(app: FastAPI, clinic: World) -> dict[str, Any]:
    """A patient whose plan went through two versions, with five sessions under it."""
    admin = clinic["admin1"]
    async with make_client(app) as client:
        patient = await new_patient(client, admin)
        plan, etag = await active_plan(client, admin, patient["id"], items=[item()])
        plan, _ = await changed_plan(client, admin, plan["id"], etag, title="Renamed")
        headers = await paired_headers(client, admin, patient["id"])
        records = [
            {
                "id": str(uuid.uuid4()),
                "plan_id": plan["id"],
                "plan_version": plan["version"],
                "item_id": plan["items"][0]["id"],
                "performed_at": utcnow().isoformat(),
                "status": "completed",
                "pain": number,
            }
            for number in range(5)
        ]
        upload = await client.post(
            "/v1/adherence/batch", json={"records": records}, headers=headers
        )
        assert upload.status_code == 200, upload.text
    return {"patient": patient, "plan": plan, "records": records}


def fhir_client(url: str, actor: Actor) -> AsyncFHIRClient:
    return AsyncFHIRClient(url, authorization=f"Bearer {actor.token}")


async def test_a_fhir_client_searches_pages_reads_and_reads_versions(
    served: str, clinic: World, made: dict[str, Any]
) -> None:
    client = fhir_client(served, clinic["client_all"])
    patient_id = made["patient"]["id"]
    # Search, paged two at a time: fhirpy follows link.next to the end.
    sessions = client.resources("Procedure").search(patient=patient_id).limit(2)
    found = [
        valid(procedure.serialize())  # type: ignore[no-untyped-call]
        async for procedure in sessions
    ]
    assert sorted(p["id"] for p in found) == sorted(r["id"] for r in made["records"])
    first_page = await sessions.fetch()
    assert len(first_page) == 2
    # By identifier, as a clinic system finds its own patient.
    patient = await (
        client.resources("Patient").search(identifier=made["patient"]["reference"]).get()
    )
    assert patient.id == patient_id
    # Read.
    plan_id = made["plan"]["id"]
    care_plan = await client.reference("CarePlan", plan_id).to_resource()
    read = valid(care_plan.serialize())  # type: ignore[no-untyped-call]
    assert read["meta"]["versionId"] == str(made["plan"]["version"])
    assert care_plan["title"] == "Renamed"
    # Version read: the plan as it was when activated.
    older = await client.execute(f"CarePlan/{plan_id}/_history/2", method="get")
    assert valid(dict(older))["meta"]["versionId"] == "2"
    assert older["title"] != "Renamed"
    pain = await client.resources("Observation").search(patient=patient_id, code="72514-3").fetch()
    assert sorted(o["valueInteger"] for o in pain) == [0, 1, 2, 3, 4]


async def test_a_fhir_client_reads_the_errors_as_operation_outcomes(
    served: str, clinic: World
) -> None:
    client = fhir_client(served, clinic["client_all"])
    with pytest.raises(ResourceNotFound):
        await client.reference("Patient", str(uuid.uuid4())).to_resource()
    with pytest.raises(OperationOutcome) as refused:
        await client.resources("Patient").search(name="Smith").fetch()
    assert refused.value.resource["issue"][0]["code"] == "invalid"
