"""Patients within a clinic: create, list, read, update, delete; access codes and paired apps."""

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.auth.models import AccessCode
from app.auth.security import new_access_code
from app.core.columns import utcnow
from app.core.db import transaction
from app.core.pagination import encode_cursor
from tests.conftest import Actor, World, make_client
from tests.core.problems import assert_problem

ACCESS_CODE = re.compile(r"^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{8}$")


def patient_body(**fields: Any) -> dict[str, Any]:
    """A valid new patient with a reference no other test uses."""
    return {
        "reference": f"MRN-{uuid.uuid4().hex[:12]}",
        "affected_side": "right",
        "cause": "multiple_sclerosis",
        "time_zone": "America/Chicago",
        **fields,
    }


async def create_patient(client: AsyncClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/patients", json=patient_body(**fields), headers=actor.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def issue_code(client: AsyncClient, actor: Actor, patient_id: object) -> str:
    response = await client.post(f"/v1/patients/{patient_id}/access-codes", headers=actor.headers)
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


async def pair(client: AsyncClient, code: str, device_name: str | None = None) -> Response:
    return await client.post("/v1/auth/pair", json={"code": code, "device_name": device_name})


async def paired_token(
    client: AsyncClient, actor: Actor, patient_id: object, device_name: str | None = None
) -> str:
    """Pairs a new app for the patient and returns its access token."""
    response = await pair(client, await issue_code(client, actor, patient_id), device_name)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def status_with_token(client: AsyncClient, token: str) -> int:
    """The status of a request made with the token: 200 while it is good, 401 once it is not."""
    response = await client.get("/v1/exercises", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


def pointers(response: Response) -> list[str]:
    problem = assert_problem(response, 422, "validation")
    return [error["pointer"] for error in problem["errors"]]


# --- create ---------------------------------------------------------------------------


async def test_create_answers_201_with_location_etag_and_the_patient(
    client: AsyncClient, world: World
) -> None:
    body = patient_body()
    before = utcnow()
    response = await client.post("/v1/patients", json=body, headers=world["clinician1"].headers)
    assert response.status_code == 201, response.text
    patient = response.json()
    assert set(patient) == {
        "id",
        "reference",
        "affected_side",
        "cause",
        "time_zone",
        "version",
        "created_at",
        "updated_at",
    }
    assert {key: patient[key] for key in body} == body
    assert patient["version"] == 1
    assert datetime.fromisoformat(patient["created_at"]) >= before
    assert response.headers["location"] == f"/v1/patients/{patient['id']}"
    assert response.headers["etag"] == f'"{patient["id"]}-1"'
    fetched = await client.get(response.headers["location"], headers=world["clinician1"].headers)
    assert fetched.json() == patient
    assert fetched.headers["etag"] == response.headers["etag"]


async def test_reference_is_unique_within_a_clinic_only(client: AsyncClient, world: World) -> None:
    patient = await create_patient(client, world["clinician1"])
    again = await client.post(
        "/v1/patients",
        json=patient_body(reference=patient["reference"], cause="stroke"),
        headers=world["clinician1"].headers,
    )
    assert_problem(again, 409, "conflict")
    other_clinic = await create_patient(client, world["clinician2"], reference=patient["reference"])
    assert other_clinic["id"] != patient["id"]


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"time_zone": "Mars/Olympus"}, "#/time_zone"),
        ({"cause": "gout"}, "#/cause"),
        ({"affected_side": "middle"}, "#/affected_side"),
        ({"nickname": "Ana"}, "#/nickname"),
        ({"reference": ""}, "#/reference"),
        ({"reference": "x" * 65}, "#/reference"),
        ({"reference": "has spaces"}, "#/reference"),
    ],
)
async def test_invalid_fields_are_422_pointing_at_the_field(
    client: AsyncClient, world: World, fields: dict[str, str], pointer: str
) -> None:
    response = await client.post(
        "/v1/patients", json=patient_body(**fields), headers=world["clinician1"].headers
    )
    assert pointers(response) == [pointer]


async def test_every_missing_required_field_is_named(client: AsyncClient, world: World) -> None:
    response = await client.post("/v1/patients", json={}, headers=world["clinician1"].headers)
    assert sorted(pointers(response)) == [
        "#/affected_side",
        "#/cause",
        "#/reference",
        "#/time_zone",
    ]


