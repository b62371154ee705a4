"""Exports: every live resource of a type as its own GET renders it, one per NDJSON line,
from one snapshot whose change-feed cursor comes first; then the feed from that cursor
carries on with no gap and no duplicate."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from starlette.types import Message

from app.core.db import libpq_url
from app.feed import export
from tests.conftest import Actor, World, build_world
from tests.core.problems import assert_problem
from tests.feed import clinic_exercise, follow, tail
from tests.plans import PLAN_START, changed_plan, item, new_patient, new_plan, paired_headers


@pytest.fixture
async def world_of_its_own(app: FastAPI) -> World:
    """A clinic of its own: what it exports is what the test made."""
    return await build_world(app)


@pytest.fixture
def admin(world_of_its_own: World) -> Actor:
    return world_of_its_own["admin1"]


async def exported(client: AsyncClient, actor: Actor, kind: str, **params: Any) -> Response:
    response = await client.get(f"/v1/export/{kind}.ndjson", params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return response


def lines(body: bytes) -> list[Any]:
    assert body == b"" or body.endswith(b"\n")
    return sorted((orjson.loads(line) for line in body.splitlines()), key=lambda r: r["id"])


async def got(client: AsyncClient, actor: Actor, path: str) -> Any:
    response = await client.get(path, headers=actor.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_each_type_exports_its_live_resources_as_their_own_get_renders_them(
    client: AsyncClient, admin: Actor, world_of_its_own: World
) -> None:
    world = world_of_its_own
    patient = await new_patient(client, admin)
    gone = await new_patient(client, admin)
    plan, etag = await new_plan(client, admin, patient["id"], start_date=PLAN_START)
    plan, _ = await changed_plan(client, admin, plan["id"], etag, status="active")
    await new_plan(client, admin, gone["id"])  # leaves with its patient
    app_headers = await paired_headers(client, admin, patient["id"])
    record_id = str(uuid.uuid4())
    upload = await client.post(
        "/v1/adherence/batch",
        headers=app_headers,
        json={
            "records": [
                {
                    "id": record_id,
                    "plan_id": plan["id"],
                    "plan_version": plan["version"],
                    "item_id": plan["items"][0]["id"],
                    "performed_at": "2026-11-20T09:15:00+01:00",
                    "status": "completed",
                }
            ]
        },
    )
    assert upload.status_code == 200, upload.text
    template = await client.post(
        "/v1/plan-templates",
        json={"name": "Export template", "items": [item()]},
        headers=admin.headers,
    )
    exercise = await client.post(
        "/v1/exercises",
        json=clinic_exercise("Export toe taps"),
        headers=admin.headers,
    )
    await client.patch("/v1/clinic", json={"pain_alert_at": 6}, headers=admin.headers)
    assert (
        await client.delete(f"/v1/patients/{gone['id']}", headers=admin.headers)
    ).status_code == 204
    cursor = await tail(client, admin)

    live = [patient["id"], str(world.patient_a), str(world.patient_b)]
    expected = {
        "patient": [await got(client, admin, f"/v1/patients/{pid}") for pid in live],
        "plan": [await got(client, admin, f"/v1/plans/{plan['id']}")],
        "adherence_record": [await got(client, admin, f"/v1/adherence/{record_id}")],
        "plan_template": [await got(client, admin, f"/v1/plan-templates/{template.json()['id']}")],
        "exercise": [await got(client, admin, f"/v1/exercises/{exercise.json()['id']}")],
        "clinic": [await got(client, admin, "/v1/clinic")],
    }
    for kind, resources in expected.items():
        response = await exported(client, admin, kind)
        assert lines(response.content) == sorted(resources, key=lambda r: r["id"]), kind
        assert response.headers["dorsi-change-cursor"] == cursor


async def test_since_exports_only_what_changed_from_then_on(
    client: AsyncClient, admin: Actor
) -> None:
    await new_patient(client, admin)
    later = await new_patient(client, admin)
    response = await exported(client, admin, "patient", since=later["updated_at"])
    assert [p["id"] for p in lines(response.content)] == [later["id"]]
    clinic = await exported(client, admin, "clinic", since="2100-01-01T00:00:00Z")
    assert len(lines(clinic.content)) == 1  # settings are always exported


async def test_who_may_export_and_what_a_bad_request_gets(
    client: AsyncClient, world: World
) -> None:
    path = "/v1/export/patient.ndjson"
    assert (await client.get(path, headers=world["client_none"].headers)).status_code == 200
    assert_problem(await client.get(path), 401, "unauthorized")
    for name in ("clinician1", "patient_a"):
        assert_problem(await client.get(path, headers=world[name].headers), 403, "forbidden")
    admin = world["admin1"]
    unknown = await client.get("/v1/export/nurse.ndjson", headers=admin.headers)
    assert_problem(unknown, 404, "not-found")
    for params in ({"since": "2026-11-23T10:00:00"}, {"since": "yesterday"}, {"limit": 3}):
        bad = await client.get(path, params=params, headers=admin.headers)
        assert_problem(bad, 422, "validation")


async def test_an_export_is_audited_per_patient_shown(client: AsyncClient, admin: Actor) -> None:
    patient = await new_patient(client, admin)
    await exported(client, admin, "patient")
    trail = await got(client, admin, f"/v1/audit-events?patient_id={patient['id']}")
    assert [(e["action"], e["resource_type"]) for e in trail["items"]].count(
        ("export", "patient")
    ) == 1


async def drive(
    app: FastAPI, actor: Actor, path: str, on_send: Callable[[Message], Awaitable[None]]
) -> list[Message]:
    """Runs one GET through the app as a server would, calling ``on_send`` with each
    message the app sends (before the app goes on); answers every message sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"dorsi.test"),
            (b"authorization", f"Bearer {actor.token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("dorsi.test", 80),
    }
    received = False
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal received
        assert not received, "a GET has one request message"
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        await on_send(message)

    await app(scope, receive, send)
    return sent


