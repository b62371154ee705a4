"""Correcting and deleting adherence records: versions kept, tombstones for sync."""

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col, select

from app.core.db import transaction
from app.sync.models import Change
from tests.conftest import Actor, World
from tests.plans import GLOBAL_TEMPLATE_ID, active_plan, new_patient, paired_headers


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


async def uploaded(
    client: AsyncClient, clinician: Actor, **fields: Any
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """A patient with an active plan, paired, who uploaded one completed session."""
    patient = await new_patient(client, clinician)
    plan, _ = await active_plan(client, clinician, patient["id"], template_id=GLOBAL_TEMPLATE_ID)
    app_headers = await paired_headers(client, clinician, patient["id"])
    record = {
        "id": str(uuid.uuid4()),
        "plan_id": plan["id"],
        "plan_version": plan["version"],
        "item_id": plan["items"][1]["id"],
        "performed_at": "2026-11-20T09:15:00+01:00",
        "status": "completed",
        "sets_done": 3,
        "reps_done": 10,
        **fields,
    }
    answer = await client.post(
        "/v1/adherence/batch", headers=app_headers, json={"records": [record]}
    )
    assert answer.json()["results"][0]["result"] == "created", answer.text
    return patient, app_headers, answer.json()["results"][0]["record"]


async def changes(app: FastAPI, record_id: str) -> list[tuple[str, int | None]]:
    async with transaction(app.state.engine) as session:
        rows = (
            await session.exec(
                select(Change).where(Change.resource_id == record_id).order_by(col(Change.id))
            )
        ).all()
    return [(row.operation, row.version) for row in rows]


async def test_a_correction_makes_a_new_version_and_keeps_the_old(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    _, app_headers, record = await uploaded(client, clinician)
    path = f"/v1/adherence/{record['id']}"
    read = await client.get(path, headers=app_headers)
    assert read.json() == record
    etag = read.headers["etag"]
    assert (
        await client.get(path, headers={**app_headers, "If-None-Match": etag})
    ).status_code == 304

    missing = await client.patch(path, headers=app_headers, json={"reps_done": 6})
    assert missing.status_code == 428
    weak = await client.patch(path, headers={**app_headers, "If-Match": f"W/{etag}"}, json={})
    assert weak.status_code == 412
    corrected = await client.patch(
        path,
        headers={**app_headers, "If-Match": etag},
        json={"status": "partial", "reps_done": 6, "performed_at": "2026-11-20T23:30:00-10:00"},
    )
    assert corrected.status_code == 200, corrected.text
    body = corrected.json()
    assert (body["status"], body["reps_done"], body["version"]) == ("partial", 6, 2)
    assert body["performed_at"] == "2026-11-20T23:30:00-10:00"
    assert corrected.headers["etag"] != etag
    stale = await client.patch(path, headers={**app_headers, "If-Match": etag}, json={"pain": 3})
    assert stale.status_code == 412

    versions = (await client.get(f"{path}/versions", headers=clinician.headers)).json()["items"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["record"] == record
    assert versions[0]["replaced_by"] is not None
    assert versions[1]["record"] == body
    assert await changes(app, record["id"]) == [("create", 1), ("update", 2)]


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"status": "skipped"}, "#/skip_reason"),
        # The session's sets and reps stay: a skip cannot have them.
        ({"status": "skipped", "skip_reason": "pain"}, "#/reps_done"),
        ({"pain": 11}, "#/pain"),
        ({"plan_id": str(uuid.uuid4())}, "#/plan_id"),
        ({"performed_at": "2999-01-01T00:00:00+00:00"}, "#/performed_at"),
        # The day before the plan starts (`PLAN_START`, 1 November) where the patient is.
        ({"performed_at": "2026-10-31T12:00:00-05:00"}, "#/performed_at"),
    ],
)
async def test_a_bad_correction_is_422_and_changes_nothing(
    client: AsyncClient, clinician: Actor, change: dict[str, Any], pointer: str
) -> None:
    _, app_headers, record = await uploaded(client, clinician)
    path = f"/v1/adherence/{record['id']}"
    etag = (await client.get(path, headers=app_headers)).headers["etag"]
    refused = await client.patch(path, headers={**app_headers, "If-Match": etag}, json=change)
    assert refused.status_code == 422
    assert pointer in [e["pointer"] for e in refused.json()["errors"]]
    assert (await client.get(path, headers=app_headers)).json() == record