@pytest.mark.parametrize(
    ("actor", "status"),
    [("anonymous", 401), ("patient_a", 403), ("client_none", 403), ("client_all", 200)],
)
async def test_only_clinic_staff_with_the_scope_list_patients(
    client: AsyncClient, world: World, actor: str, status: int
) -> None:
    response = await client.get("/v1/patients", headers=world[actor].headers)
    assert response.status_code == status, response.text


# --- list -----------------------------------------------------------------------------


async def test_pages_walk_the_clinic_once_in_creation_order(
    client: AsyncClient, world: World
) -> None:
    clinician = world["clinician1"]
    created = [(await create_patient(client, clinician))["id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/v1/patients", params=params, headers=clinician.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert [patient_id for patient_id in seen if patient_id in created] == created
    assert str(world.patient_a) in seen
    assert str(world.patient_c) not in seen


async def test_list_filters_by_exact_reference(client: AsyncClient, world: World) -> None:
    clinician = world["clinician1"]
    wanted = await create_patient(client, clinician)
    await create_patient(client, clinician, reference=wanted["reference"] + "-2")
    response = await client.get(
        "/v1/patients", params={"reference": wanted["reference"]}, headers=clinician.headers
    )
    assert response.json() == {"items": [wanted], "next_cursor": None}
    # Clinic 2 holds no patient of that reference: the filter stays inside the clinic.
    other = await client.get(
        "/v1/patients",
        params={"reference": wanted["reference"]},
        headers=world["clinician2"].headers,
    )
    assert other.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "pointer"),
    [({"limit": 0}, "#/limit"), ({"cursor": "nonsense"}, "#/cursor"), ({"sort": "id"}, "#/sort")],
)
async def test_bad_list_query_is_422(
    client: AsyncClient, world: World, params: dict[str, str | int], pointer: str
) -> None:
    response = await client.get("/v1/patients", params=params, headers=world["clinician1"].headers)
    assert pointer in pointers(response)


async def test_a_forged_cursor_is_422_not_500(app: FastAPI, world: World) -> None:
    cursor = encode_cursor(["2026-01-01T00:00:00", str(uuid.uuid4())])
    async with make_client(app, raise_app_exceptions=False) as http:
        response = await http.get(
            "/v1/patients", params={"cursor": cursor}, headers=world["clinician1"].headers
        )
    assert pointers(response) == ["#/cursor"]


# --- read and update ------------------------------------------------------------------


async def test_get_sends_an_etag_and_answers_304_while_it_is_current(
    client: AsyncClient, world: World
) -> None:
    headers = world["clinician1"].headers
    patient = await create_patient(client, world["clinician1"])
    path = f"/v1/patients/{patient['id']}"
    first = await client.get(path, headers=headers)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "private, no-cache"
    etag = first.headers["etag"]
    for sent in (etag, f"W/{etag}", f'"other", {etag}'):
        again = await client.get(path, headers={**headers, "If-None-Match": sent})
        assert again.status_code == 304, sent
        assert again.content == b""
        assert again.headers["etag"] == etag
    stale = await client.get(path, headers={**headers, "If-None-Match": '"stale"'})
    assert stale.status_code == 200
    assert stale.json() == patient


async def test_patch_changes_fields_and_version_under_if_match(
    client: AsyncClient, world: World
) -> None:
    headers = world["clinician1"].headers
    patient = await create_patient(client, world["clinician1"])
    path = f"/v1/patients/{patient['id']}"
    etag = (await client.get(path, headers=headers)).headers["etag"]
    response = await client.patch(
        path,
        json={"time_zone": "Pacific/Auckland", "affected_side": "both"},
        headers={**headers, "If-Match": etag},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["time_zone"] == "Pacific/Auckland"
    assert updated["affected_side"] == "both"
    assert updated["reference"] == patient["reference"]
    assert updated["version"] == 2
    assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(
        patient["updated_at"]
    )
    assert response.headers["etag"] != etag
    assert (await client.get(path, headers=headers)).json() == updated
    # The old ETag no longer names what the server holds.
    refetched = await client.get(path, headers={**headers, "If-None-Match": etag})
    assert refetched.status_code == 200

    stale = await client.patch(
        path, json={"cause": "stroke"}, headers={**headers, "If-Match": etag}
    )
    assert_problem(stale, 412, "precondition-failed")
    assert (await client.get(path, headers=headers)).json() == updated


async def test_patch_to_a_taken_reference_is_409_and_changes_nothing(
    client: AsyncClient, world: World
) -> None:
    headers = world["clinician1"].headers
    first = await create_patient(client, world["clinician1"])
    second = await create_patient(client, world["clinician1"])
    path = f"/v1/patients/{second['id']}"
    response = await client.patch(
        path, json={"reference": first["reference"], "cause": "stroke"}, headers=headers
    )
    assert_problem(response, 409, "conflict")
    assert (await client.get(path, headers=headers)).json() == second


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"nickname": "Ana"}, "#/nickname"),
        ({"time_zone": "Mars/Olympus"}, "#/time_zone"),
        ({"cause": "gout"}, "#/cause"),
    ],
)
async def test_patch_with_invalid_fields_is_422(
    client: AsyncClient, world: World, body: dict[str, str], pointer: str
) -> None:
    response = await client.patch(
        f"/v1/patients/{world.patient_b}", json=body, headers=world["clinician1"].headers
    )
    assert pointers(response) == [pointer]


