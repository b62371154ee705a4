"""A change committed by a writer that queued no delivery for it (a process that never
loaded the webhooks package) is queued by the worker's next round, once."""

import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.config import Settings
from app.core.db import transaction
from app.sync.models import Change
from app.worker.runner import Worker
from tests.conftest import build_world
from tests.webhooks import Receiver, new_endpoint
from tests.webhooks.test_delivery import deliveries


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def test_the_worker_queues_what_a_writer_did_not(
    app: FastAPI, settings: Settings, client: AsyncClient, receiver: Receiver
) -> None:
    world = await build_world(app)
    admin = world["admin1"]
    endpoint = await new_endpoint(client, admin, receiver.url, ["patient.*"])
    async with transaction(app.state.engine) as session:
        # Straight into the outbox, as the change's own writer would, minus the hook.
        session.add(
            Change(
                clinic_id=world.clinic1,
                resource_type="patient",
                resource_id=str(uuid.uuid4()),
                operation="update",
                version=2,
                data={"note": "written elsewhere"},
            )
        )
    assert await deliveries(client, admin, endpoint) == []
    worker = Worker(app.state.engine, settings)
    await worker.clinic_round()
    await worker.clinic_round()
    (queued,) = await deliveries(client, admin, endpoint)
    assert queued["event_type"] == "patient.updated"
