"""The audit trail: reads and writes of patient data, listed for clinic admins only."""

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.auth import accounts
from app.auth.models import Role
from app.core.columns import utcnow
from app.core.db import transaction
from app.core.pagination import encode_cursor
from tests.conftest import PASSWORD, Actor, World, make_client
from tests.core.problems import assert_problem
from tests.core.query_plans import statements_run, unsorted_plans
from tests.patients.test_routes import create_patient, issue_code, pair, patient_body

CLIENT_IP = "127.0.0.1"  # what httpx.ASGITransport reports as the client's address
LISBON_SUMMER = timezone(timedelta(hours=2))


class Trail:
    """Calls the API as one actor, each request with its own X-Request-ID, and remembers them."""

    def __init__(self, client: AsyncClient, actor: Actor) -> None:
        self.client = client
        self.actor = actor
        self.request_ids: list[str] = []

    async def call(
        self, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Response:
        request_id = f"audit-test-{uuid.uuid4().hex}"
        self.request_ids.append(request_id)
        sent = {**self.actor.headers, **(headers or {}), "X-Request-ID": request_id}
        response = await self.client.request(method, url, headers=sent, **kwargs)
        assert response.headers["x-request-id"] == request_id
        return response


async def events(client: AsyncClient, admin: Actor, **params: Any) -> list[dict[str, Any]]:
    """Every audit event the admin sees for the filters, following the cursor to the end."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/audit-events", params=query, headers=admin.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def patient_with_history(client: AsyncClient, world: World) -> tuple[dict[str, Any], Trail]:
    """A new patient that clinician 1 created, read, listed, updated and issued a code for."""
    trail = Trail(client, world["clinician1"])
    created = await trail.call("POST", "/v1/patients", json=patient_body())
    assert created.status_code == 201, created.text
    patient: dict[str, Any] = created.json()
    path = f"/v1/patients/{patient['id']}"
    assert (await trail.call("GET", path)).status_code == 200
    listed = await trail.call("GET", "/v1/patients", params={"reference": patient["reference"]})
    assert listed.status_code == 200
    assert (await trail.call("PATCH", path, json={"cause": "stroke"})).status_code == 200
    assert (await trail.call("POST", f"{path}/access-codes")).status_code == 201
    return patient, trail


@pytest.fixture
async def admin2(app: FastAPI, client: AsyncClient, world: World) -> Actor:
    """An admin of clinic 2, signed in through the token endpoint."""
    email = f"admin2-{uuid.uuid4().hex[:8]}@clinic.test"
    async with transaction(app.state.engine) as session:
        person = await accounts.create_clinician(
            session, app.state.secrets, world.clinic2, email, PASSWORD, Role.admin
        )
    response = await client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return Actor("admin2", response.json()["access_token"], person.id, world.clinic2)


async def test_reads_and_writes_of_a_patient_are_listed_newest_first(
    client: AsyncClient, world: World
) -> None:
    patient, trail = await patient_with_history(client, world)
    created, read, listed, updated, code_issued = trail.request_ids
    found = await events(client, world["admin1"], patient_id=patient["id"])

    assert [(e["action"], e["resource_type"], e["request_id"]) for e in found] == [
        ("create", "access_code", code_issued),
        ("update", "patient", updated),
        ("list", "patient", listed),
        ("read", "patient", read),
        ("create", "patient", created),
    ]
    for event in found:
        assert event["actor_kind"] == "clinician"
        assert event["actor_id"] == str(world["clinician1"].id)
        assert event["patient_id"] == patient["id"]
        assert event["ip"] == CLIENT_IP
    assert [e["resource_id"] for e in found[1:]] == [patient["id"]] * 4
    assert found[0]["resource_id"] not in (None, patient["id"])
    ids = [e["id"] for e in found]
    assert ids == sorted(ids, reverse=True)
    times = [datetime.fromisoformat(e["occurred_at"]) for e in found]
    assert times == sorted(times, reverse=True)
    assert all(t.utcoffset() is not None for t in times)


async def test_a_list_is_recorded_for_each_patient_it_showed(
    client: AsyncClient, world: World
) -> None:
    since = utcnow()
    trail = Trail(client, world["clinician1"])
    listed = await trail.call("GET", "/v1/patients", params={"limit": 3})
    shown = {patient["id"] for patient in listed.json()["items"]}
    assert len(shown) == 3
    found = await events(
        client, world["admin1"], actor_id=world["clinician1"].id, **{"from": since.isoformat()}
    )
    recorded = [e for e in found if e["request_id"] == trail.request_ids[0]]
    assert {(e["action"], e["resource_type"]) for e in recorded} == {("list", "patient")}
    assert sorted(e["resource_id"] for e in recorded) == sorted(shown)
    assert all(e["patient_id"] == e["resource_id"] for e in recorded)


async def test_pairing_devices_and_deletion_are_recorded(client: AsyncClient, world: World) -> None:
    clinician = world["clinician1"]
    patient = await create_patient(client, clinician)
    path = f"/v1/patients/{patient['id']}"
    await pair(client, await issue_code(client, clinician, patient["id"]), "phone")
    (device,) = (await client.get(f"{path}/devices", headers=clinician.headers)).json()["items"]
    revoked = await client.delete(f"{path}/devices/{device['id']}", headers=clinician.headers)
    assert revoked.status_code == 204
    assert (await client.delete(path, headers=clinician.headers)).status_code == 204

    found = await events(client, world["admin1"], patient_id=patient["id"])
    assert [(e["action"], e["resource_type"], e["actor_kind"]) for e in found] == [
        ("delete", "patient", "clinician"),
        ("revoke", "device", "clinician"),
        ("list", "device", "clinician"),
        ("pair", "device", "patient"),
        ("create", "access_code", "clinician"),
        ("create", "patient", "clinician"),
    ]
    paired = found[3]
    assert paired["actor_id"] == patient["id"]
    assert paired["resource_id"] == device["id"] == found[1]["resource_id"]


async def test_pages_follow_the_cursor_without_gaps_or_repeats(
    client: AsyncClient, world: World
) -> None:
    patient, _trail = await patient_with_history(client, world)
    admin = world["admin1"]
    everything = await events(client, admin, patient_id=patient["id"])
    paged = await events(client, admin, patient_id=patient["id"], limit=1)
    assert paged == everything
    first = await client.get(
        "/v1/audit-events", params={"patient_id": patient["id"], "limit": 3}, headers=admin.headers
    )
    assert len(first.json()["items"]) == 3
    assert first.json()["next_cursor"] is not None


@pytest.mark.parametrize("filters", [{}, {"patient_id": "patient"}, {"actor_id": "actor"}])
async def test_each_list_is_read_off_an_index_in_its_order(
    app: FastAPI, client: AsyncClient, world: World, filters: dict[str, str]
) -> None:
    """Newest first, the clinic's list and a patient's or an actor's are walked in an
    index's order: a page neither sorts nor reads all of the clinic's events."""
    patient, trail = await patient_with_history(client, world)
    ids = {"patient": patient["id"], "actor": str(trail.actor.id)}
    params = {key: ids[value] for key, value in filters.items()}

    def list_query(statement: str) -> bool:
        return statement.startswith("SELECT") and "FROM audit_event" in statement

    with statements_run(app.state.engine, list_query) as pages:
        first = await client.get(
            "/v1/audit-events", params={**params, "limit": 1}, headers=world["admin1"].headers
        )
        cursor = first.json()["next_cursor"]
        await client.get(
            "/v1/audit-events",
            params={**params, "limit": 1, "cursor": cursor},
            headers=world["admin1"].headers,
        )
    assert len(pages) == 2
    for plan in await unsorted_plans(app.state.engine, pages):
        assert re.search(r"\bix_audit_event_clinic(_patient|_actor)?\b", plan), plan


async def test_filters_by_actor(client: AsyncClient, world: World) -> None:
    patient, _trail = await patient_with_history(client, world)
    admin = world["admin1"]
    read = await client.get(f"/v1/patients/{patient['id']}", headers=admin.headers)
    assert read.status_code == 200
    by_admin = await events(client, admin, patient_id=patient["id"], actor_id=admin.id)
    assert [(e["action"], e["actor_id"]) for e in by_admin] == [("read", str(admin.id))]
    by_clinician = await events(
        client, admin, patient_id=patient["id"], actor_id=world["clinician1"].id
    )
    assert len(by_clinician) == 5
    assert {e["actor_id"] for e in by_clinician} == {str(world["clinician1"].id)}


async def test_filters_by_time_range_given_with_any_offset(
    client: AsyncClient, world: World
) -> None:
    patient, _trail = await patient_with_history(client, world)
    admin = world["admin1"]
    newest, updated, listed, read, created = await events(client, admin, patient_id=patient["id"])
    # The bounds are given in another offset than the UTC the events are stored in.
    pivot = datetime.fromisoformat(read["occurred_at"]).astimezone(LISBON_SUMMER).isoformat()
    assert pivot.endswith("+02:00")
    since = await events(client, admin, patient_id=patient["id"], **{"from": pivot})
    until = await events(client, admin, patient_id=patient["id"], to=pivot)
    assert since == [newest, updated, listed, read]  # from is inclusive
    assert until == [created]  # to is exclusive
    between = await events(
        client,
        admin,
        patient_id=patient["id"],
        **{"from": pivot, "to": updated["occurred_at"]},
    )
    assert between == [listed, read]


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"from": "2026-01-01T10:00:00"}, "#/from"),
        ({"to": "2026-01-01T10:00:00"}, "#/to"),
        ({"from": "yesterday"}, "#/from"),
        ({"patient_id": "not-a-uuid"}, "#/patient_id"),
        ({"cursor": "nonsense"}, "#/cursor"),
        ({"limit": 101}, "#/limit"),
        ({"action": "read"}, "#/action"),
    ],
)
async def test_bad_filters_are_422(
    client: AsyncClient, world: World, params: dict[str, str | int], pointer: str
) -> None:
    response = await client.get("/v1/audit-events", params=params, headers=world["admin1"].headers)
    problem = assert_problem(response, 422, "validation")
    assert pointer in [error["pointer"] for error in problem["errors"]]


async def test_a_forged_cursor_is_422_not_500(app: FastAPI, world: World) -> None:
    async with make_client(app, raise_app_exceptions=False) as http:
        response = await http.get(
            "/v1/audit-events",
            params={"cursor": encode_cursor([True])},
            headers=world["admin1"].headers,
        )
    problem = assert_problem(response, 422, "validation")
    assert [error["pointer"] for error in problem["errors"]] == ["#/cursor"]


async def test_another_clinics_admin_never_sees_these_events(
    client: AsyncClient, world: World, admin2: Actor
) -> None:
    patient, _trail = await patient_with_history(client, world)
    assert await events(client, admin2, patient_id=patient["id"]) == []
    assert await events(client, admin2, actor_id=world["clinician1"].id) == []
    # ... while the events of its own clinic are there for it.
    own = await create_patient(client, world["clinician2"])
    (event,) = await events(client, admin2, patient_id=own["id"])
    assert (event["action"], event["actor_id"]) == ("create", str(world["clinician2"].id))
    assert await events(client, world["admin1"], patient_id=own["id"]) == []


@pytest.mark.parametrize(
    ("actor", "status"),
    [
        ("anonymous", 401),
        ("clinician1", 403),
        ("clinician2", 403),
        ("client_all", 403),
        ("patient_a", 403),
    ],
)
async def test_only_a_clinic_admin_may_read_the_trail(
    client: AsyncClient, world: World, actor: str, status: int
) -> None:
    response = await client.get("/v1/audit-events", headers=world[actor].headers)
    assert response.status_code == status, response.text


async def test_a_write_that_fails_leaves_no_event(client: AsyncClient, world: World) -> None:
    since = utcnow()
    trail = Trail(client, world["clinician1"])
    first = await trail.call("POST", "/v1/patients", json=patient_body())
    assert first.status_code == 201
    patient = first.json()
    other = await create_patient(client, world["clinician1"])
    failures = [
        await trail.call("POST", "/v1/patients", json=patient_body(reference=patient["reference"])),
        await trail.call(
            "PATCH", f"/v1/patients/{other['id']}", json={"reference": patient["reference"]}
        ),
        await trail.call(
            "PATCH",
            f"/v1/patients/{other['id']}",
            json={"cause": "stroke"},
            headers={"If-Match": '"stale"'},
        ),
    ]
    assert [response.status_code for response in failures] == [409, 409, 412]
    found = await events(
        client, world["admin1"], actor_id=world["clinician1"].id, **{"from": since.isoformat()}
    )
    recorded = {e["request_id"] for e in found}
    assert trail.request_ids[0] in recorded
    assert recorded.isdisjoint(trail.request_ids[1:])
    assert [e["action"] for e in await events(client, world["admin1"], patient_id=other["id"])] == [
        "create"
    ]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_the_trail_cannot_be_altered(client: AsyncClient, world: World, method: str) -> None:
    response = await client.request(method, "/v1/audit-events", headers=world["admin1"].headers)
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"from": "0001-01-01T00:00:00+01:00"}, "#/from"),
        ({"to": "9999-12-31T23:59:59-01:00"}, "#/to"),
        ({"from": "0"}, "#/from"),
        ({"to": "2026-11-23T10:00:00"}, "#/to"),
    ],
)
async def test_a_time_range_out_of_years_or_format_is_422(
    client: AsyncClient, world: World, params: dict[str, str], pointer: str
) -> None:
    response = await client.get("/v1/audit-events", params=params, headers=world["admin1"].headers)
    problem = assert_problem(response, 422, "validation")
    assert [(e["location"], e["pointer"]) for e in problem["errors"]] == [("query", pointer)]
