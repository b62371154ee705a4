"""Delivery at least once: queued with the change, sent signed, retried on the schedule
(an injected clock, no sleeps) through failures, hangs and dropped connections, and
endpoints disabled when gone or failing for five days."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.config import Environment
from app.webhooks import delivery as sending
from tests.audit.test_routes import events
from tests.conftest import Actor, World, build_world
from tests.feed import follow, tail
from tests.plans import changed_plan, new_patient, new_plan, paired_headers
from tests.webhooks import Clock, Receiver, new_endpoint

HANG_TIMEOUT = 0.5  # the send timeout these tests use, so a hanging receiver costs little


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


async def deliver(app: FastAPI, clock: Clock, *, rand: float = 0.5) -> int:
    """Every delivery due by the clock, attempted once (other tests' too): how many."""
    attempted = 0
    async with sending.http_client() as http:
        while True:
            sent = await sending.deliver_due(
                app.state.engine,
                http,
                "test-worker",
                Environment.test,
                clock,
                100,
                rand=lambda: rand,
                timeout=HANG_TIMEOUT,
            )
            attempted += sent
            if sent < 100:
                return attempted


async def deliveries(client: AsyncClient, admin: Actor, endpoint: dict[str, Any]) -> list[Any]:
    found, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"/v1/webhooks/{endpoint['id']}/deliveries", params=params, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        found += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


async def test_a_change_is_queued_by_its_own_transaction(
    client: AsyncClient, admin: Actor, receiver: Receiver
) -> None:
    endpoint = await new_endpoint(client, admin, receiver.url, ["patient.*"])
    patient = await new_patient(client, admin)
    # No worker has run: the delivery was written with the patient.
    (queued,) = await deliveries(client, admin, endpoint)
    assert queued["event_type"] == "patient.created"
    assert queued["status"] == "pending"
    assert queued["attempts"] == 0
    assert patient["id"]


async def test_retries_follow_the_schedule_through_every_kind_of_failure(
    app: FastAPI, client: AsyncClient, admin: Actor, receiver: Receiver
) -> None:
    endpoint = await new_endpoint(client, admin, receiver.url, ["patient.created"])
    patient = await new_patient(client, admin)
    receiver.plan.extend([503, "close", "hang", 500])
    clock = Clock()
    errors = []
    for attempt in range(1, 5):
        assert await deliver(app, clock) >= 1
        (state,) = await deliveries(client, admin, endpoint)
        assert state["status"] == "pending"
        assert state["attempts"] == attempt
        errors.append(state["error"])
        # rand 0.5: no jitter, so the wait is exactly the base: 10 s, then 3 times longer.
        waited = _at(state["next_attempt_at"]) - clock.now
        assert waited == timedelta(seconds=10 * 3 ** (attempt - 1))
        clock.advance(seconds=waited.total_seconds() - 1)
        await deliver(app, clock)
        (state,) = await deliveries(client, admin, endpoint)
        assert state["attempts"] == attempt  # not yet due
        clock.advance(seconds=1)
    assert await deliver(app, clock) >= 1
    (state,) = await deliveries(client, admin, endpoint)
    assert state["status"] == "delivered"
    assert state["attempts"] == 5
    assert state["next_attempt_at"] is None
    assert errors[0] == "HTTP 503"
    assert "RemoteProtocolError" in errors[1] or "ReadError" in errors[1]
    assert errors[2] == f"No answer within {HANG_TIMEOUT:g} s."
    assert errors[3] == "HTTP 500"
    # Every attempt: the same message id and event, and a signature that verifies.
    assert receiver.counts() == {state["event_id"]: 5}
    for event in receiver.verified(endpoint["secret"]):
        assert event["type"] == "patient.created"
        assert event["resource"] == {"type": "patient", "id": patient["id"], "version": 1}
        assert event["data"]["id"] == patient["id"]


def test_jitter_spreads_retries_and_the_schedule_spans_about_three_days() -> None:
    assert sending.backoff(2, lambda: 0.0) == timedelta(seconds=22.5)
    assert sending.backoff(2, lambda: 1.0) == timedelta(seconds=37.5)
    span = sum(
        (sending.backoff(n, lambda: 0.5) for n in range(1, sending.MAX_ATTEMPTS)), timedelta()
    )
    assert timedelta(days=2.5) < span < timedelta(days=3.5)


async def test_every_event_arrives_at_least_once_and_none_is_lost(
    app: FastAPI, client: AsyncClient, admin: Actor, receiver: Receiver
) -> None:
    cursor = await tail(client, admin)
    endpoint = await new_endpoint(
        client, admin, receiver.url, ["patient.*", "plan.*", "adherence_record.*"]
    )
    receiver.plan.extend([500, "close", 200, 503, "hang", 410 - 1, 502] * 3)
    for _ in range(3):
        patient = await new_patient(client, admin)
        await client.patch(
            f"/v1/patients/{patient['id']}",
            json={"time_zone": "Europe/Lisbon"},
            headers=admin.headers,
        )
        plan, etag = await new_plan(client, admin, patient["id"])
        active, _ = await changed_plan(client, admin, plan["id"], etag, status="active")
        app_headers = await paired_headers(client, admin, patient["id"])
        record = {
            "id": str(uuid.uuid4()),
            "plan_id": active["id"],
            "plan_version": active["version"],
            "item_id": active["items"][0]["id"],
            "performed_at": "2026-11-20T09:15:00+01:00",
            "status": "completed",
        }
        upload = await client.post(
            "/v1/adherence/batch", headers=app_headers, json={"records": [record]}
        )
        assert upload.status_code == 200, upload.text
    clock = Clock()
    for _ in range(30):
        await deliver(app, clock, rand=0.9)
        clock.advance(hours=13)
    feed = {
        item["cursor"]
        for item in await follow(client, admin, cursor)
        if item["type"] in ("patient", "plan", "adherence_record")
    }
    answered = {
        event["cursor"]
        for received, event in zip(
            receiver.received, receiver.verified(endpoint["secret"]), strict=True
        )
        if received.message_id in _delivered_ids(await deliveries(client, admin, endpoint))
    }
    assert feed == answered
    assert all(d["status"] == "delivered" for d in await deliveries(client, admin, endpoint))


def _delivered_ids(found: list[Any]) -> set[str]:
    return {d["event_id"] for d in found if d["status"] == "delivered"}


async def test_410_disables_the_endpoint_with_an_audit_event(
    app: FastAPI, client: AsyncClient, admin: Actor, receiver: Receiver
) -> None:
    endpoint = await new_endpoint(client, admin, receiver.url)
    receiver.default = 410
    await new_patient(client, admin)
    await deliver(app, Clock())
    read = (await client.get(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)).json()
    assert read["enabled"] is False
    assert read["disabled_reason"] == "gone"
    (state,) = await deliveries(client, admin, endpoint)
    assert state["status"] == "failed"
    trail = [e for e in await events(client, admin) if e["resource_id"] == endpoint["id"]]
    assert (trail[0]["action"], trail[0]["actor_kind"]) == ("disable", "system")
    # Disabled: what happens next is not queued for it.
    await new_patient(client, admin)
    assert len(await deliveries(client, admin, endpoint)) == 1


async def test_an_endpoint_failing_for_five_days_is_disabled(
    app: FastAPI, client: AsyncClient, admin: Actor, receiver: Receiver
) -> None:
    endpoint = await new_endpoint(client, admin, receiver.url)
    receiver.default = 500
    await new_patient(client, admin)
    clock = Clock()
    await deliver(app, clock)
    for _ in range(9):  # 4.5 days of retries: still enabled
        clock.advance(hours=12)
        await deliver(app, clock)
    read = (await client.get(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)).json()
    assert read["enabled"] is True
    assert read["failing_since"] is not None
    await new_patient(client, admin)
    clock.advance(hours=13)
    await deliver(app, clock)
    read = (await client.get(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)).json()
    assert read["enabled"] is False
    assert read["disabled_reason"] == "failing"
    trail = [e for e in await events(client, admin) if e["resource_id"] == endpoint["id"]]
    assert trail[0]["action"] == "disable"


def _at(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