def body_of(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_export_then_follow_has_no_gap_and_no_duplicate_with_writes_during_the_export(
    app: FastAPI, client: AsyncClient, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH", 2)  # several batches, written between
    kept, renamed, deleted = [await new_patient(client, admin) for _ in range(3)]
    added: list[dict[str, Any]] = []

    async def write_mid_stream(message: Message) -> None:
        if message["type"] == "http.response.body" and not added:
            patch = await client.patch(
                f"/v1/patients/{renamed['id']}",
                json={"reference": "RENAMED"},
                headers=admin.headers,
            )
            assert patch.status_code == 200, patch.text
            gone = await client.delete(f"/v1/patients/{deleted['id']}", headers=admin.headers)
            assert gone.status_code == 204
            added.append(await new_patient(client, admin))

    sent = await drive(app, admin, "/v1/export/patient.ndjson", write_mid_stream)
    start = sent[0]
    assert start["status"] == 200
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert len([m for m in sent if m.get("body")]) >= 3  # streamed in batches
    cursor = dict(start["headers"])[b"dorsi-change-cursor"].decode()

    # The export is the state before the writes ...
    snapshot = {p["id"]: p for p in lines(body_of(sent))}
    assert snapshot[kept["id"]] == kept
    assert snapshot[renamed["id"]] == renamed
    assert deleted["id"] in snapshot
    assert added[0]["id"] not in snapshot
    # ... and the feed from its cursor holds exactly the writes made since.
    changes = await follow(client, admin, cursor)
    assert [(c["id"], c["operation"]) for c in changes] == [
        (renamed["id"], "update"),
        (deleted["id"], "delete"),
        (added[0]["id"], "create"),
    ]
    for change in changes:  # applied to the export, it gives the clinic's patients now
        if change["operation"] == "delete":
            del snapshot[change["id"]]
        else:
            snapshot[change["id"]] = change["data"]
    now = await got(client, admin, "/v1/patients?limit=100")
    assert sorted(snapshot.values(), key=lambda p: p["id"]) == sorted(
        now["items"], key=lambda p: p["id"]
    )


async def test_a_failure_mid_stream_ends_the_response_unfinished(
    app: FastAPI, client: AsyncClient, admin: Actor, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("Ends the export's database connection from outside: PostgreSQL.")
    monkeypatch.setattr(export, "BATCH", 1)
    terminated: list[int] = []

    async def end_the_exports_connection(message: Message) -> None:
        if message["type"] == "http.response.body" and not terminated:
            url = libpq_url(app.state.settings.database_url)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
                found = await db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND query ILIKE 'FETCH%'"
                )
                terminated.extend(row[0] for row in await found.fetchall())

    sent = await drive(app, admin, "/v1/export/patient.ndjson", end_the_exports_connection)
    assert terminated == [True]
    assert sent[0]["status"] == 200
    assert lines(body_of(sent))  # what came before the failure is whole lines
    assert all(m.get("more_body") for m in sent[1:])  # no final chunk: visibly incomplete
    # The pool goes on serving.
    assert (await client.get("/v1/patients", headers=admin.headers)).status_code == 200
