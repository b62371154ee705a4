"""The worker as operators run it: killed outright mid-delivery, the attempt is retried
by the next worker; stopped with SIGTERM, it finishes what it claimed; two at once never
send the same attempt twice."""

import asyncio
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.config import Settings
from app.core.db import make_engine
from app.webhooks import delivery as sending
from app.worker.runner import Worker
from tests.conftest import TEST_SECRET, Actor, World, build_world
from tests.plans import new_patient
from tests.test_cli import DORSI, environment
from tests.webhooks import Clock, Receiver, new_endpoint
from tests.webhooks.test_delivery import deliveries


@pytest.fixture(scope="module")
async def clinic(app: FastAPI) -> World:
    return await build_world(app)


@pytest.fixture
def admin(clinic: World) -> Actor:
    return clinic["admin1"]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def start_worker(settings: Settings) -> asyncio.subprocess.Process:
    """`dorsi worker` on the tests' database, as a process of its own."""
    env = environment(
        database_url=settings.database_url, environment="test", secret_key=TEST_SECRET
    )
    return await asyncio.create_subprocess_exec(
        str(DORSI),
        "worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_a_worker_killed_mid_delivery_leaves_the_attempt_to_the_next(
    app: FastAPI, settings: Settings, client: AsyncClient, admin: Actor, receiver: Receiver
) -> None:
    endpoint = await new_endpoint(client, admin, receiver.url, ["patient.created"])
    receiver.plan.append("hang")
    await new_patient(client, admin)
    worker = await start_worker(settings)
    try:
        await receiver.wait_for(1, timeout=60)
    finally:
        worker.kill()
        await worker.communicate()
    (claimed,) = await deliveries(client, admin, endpoint)
    assert claimed["status"] == "pending"
    assert claimed["attempts"] == 1
    # The next worker finds it due once the dead worker's lease has run out.
    later = Clock(datetime.now(UTC) + sending.LEASE - timedelta(seconds=5))
    restarted = Worker(app.state.engine, settings, clock=later)
    async with sending.http_client() as http:
        while await restarted.deliver(http):
            pass
        assert len(receiver.received) == 1  # still claimed by the dead worker
        later.advance(seconds=6)
        while await restarted.deliver(http):
            pass
    (state,) = await deliveries(client, admin, endpoint)
    assert state["status"] == "delivered"
    assert state["attempts"] == 2
    assert receiver.counts() == {state["event_id"]: 2}
    assert len(receiver.verified(endpoint["secret"])) == 2


async def test_sigterm_lets_the_worker_finish_what_it_claimed(
    settings: Settings, client: AsyncClient, admin: Actor, receiver: Receiver
) -> None:
    endpoint = await new_endpoint(client, admin, receiver.url, ["patient.created"])
    receiver.plan.append("slow")
    await new_patient(client, admin)
    worker = await start_worker(settings)
    await receiver.wait_for(1, timeout=60)
    worker.send_signal(signal.SIGTERM)
    output, _ = await worker.communicate()
    assert worker.returncode == 0, output
    assert b"worker_stopped" in output
    (state,) = await deliveries(client, admin, endpoint)
    assert state["status"] == "delivered"
    assert receiver.counts() == {state["event_id"]: 1}


async def test_two_workers_never_send_the_same_attempt_twice(
    settings: Settings, client: AsyncClient, admin: Actor, receiver: Receiver
) -> None:
    endpoint = await new_endpoint(client, admin, receiver.url, ["patient.created"])
    for _ in range(40):
        await new_patient(client, admin)
    engines = [make_engine(settings), make_engine(settings)]
    try:
        workers = [Worker(engine, settings, batch=3) for engine in engines]
        sent: list[int] = [0, 0]

        async def drain(number: int) -> None:
            async with sending.http_client() as http:
                while await sending.due_count(engines[number], datetime.now(UTC)):
                    sent[number] += await workers[number].deliver(http)

        await asyncio.gather(drain(0), drain(1))
    finally:
        for engine in engines:
            await engine.dispose()
    found: list[Any] = await deliveries(client, admin, endpoint)
    assert len(found) == 40
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in found)
    assert sorted(receiver.counts().values()) == [1] * 40
    assert all(sent), sent  # both took part