# --- delete ---------------------------------------------------------------------------


async def test_delete_hides_the_patient_and_signs_their_apps_out(
    client: AsyncClient, world: World
) -> None:
    clinician = world["clinician1"]
    patient = await create_patient(client, clinician)
    path = f"/v1/patients/{patient['id']}"
    paired = await pair(client, await issue_code(client, clinician, patient["id"]))
    tokens = paired.json()
    assert await status_with_token(client, tokens["access_token"]) == 200

    response = await client.delete(path, headers=clinician.headers)
    assert response.status_code == 204
    assert response.content == b""

    assert_problem(await client.get(path, headers=clinician.headers), 404, "not-found")
    assert_problem(await client.delete(path, headers=clinician.headers), 404, "not-found")
    listed = await client.get(
        "/v1/patients", params={"reference": patient["reference"]}, headers=clinician.headers
    )
    assert listed.json()["items"] == []
    assert await status_with_token(client, tokens["access_token"]) == 401
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert_problem(refreshed, 401, "unauthorized")


async def test_a_code_issued_before_the_patient_was_deleted_no_longer_pairs(
    client: AsyncClient, world: World
) -> None:
    clinician = world["clinician1"]
    patient = await create_patient(client, clinician)
    code = await issue_code(client, clinician, patient["id"])
    await client.delete(f"/v1/patients/{patient['id']}", headers=clinician.headers)
    assert_problem(await pair(client, code), 401, "unauthorized")


# --- access codes ---------------------------------------------------------------------


async def test_access_code_is_short_expiring_and_pairs_once(
    app: FastAPI, client: AsyncClient, world: World
) -> None:
    clinician = world["clinician1"]
    patient = await create_patient(client, clinician)
    lifetime = timedelta(minutes=app.state.settings.access_code_minutes)
    before = utcnow()
    response = await client.post(
        f"/v1/patients/{patient['id']}/access-codes", headers=clinician.headers
    )
    after = utcnow()
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    issued = response.json()
    assert ACCESS_CODE.match(issued["code"]), issued["code"]
    assert before + lifetime <= datetime.fromisoformat(issued["expires_at"]) <= after + lifetime

    paired = await pair(client, issued["code"], "Ana's phone")
    assert paired.status_code == 200, paired.text
    tokens = paired.json()
    assert tokens["patient_id"] == patient["id"]
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert await status_with_token(client, tokens["access_token"]) == 200

    assert_problem(await pair(client, issued["code"], "Another phone"), 401, "unauthorized")


async def test_each_code_is_new(client: AsyncClient, world: World) -> None:
    codes = {await issue_code(client, world["clinician1"], world.patient_b) for _ in range(3)}
    assert len(codes) == 3


@pytest.mark.parametrize(
    "spelling",
    [
        str.lower,
        lambda code: f"{code[:4]}-{code[4:]}",
        lambda code: f" {code[:4]}-{code[4:]} ".lower(),
    ],
    ids=["lowercase", "hyphenated", "lowercase-hyphenated"],
)
async def test_the_code_may_be_typed_loosely(
    client: AsyncClient, world: World, spelling: Callable[[str], str]
) -> None:
    patient = await create_patient(client, world["clinician1"])
    code = await issue_code(client, world["clinician1"], patient["id"])
    response = await pair(client, spelling(code))
    assert response.status_code == 200, response.text
    assert response.json()["patient_id"] == patient["id"]


