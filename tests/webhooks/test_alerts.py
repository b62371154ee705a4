"""Clinical alerts: a patient crossing the clinic's adherence threshold is announced
once, and again only after `adherence.recovered`; a record with pain at or above
`pain_alert_at` is announced once."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.auth import accounts
from app.auth import service as auth_service
from app.auth.models import Role
from app.core.config import Settings
from app.core.db import transaction
from app.webhooks import delivery as sending
from app.worker.runner import Worker
from tests.adherence.test_overview import DAILY, LISBON, Case, Clinic, patient, upload
from tests.conftest import PASSWORD
from tests.webhooks import Receiver

ALERTS = ["adherence.below_threshold", "adherence.recovered", "pain.reported_high"]


@pytest.fixture
async def clinic(app: FastAPI) -> Clinic:
    async with transaction(app.state.engine) as session:
        made = await accounts.create_clinic(session, "Alerting Clinic")
        email = f"alerts-{uuid.uuid4().hex[:8]}@clinic.test"
        secrets = app.state.secrets
        await accounts.create_clinician(session, secrets, made.id, email, PASSWORD, Role.admin)
        token = await auth_service.password_grant(session, secrets, email, PASSWORD, None)
    return Clinic(made.id, {"Authorization": f"Bearer {token.access_token}"})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def alerts(
    app: FastAPI, settings: Settings, receiver: Receiver, secret: str, case: Case
) -> list[Any]:
    """A worker's round and deliveries; the alerts received about the patient since the
    last call, each verified with the endpoint's secret."""
    worker = Worker(app.state.engine, settings)
    await worker.clinic_round()
    async with sending.http_client() as http:
        while await worker.deliver(http):
            pass
    events = receiver.verified(secret)
    receiver.received.clear()
    return [e for e in events if e["data"].get("patient_id") == str(case.patient_id)]


async def test_an_alert_fires_once_and_again_only_after_recovery(
    app: FastAPI, settings: Settings, client: AsyncClient, clinic: Clinic, receiver: Receiver
) -> None:
    made = await client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ALERTS}, headers=clinic.headers
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    case = await patient(app, clinic, LISBON, [(20, [DAILY])])

    async def announced() -> list[str]:
        return [e["type"] for e in await alerts(app, settings, receiver, secret, case)]

    # Nothing done in a week of daily sessions: 0 %, under the 70 % threshold.
    assert await announced() == ["adherence.below_threshold"]
    assert await announced() == []
    records = [
        await upload(client, clinic, case, DAILY, days_ago=day, **({"pain": 8} if day == 3 else {}))
        for day in range(1, 8)
    ]
    assert sorted(await announced()) == ["adherence.recovered", "pain.reported_high"]
    assert await announced() == []
    for record in records[:4]:
        deleted = await client.delete(
            f"/v1/adherence/{record['id']}",
            headers={**clinic.headers, "If-Match": f'"{record["id"]}-1"'},
        )
        assert deleted.status_code == 204, deleted.text
    assert await announced() == ["adherence.below_threshold"]
    assert await announced() == []


async def test_pain_is_announced_once_per_record_and_when_corrected_up_to_the_level(
    app: FastAPI, settings: Settings, client: AsyncClient, clinic: Clinic, receiver: Receiver
) -> None:
    made = await client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["pain.reported_high"]},
        headers=clinic.headers,
    )
    secret = made.json()["secret"]
    case = await patient(app, clinic, LISBON, [(20, [DAILY])])
    mild = await upload(client, clinic, case, DAILY, days_ago=1, pain=2)
    high = await upload(client, clinic, case, DAILY, days_ago=2, pain=7)
    (first,) = await alerts(app, settings, receiver, secret, case)
    assert first["type"] == "pain.reported_high"
    assert first["data"]["adherence_record_id"] == high["id"]
    assert first["data"]["pain"] == 7
    assert first["data"]["pain_alert_at"] == 7
    assert first["resource"] == {"type": "adherence_record", "id": high["id"], "version": 1}
    corrected = await client.patch(
        f"/v1/adherence/{mild['id']}",
        json={"pain": 9},
        headers={**clinic.headers, "If-Match": f'"{mild["id"]}-1"'},
    )
    assert corrected.status_code == 200, corrected.text
    (second,) = await alerts(app, settings, receiver, secret, case)
    assert second["data"]["adherence_record_id"] == mild["id"]
    assert second["resource"]["version"] == 2
    # Corrected again, still high: already announced at that level.
    again = await client.patch(
        f"/v1/adherence/{mild['id']}",
        json={"pain": 10},
        headers={**clinic.headers, "If-Match": corrected.headers["etag"]},
    )
    assert again.status_code == 200, again.text
    assert await alerts(app, settings, receiver, secret, case) == []
