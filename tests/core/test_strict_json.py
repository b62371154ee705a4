"""JSON is taken as JSON has it (found by the fuzzer): no 0 or 1 for a boolean, no false
or "3" for a number, no number for a time."""

import uuid
from typing import Any

from httpx import AsyncClient

from app.plans.schemas import ITEM_EXAMPLE
from tests.conftest import World


def pointers(answer: Any) -> list[str]:
    return [e["pointer"] for e in answer.json()["errors"]]


async def test_a_boolean_is_true_or_false(world: World, client: AsyncClient) -> None:
    admin = world["admin1"].headers
    made = await client.post(
        "/v1/clinicians",
        headers=admin,
        json={"email": f"b-{uuid.uuid4().hex[:8]}@clinic.test", "password": "a long passphrase"},
    )
    assert made.status_code == 201, made.text
    path = f"/v1/clinicians/{made.json()['id']}"
    for bad in (0, 1, "false", "no"):
        refused = await client.patch(path, headers=admin, json={"active": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert pointers(refused) == ["#/active"]
    assert (await client.get("/v1/clinicians", headers=admin)).status_code == 200
    kept = await client.patch(path, headers=admin, json={"active": True})
    assert (kept.status_code, kept.json()["active"]) == (200, True)


async def test_a_number_is_a_json_integer(world: World, client: AsyncClient) -> None:
    staff = world["clinician1"].headers
    for field, bad in (("rest_seconds", False), ("sets", "3"), ("reps", True), ("sets", 2.5)):
        item = {**ITEM_EXAMPLE, field: bad}
        refused = await client.post(
            "/v1/plan-templates", headers=staff, json={"name": "Strict", "items": [item]}
        )
        assert refused.status_code == 422, (field, bad, refused.text)
        assert pointers(refused) == [f"#/items/0/{field}"]
    made = await client.post(
        "/v1/plan-templates", headers=staff, json={"name": "Strict", "items": [ITEM_EXAMPLE]}
    )
    assert made.status_code == 201, made.text


async def test_a_batch_record_with_a_boolean_for_a_number_is_rejected(
    world: World, client: AsyncClient
) -> None:
    record = {
        "id": str(uuid.uuid4()),
        "plan_id": str(uuid.uuid4()),
        "plan_version": True,
        "item_id": str(uuid.uuid4()),
        "performed_at": "2026-11-23T18:30:00+00:00",
        "status": "completed",
        "sets_done": 3,
        "pain": False,
    }
    answer = await client.post(
        "/v1/adherence/batch", headers=world["patient_a"].headers, json={"records": [record]}
    )
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    assert result["result"] == "rejected"
    assert sorted(e["pointer"] for e in result["errors"]) == [
        "#/records/0/pain",
        "#/records/0/plan_version",
    ]


async def test_an_export_since_is_an_rfc_3339_time(world: World, client: AsyncClient) -> None:
    system = world["client_all"].headers
    for bad in ("0.5", "0", "1700000000"):
        refused = await client.get(
            "/v1/export/patient.ndjson", params={"since": bad}, headers=system
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert pointers(refused) == ["#/since"]
    taken = await client.get(
        "/v1/export/patient.ndjson", params={"since": "2026-11-23T10:00:00Z"}, headers=system
    )
    assert taken.status_code == 200