@pytest.mark.parametrize(
    ("expires_in", "status"), [(timedelta(seconds=-1), 401), (timedelta(minutes=5), 200)]
)
async def test_an_expired_code_does_not_pair(
    app: FastAPI, client: AsyncClient, world: World, expires_in: timedelta, status: int
) -> None:
    patient = await create_patient(client, world["clinician1"])
    code = new_access_code()
    async with transaction(app.state.engine) as session:
        session.add(
            AccessCode(
                clinic_id=world.clinic1,
                patient_id=uuid.UUID(patient["id"]),
                code_hash=app.state.secrets.digest(code),
                expires_at=utcnow() + expires_in,
            )
        )
    response = await pair(client, code)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("code", ["ZZZZZZZZ", "not a code at all"])
async def test_a_wrong_code_is_401(client: AsyncClient, code: str) -> None:
    assert_problem(await pair(client, code), 401, "unauthorized")


# --- devices --------------------------------------------------------------------------


async def test_revoking_one_device_signs_out_only_that_app(
    client: AsyncClient, world: World
) -> None:
    clinician = world["clinician1"]
    patient = await create_patient(client, clinician)
    devices_path = f"/v1/patients/{patient['id']}/devices"
    phone = await paired_token(client, clinician, patient["id"], "phone")
    tablet = await paired_token(client, clinician, patient["id"], "tablet")

    listed = await client.get(devices_path, headers=clinician.headers)
    assert listed.status_code == 200, listed.text
    devices = {device["device_name"]: device for device in listed.json()["items"]}
    assert set(devices) == {"phone", "tablet"}
    assert all(device["revoked_at"] is None for device in devices.values())

    revoked = await client.delete(
        f"{devices_path}/{devices['phone']['id']}", headers=clinician.headers
    )
    assert revoked.status_code == 204
    assert await status_with_token(client, phone) == 401
    assert await status_with_token(client, tablet) == 200
    after = {
        d["device_name"]: d
        for d in (await client.get(devices_path, headers=clinician.headers)).json()["items"]
    }
    assert after["phone"]["revoked_at"] is not None
    assert after["tablet"]["revoked_at"] is None


async def test_a_device_is_revoked_only_through_its_own_patient(
    client: AsyncClient, world: World
) -> None:
    clinician = world["clinician1"]
    patient = await create_patient(client, clinician)
    token = await paired_token(client, clinician, patient["id"], "phone")
    (device,) = (
        await client.get(f"/v1/patients/{patient['id']}/devices", headers=clinician.headers)
    ).json()["items"]
    for path in (
        f"/v1/patients/{world.patient_b}/devices/{device['id']}",
        f"/v1/patients/{patient['id']}/devices/{uuid.uuid4()}",
    ):
        assert_problem(await client.delete(path, headers=clinician.headers), 404, "not-found")
    assert await status_with_token(client, token) == 200


# --- other clinics --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("GET", "/v1/patients/{id}", None),
        ("PATCH", "/v1/patients/{id}", {"time_zone": "Europe/Paris"}),
        ("DELETE", "/v1/patients/{id}", None),
        ("POST", "/v1/patients/{id}/access-codes", None),
        ("GET", "/v1/patients/{id}/devices", None),
        ("DELETE", "/v1/patients/{id}/devices/" + str(uuid.UUID(int=1)), None),
    ],
)
async def test_another_clinics_patient_is_404_like_a_missing_one(
    client: AsyncClient,
    world: World,
    method: str,
    template: str,
    body: dict[str, str] | None,
) -> None:
    headers = world["clinician1"].headers
    answers = []
    for patient_id in (world.patient_c, uuid.uuid4()):
        response = await client.request(
            method, template.format(id=patient_id), json=body, headers=headers
        )
        problem = assert_problem(response, 404, "not-found")
        answers.append({key: problem[key] for key in ("type", "title", "status")})
    assert answers[0] == answers[1]
    untouched = await client.get(
        f"/v1/patients/{world.patient_c}", headers=world["clinician2"].headers
    )
    assert untouched.status_code == 200
    assert untouched.json()["time_zone"] == "Europe/Lisbon"


async def test_an_id_that_cannot_exist_is_404_not_422(client: AsyncClient, world: World) -> None:
    response = await client.get("/v1/patients/not-a-uuid", headers=world["clinician1"].headers)
    assert_problem(response, 404, "not-found")
