"""Admin and security actions are in the audit trail beside patient data: who did what, and
what it changed (before and after), listed by `GET /v1/audit-events` for their clinic only."""

import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.audit.test_routes import CLIENT_IP, Trail, events
from tests.conftest import Actor, World, build_world
from tests.patients.test_routes import create_patient, issue_code, pair

PASSPHRASE = "a long passphrase for the trail"


@pytest.fixture
async def own(app: FastAPI) -> World:
    """Clinics of their own: the test changes one's settings, and reads whole trails."""
    return await build_world(app)


@pytest.fixture
async def stranger(app: FastAPI) -> Actor:
    """The admin of another clinic."""
    return (await build_world(app))["admin1"]


def admin_actions(found: list[dict[str, Any]], *kinds: str) -> list[tuple[Any, ...]]:
    """(action, resource type, resource id, changes) of the events on these kinds."""
    return [
        (e["action"], e["resource_type"], e["resource_id"], e["changes"])
        for e in found
        if e["resource_type"] in kinds
    ]


def change(before: Any, after: Any) -> dict[str, Any]:
    return {"before": before, "after": after}


async def test_creating_rescoping_and_revoking_api_clients_is_in_the_trail(
    client: AsyncClient, own: World, stranger: Actor
) -> None:
    admin = own["admin1"]
    trail = Trail(client, admin)
    made = await trail.call(
        "POST", "/v1/api-clients", json={"name": "Rehab EHR", "scopes": ["changes:read"]}
    )
    assert made.status_code == 201, made.text
    api_client = made.json()
    path = f"/v1/api-clients/{api_client['id']}"
    rescoped = await trail.call(
        "PATCH", path, json={"name": "Rehab EHR 2", "scopes": ["adherence:read", "changes:read"]}
    )
    assert rescoped.status_code == 200, rescoped.text
    assert (await trail.call("DELETE", path)).status_code == 204

    found = await events(client, admin, actor_id=str(admin.id))
    assert admin_actions(found, "api_client") == [
        ("delete", "api_client", api_client["id"], None),
        (
            "update",
            "api_client",
            api_client["id"],
            {
                "name": change("Rehab EHR", "Rehab EHR 2"),
                "scopes": change(["changes:read"], ["adherence:read", "changes:read"]),
            },
        ),
        (
            "create",
            "api_client",
            api_client["id"],
            {"name": change(None, "Rehab EHR"), "scopes": change(None, ["changes:read"])},
        ),
    ]
    mine = [e for e in found if e["resource_type"] == "api_client"]
    assert {(e["actor_kind"], e["actor_id"], e["ip"]) for e in mine} == {
        ("clinician", str(admin.id), CLIENT_IP)
    }
    assert [e["request_id"] for e in mine] == trail.request_ids[::-1]
    # The secret is shown once, to the admin who made it: never to the trail.
    assert api_client["client_secret"] not in json.dumps(found)
    assert await events(client, stranger, actor_id=str(admin.id)) == []


async def test_adding_promoting_demoting_and_deactivating_clinicians_is_in_the_trail(
    client: AsyncClient, own: World, stranger: Actor
) -> None:
    admin = own["admin1"]
    email = f"physio-{uuid.uuid4().hex[:8]}@clinic.example.org"
    made = await client.post(
        "/v1/clinicians", headers=admin.headers, json={"email": email, "password": PASSPHRASE}
    )
    assert made.status_code == 201, made.text
    person = made.json()["id"]
    path = f"/v1/clinicians/{person}"
    for body in ({"role": "admin"}, {"role": "clinician"}, {"active": False}):
        answer = await client.patch(path, headers=admin.headers, json=body)
        assert answer.status_code == 200, answer.text

    found = await events(client, admin, actor_id=str(admin.id))
    assert admin_actions(found, "clinician") == [
        ("update", "clinician", person, {"active": change(True, False)}),
        ("update", "clinician", person, {"role": change("admin", "clinician")}),
        ("update", "clinician", person, {"role": change("clinician", "admin")}),
        (
            "create",
            "clinician",
            person,
            {
                "email": change(None, email),
                "role": change(None, "clinician"),
                "active": change(None, True),
            },
        ),
    ]
    assert PASSPHRASE not in json.dumps(found)
    assert await events(client, stranger, actor_id=str(admin.id)) == []


async def test_changing_the_clinics_settings_keeps_what_each_was_before(
    client: AsyncClient, own: World, stranger: Actor
) -> None:
    admin = own["admin1"]
    before = (await client.get("/v1/clinic", headers=admin.headers)).json()
    wanted = {"adherence_threshold_percent": before["adherence_threshold_percent"] + 5}
    body = {**wanted, "pain_alert_at": before["pain_alert_at"]}  # one setting stays
    changed = await client.patch("/v1/clinic", headers=admin.headers, json=body)
    assert changed.status_code == 200, changed.text

    found = await events(client, admin, actor_id=str(admin.id))
    assert admin_actions(found, "clinic") == [
        (
            "update",
            "clinic",
            str(own.clinic1),
            {
                "adherence_threshold_percent": change(
                    before["adherence_threshold_percent"], wanted["adherence_threshold_percent"]
                )
            },
        )
    ]
    assert await events(client, stranger, actor_id=str(admin.id)) == []


async def test_access_codes_and_every_way_of_signing_out_are_in_the_trail(
    client: AsyncClient, own: World, stranger: Actor
) -> None:
    clinician, admin = own["clinician1"], own["admin1"]
    patient = await create_patient(client, clinician)
    devices = f"/v1/patients/{patient['id']}/devices"
    # A clinician signs one device out; the patient's app signs itself out of another.
    await pair(client, await issue_code(client, clinician, patient["id"]), "old phone")
    (old,) = (await client.get(devices, headers=clinician.headers)).json()["items"]
    revoked = await client.delete(f"{devices}/{old['id']}", headers=clinician.headers)
    assert revoked.status_code == 204
    paired = await pair(client, await issue_code(client, clinician, patient["id"]), "new phone")
    app_tokens = paired.json()
    listed = (await client.get(devices, headers=clinician.headers)).json()["items"]
    (new,) = [device for device in listed if device["id"] != old["id"]]
    ended = await client.post("/v1/auth/revoke", data={"token": app_tokens["refresh_token"]})
    assert ended.status_code == 200, ended.text
    # A clinic system and a clinician sign themselves out; the second time changes nothing.
    for actor in (own["client_all"], clinician):
        for _ in range(2):
            ended = await client.post("/v1/auth/revoke", data={"token": actor.token})
            assert ended.status_code == 200, ended.text

    found = await events(client, admin)
    signed_out = [
        (e["actor_kind"], e["actor_id"], e["resource_type"], e["resource_id"], e["patient_id"])
        for e in found
        if e["action"] == "revoke"
    ]
    assert signed_out[:2] == [
        ("clinician", str(clinician.id), "session", signed_out[0][3], None),
        ("api_client", str(own["client_all"].id), "session", signed_out[1][3], None),
    ]
    assert signed_out[2:] == [
        ("patient", patient["id"], "device", new["id"], patient["id"]),
        ("clinician", str(clinician.id), "device", old["id"], patient["id"]),
    ]
    assert all(e["ip"] == CLIENT_IP for e in found if e["action"] == "revoke")
    codes = [e for e in found if e["resource_type"] == "access_code"]
    assert [(e["action"], e["actor_id"], e["patient_id"]) for e in codes] == [
        ("create", str(clinician.id), patient["id"])
    ] * 2
    theirs = json.dumps(await events(client, stranger))
    assert patient["id"] not in theirs
    assert str(clinician.id) not in theirs