def etag_of(record: dict[str, Any]) -> str:
    return f'"{record["id"]}-{record["version"]}"'


async def test_a_deleted_record_leaves_a_tombstone_and_every_list(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient, app_headers, record = await uploaded(client, clinician)
    path = f"/v1/adherence/{record['id']}"
    deleted = await client.delete(path, headers={**clinician.headers, "If-Match": etag_of(record)})
    assert deleted.status_code == 204
    assert (await client.get(path, headers=app_headers)).status_code == 404
    listed = await client.get(f"/v1/patients/{patient['id']}/adherence", headers=clinician.headers)
    assert listed.json()["items"] == []
    assert await changes(app, record["id"]) == [("create", 1), ("delete", 1)]


async def test_a_replay_of_a_deleted_record_is_rejected_and_it_stays_deleted(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient, app_headers, record = await uploaded(client, clinician)
    path = f"/v1/adherence/{record['id']}"
    deleted = await client.delete(path, headers={**clinician.headers, "If-Match": etag_of(record)})
    assert deleted.status_code == 204
    sent = {
        key: record[key]
        for key in ("id", "plan_id", "plan_version", "item_id", "performed_at", "status")
    } | {"sets_done": 3, "reps_done": 10}

    replay = await client.post("/v1/adherence/batch", headers=app_headers, json={"records": [sent]})
    assert replay.status_code == 200
    assert replay.json()["results"] == [
        {
            "index": 0,
            "id": record["id"],
            "result": "rejected",
            "record": None,
            "errors": [
                {
                    "location": "body",
                    "pointer": "#/records/0/id",
                    "detail": "This record was deleted.",
                }
            ],
        }
    ]
    assert (await client.get(path, headers=app_headers)).status_code == 404
    listed = await client.get(f"/v1/patients/{patient['id']}/adherence", headers=clinician.headers)
    assert listed.json()["items"] == []
    assert await changes(app, record["id"]) == [("create", 1), ("delete", 1)]


async def test_only_the_patient_and_their_clinic_reach_a_record(
    world: World, client: AsyncClient, clinician: Actor
) -> None:
    _, _, record = await uploaded(client, clinician)
    path = f"/v1/adherence/{record['id']}"
    for name in ("patient_b", "clinician2", "patient_c"):
        assert (await client.get(path, headers=world[name].headers)).status_code == 404
    assert (await client.get(path, headers=world["client_none"].headers)).status_code == 403
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=world["client_all"].headers)).status_code == 200


async def test_a_replay_shows_the_stored_record_and_the_audit_trail_says_so(
    world: World, client: AsyncClient, clinician: Actor
) -> None:
    patient, app_headers, record = await uploaded(client, clinician)
    sent = {
        key: record[key]
        for key in (
            "id",
            "plan_id",
            "plan_version",
            "item_id",
            "performed_at",
            "status",
            "sets_done",
            "reps_done",
        )
    }
    replay = await client.post("/v1/adherence/batch", headers=app_headers, json={"records": [sent]})
    assert replay.json()["results"][0]["result"] == "unchanged"
    events = await client.get(
        "/v1/audit-events",
        params={"patient_id": patient["id"]},
        headers=world["admin1"].headers,
    )
    actions = [(e["action"], e["resource_type"]) for e in events.json()["items"]]
    assert actions[0] == ("read", "adherence_record")
    assert ("create", "adherence_record") in actions
