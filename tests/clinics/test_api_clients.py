"""Clinic admins manage their clinic systems' credentials."""

import httpx
from fastapi import FastAPI

from app.auth import accounts, service
from app.auth.models import Role
from app.core.db import transaction
from tests.conftest import PASSWORD, World


async def token(http: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await http.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


async def test_an_admin_creates_reads_changes_and_revokes_a_client(
    world: World, client: httpx.AsyncClient
) -> None:
    admin = world["admin1"].headers
    made = await client.post(
        "/v1/api-clients", headers=admin, json={"name": "EHR", "scopes": ["patients:read"]}
    )
    assert made.status_code == 201
    created = made.json()
    assert made.headers["location"] == f"/v1/api-clients/{created['id']}"
    secret = created.pop("client_secret")
    assert len(secret) >= 32
    listed = (await client.get("/v1/api-clients", headers=admin)).json()["items"]
    assert created in listed
    assert all("client_secret" not in item for item in listed)
    one = await client.get(f"/v1/api-clients/{created['id']}", headers=admin)
    assert one.json() == created

    first = await token(client, created["id"], secret)
    assert first.json()["scope"] == "patients:read"
    old = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await client.get("/v1/patients", headers=old)).status_code == 200

    changed = await client.patch(
        f"/v1/api-clients/{created['id']}",
        headers=admin,
        json={"name": "Rehab EHR", "scopes": ["adherence:read"]},
    )
    assert changed.json()["name"] == "Rehab EHR"
    assert changed.json()["scopes"] == ["adherence:read"]
    # A scope change signs the old tokens out; new ones carry the new scopes.
    assert (await client.get("/v1/patients", headers=old)).status_code == 401
    second = await token(client, created["id"], secret)
    assert second.json()["scope"] == "adherence:read"
    new = {"Authorization": f"Bearer {second.json()['access_token']}"}
    assert (await client.get("/v1/patients", headers=new)).status_code == 403

    assert (
        await client.delete(f"/v1/api-clients/{created['id']}", headers=admin)
    ).status_code == 204
    assert (await client.get("/v1/patients", headers=new)).status_code == 401
    refused = await token(client, created["id"], secret)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_client")
    gone = await client.get(f"/v1/api-clients/{created['id']}", headers=admin)
    assert gone.status_code == 404


async def test_another_clinics_admin_sees_nothing(
    app: FastAPI, world: World, client: httpx.AsyncClient
) -> None:
    made = await client.post(
        "/v1/api-clients",
        headers=world["admin1"].headers,
        json={"name": "EHR", "scopes": ["changes:read"]},
    )
    async with transaction(app.state.engine) as session:
        await accounts.create_clinician(
            session, app.state.secrets, world.clinic2, "admin2@clinic.test", PASSWORD, Role.admin
        )
        other = await service.password_grant(
            session, app.state.secrets, "admin2@clinic.test", PASSWORD, None
        )
    headers = {"Authorization": f"Bearer {other.access_token}"}
    path = f"/v1/api-clients/{made.json()['id']}"
    assert made.json()["id"] not in {
        c["id"] for c in (await client.get("/v1/api-clients", headers=headers)).json()["items"]
    }
    assert (await client.get(path, headers=headers)).status_code == 404
    assert (await client.patch(path, headers=headers, json={"name": "X"})).status_code == 404
    assert (await client.delete(path, headers=headers)).status_code == 404


async def test_bad_client_input_is_422(world: World, client: httpx.AsyncClient) -> None:
    admin = world["admin1"].headers
    for body in (
        {"name": "", "scopes": ["patients:read"]},
        {"name": "X", "scopes": []},
        {"name": "X", "scopes": ["everything"]},
        {"name": "X", "scopes": ["patients:read"], "secret": "mine"},
    ):
        assert (await client.post("/v1/api-clients", headers=admin, json=body)).status_code == 422
