"""Clinic admins add clinicians, change their roles and deactivate them."""

import uuid

import httpx

from tests.conftest import World


async def sign_in(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post(
        "/v1/auth/token", data={"grant_type": "password", "username": email, "password": password}
    )


async def test_an_admin_adds_promotes_and_deactivates_a_clinician(
    world: World, client: httpx.AsyncClient
) -> None:
    admin = world["admin1"].headers
    email = f"physio-{uuid.uuid4().hex[:8]}@clinic.example.org"
    made = await client.post(
        "/v1/clinicians", headers=admin, json={"email": email, "password": "a long passphrase"}
    )
    assert made.status_code == 201, made.text
    person = made.json()
    assert (person["email"], person["role"], person["active"]) == (email, "clinician", True)
    assert "password" not in person
    assert person in (await client.get("/v1/clinicians", headers=admin)).json()["items"]

    token = (await sign_in(client, email, "a long passphrase")).json()["access_token"]
    theirs = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/audit-events", headers=theirs)).status_code == 403
    promoted = await client.patch(
        f"/v1/clinicians/{person['id']}", headers=admin, json={"role": "admin"}
    )
    assert promoted.json()["role"] == "admin"
    # The role is read at every request, not from the token: the same token now may.
    assert (await client.get("/v1/audit-events", headers=theirs)).status_code == 200

    off = await client.patch(
        f"/v1/clinicians/{person['id']}", headers=admin, json={"active": False}
    )
    assert off.json()["active"] is False
    assert (await client.get("/v1/patients", headers=theirs)).status_code == 401
    refused = await sign_in(client, email, "a long passphrase")
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")


async def test_admins_keep_their_own_access(world: World, client: httpx.AsyncClient) -> None:
    admin = world["admin1"]
    path = f"/v1/clinicians/{admin.id}"
    for change in ({"active": False}, {"role": "clinician"}):
        answer = await client.patch(path, headers=admin.headers, json=change)
        assert answer.status_code == 409


async def test_bad_or_duplicate_clinicians_are_refused(
    world: World, client: httpx.AsyncClient
) -> None:
    admin = world["admin1"].headers
    email = f"dup-{uuid.uuid4().hex[:8]}@clinic.example.org"
    body = {"email": email, "password": "a long passphrase"}
    assert (await client.post("/v1/clinicians", headers=admin, json=body)).status_code == 201
    assert (await client.post("/v1/clinicians", headers=admin, json=body)).status_code == 409
    for bad in (
        {"email": "not-an-email", "password": "a long passphrase"},
        {"email": "x@clinic.example.org", "password": "short"},
        {"email": "x@clinic.example.org", "password": "a long passphrase", "role": "owner"},
        {"email": "x@clinic.example.org", "password": "a long passphrase", "name": "X"},
    ):
        assert (await client.post("/v1/clinicians", headers=admin, json=bad)).status_code == 422


async def test_another_clinics_clinician_is_404(world: World, client: httpx.AsyncClient) -> None:
    other = world["clinician2"]
    answer = await client.patch(
        f"/v1/clinicians/{other.id}", headers=world["admin1"].headers, json={"active": False}
    )
    assert answer.status_code == 404
