"""Managing webhook endpoints: who may, what is refused, the secret shown once, rotation
with both signatures for a day, test events, the delivery log and retries; all audited."""

import uuid
from collections.abc import AsyncIterator

import pytest
import standardwebhooks
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.columns import utcnow
from app.core.config import Environment
from app.webhooks import delivery as sending
from app.webhooks import urls
from tests.audit.test_routes import events
from tests.conftest import World, build_world
from tests.core.problems import assert_problem
from tests.plans import new_patient
from tests.webhooks import Receiver, new_endpoint


@pytest.fixture(scope="module")
async def clinic(app: FastAPI) -> World:
    return await build_world(app)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def send_due(app: FastAPI) -> None:
    """Every delivery due now, attempted once (other tests' too)."""
    async with sending.http_client() as http:
        while (
            await sending.deliver_due(
                app.state.engine, http, "test-worker", Environment.test, utcnow, 100
            )
            == 100
        ):
            pass


async def test_the_secret_is_shown_once_and_every_change_is_audited(
    client: AsyncClient, clinic: World, receiver: Receiver
) -> None:
    admin = clinic["admin1"]
    created = await new_endpoint(client, admin, receiver.url, ["plan.*", "patient.created"])
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["patient.created", "plan.*"]
    assert created["enabled"] is True
    hook = f"/v1/webhooks/{created['id']}"
    read = await client.get(hook, headers=admin.headers)
    assert read.status_code == 200
    assert "secret" not in read.json()
    listed = await client.get("/v1/webhooks", headers=admin.headers)
    assert created["id"] in [e["id"] for e in listed.json()["items"]]
    patched = await client.patch(
        hook, json={"description": "EHR", "enabled": False}, headers=admin.headers
    )
    assert patched.json()["description"] == "EHR"
    assert patched.json()["enabled"] is False
    rotated = await client.post(f"{hook}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert (await client.post(f"{hook}/test", headers=admin.headers)).status_code == 202
    assert (await client.delete(hook, headers=admin.headers)).status_code == 204
    assert_problem(await client.get(hook, headers=admin.headers), 404, "not-found")
    trail = [
        e["action"]
        for e in await events(client, admin, actor_id=str(admin.id))
        if e["resource_type"] == "webhook_endpoint" and e["resource_id"] == created["id"]
    ]
    assert sorted(trail) == ["create", "delete", "rotate_secret", "test", "update"]


async def test_admins_and_clients_with_the_scope_only(
    client: AsyncClient, clinic: World, world: World, receiver: Receiver
) -> None:
    body = {"url": receiver.url, "events": ["patient.*"]}
    for name in ("clinician1", "client_none", "patient_a"):
        response = await client.post("/v1/webhooks", json=body, headers=clinic[name].headers)
        assert_problem(response, 403, "forbidden")
    assert_problem(await client.post("/v1/webhooks", json=body), 401, "unauthorized")
    by_client = await new_endpoint(client, clinic["client_all"], receiver.url)
    # Another clinic's endpoint is not there at all.
    other = await client.get(f"/v1/webhooks/{by_client['id']}", headers=world["admin1"].headers)
    assert_problem(other, 404, "not-found")


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/hooks",
        "https://10.1.2.3/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/hooks",
        "https://user:pass@example.org/hooks",
        "ftp://example.org/hooks",
    ],
)
async def test_unsafe_urls_are_refused(client: AsyncClient, clinic: World, url: str) -> None:
    response = await client.post(
        "/v1/webhooks", json={"url": url, "events": ["plan.*"]}, headers=clinic["admin1"].headers
    )
    problem = assert_problem(response, 422, "validation")
    assert problem["errors"][0]["pointer"] == "#/url"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.8",
        "172.16.4.4",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
    ],
)
def test_local_addresses_are_refused_outside_development(address: str) -> None:
    with pytest.raises(urls.UnsafeURL):
        urls.check_address(address, Environment.production, "hooks.example.org")


def test_production_wants_https_even_for_localhost() -> None:
    with pytest.raises(urls.UnsafeURL):
        urls.check_form("http://127.0.0.1:9000/hooks", Environment.production)
    assert urls.check_form("http://127.0.0.1:9000/hooks", Environment.test) == "127.0.0.1"
    urls.check_address("93.184.215.14", Environment.production, "example.org")


async def test_a_rotated_secret_signs_beside_the_new_one(
    app: FastAPI, client: AsyncClient, clinic: World, receiver: Receiver
) -> None:
    admin = clinic["admin1"]
    created = await new_endpoint(client, admin, receiver.url)
    rotated = await client.post(
        f"/v1/webhooks/{created['id']}/rotate-secret", headers=admin.headers
    )
    await client.post(f"/v1/webhooks/{created['id']}/test", headers=admin.headers)
    await send_due(app)
    assert len(receiver.received) == 1
    assert len(receiver.received[0].headers["webhook-signature"].split(" ")) == 2
    for secret in (created["secret"], rotated.json()["secret"]):
        (event,) = receiver.verified(secret)
        assert event["type"] == "webhook.test"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        receiver.verified("whsec_" + "QUJD" * 8)


async def test_deliveries_are_listed_in_pages_and_retried(
    app: FastAPI, client: AsyncClient, clinic: World, receiver: Receiver
) -> None:
    admin = clinic["admin1"]
    created = await new_endpoint(client, admin, receiver.url)
    hook = f"/v1/webhooks/{created['id']}"
    for _ in range(3):
        await new_patient(client, admin)
    await client.post(f"{hook}/test", headers=admin.headers)
    receiver.plan.extend([500])
    await send_due(app)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{hook}/deliveries", params=params, headers=admin.headers)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4
    assert len({d["id"] for d in seen}) == 4
    assert seen[0]["event_type"] == "webhook.test"
    assert sorted(d["event_type"] for d in seen[1:]) == ["patient.created"] * 3
    failed = [d for d in seen if d["status"] == "pending"]
    assert len(failed) == 1
    assert failed[0]["response_status_code"] == 500
    assert failed[0]["error"] == "HTTP 500"
    assert failed[0]["attempts"] == 1
    assert failed[0]["next_attempt_at"] is not None
    delivered = [d for d in seen if d["status"] == "delivered"]
    assert all(d["response_status_code"] == 204 and d["latency_ms"] >= 0 for d in delivered)
    retried = await client.post(f"{hook}/deliveries/{failed[0]['id']}/retry", headers=admin.headers)
    assert retried.status_code == 202
    await send_due(app)
    assert receiver.counts()[failed[0]["event_id"]] == 2
    missing = await client.post(f"{hook}/deliveries/{uuid.uuid4()}/retry", headers=admin.headers)
    assert_problem(missing, 404, "not-found")


def test_a_send_connects_to_the_address_that_was_checked() -> None:
    """Against DNS rebinding: the name is resolved and checked, then the connection goes
    to that address, with the name kept for the Host header and TLS."""
    assert urls.pinned("https://hooks.example.org:8443/in?x=1", "93.184.215.14") == (
        "https://93.184.215.14:8443/in?x=1",
        "hooks.example.org:8443",
        "hooks.example.org",
    )
    assert urls.pinned("https://hooks.example.org/in", "2606:2800:21f::1")[0] == (
        "https://[2606:2800:21f::1]/in"
    )
