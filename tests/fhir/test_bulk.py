"""FHIR Bulk Data `$export`, end to end: kick-off, polling, the manifest and its files,
cancelling, and the hand-over from one export's `transactionTime` to the next one's
`_since`, with no gap and no duplicate."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import select

from app.auth.models import ActorKind, Role
from app.auth.principal import CLINICIAN_SCOPES, Caller, Principal
from app.core.columns import utcnow
from app.core.config import Settings
from app.core.db import transaction
from app.fhir import bulk
from app.fhir.models import FhirExportFile, FhirExportJob
from app.main import create_app, dispose_engines
from app.patients import service as patients
from app.patients.schemas import PatientCreate, PatientUpdate
from tests.conftest import Actor, World, build_world, make_client, settings_for
from tests.fhir import FHIR, assert_outcome, valid
from tests.plans import active_plan, item, new_patient, paired_headers

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def clinic(app: FastAPI) -> World:
    return await build_world(app)


@pytest.fixture
async def queued_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app as it runs beside a worker: exports wait in the queue for `run_next`."""
    application = create_app(settings_for(settings.database_url, fhir_export_in_process=False))
    yield application
    await dispose_engines(application)


async def kick_off(client: AsyncClient, actor: Actor, path: str = "$export", **params: Any) -> str:
    response = await client.get(f"{FHIR}/{path}", params=params, headers={**actor.headers, **ASYNC})
    assert response.status_code == 202, response.text
    location: str = response.headers["content-location"]
    assert location.startswith(f"http://dorsi.test{FHIR}/$export-status/")
    return location


async def manifest(client: AsyncClient, actor: Actor, location: str) -> dict[str, Any]:
    response = await client.get(location, headers=actor.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    assert found["requiresAccessToken"] is True
    assert found["error"] == []
    return found


async def exported(
    client: AsyncClient, actor: Actor, found: dict[str, Any]
) -> dict[str, list[Any]]:
    """Each type's resources, from the manifest's files; every line is valid R4B."""
    by_type: dict[str, list[Any]] = {}
    for output in found["output"]:
        response = await client.get(output["url"], headers=actor.headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/fhir+ndjson"
        lines = [valid(orjson.loads(line)) for line in response.content.splitlines()]
        assert len(lines) == output["count"]
        assert all(line["resourceType"] == output["type"] for line in lines)
        by_type.setdefault(output["type"], []).extend(lines)
    return by_type


def ids(by_type: dict[str, list[Any]], kind: str) -> set[str]:
    return {resource["id"] for resource in by_type.get(kind, [])}


async def test_an_export_then_exports_since_its_transaction_time_miss_and_repeat_nothing(
    client: AsyncClient, clinic: World
) -> None:
    system = clinic["client_all"]
    admin = clinic["admin1"]
    first = await new_patient(client, admin)
    await active_plan(client, admin, first["id"], items=[item()])
    gone = await new_patient(client, admin)
    everything = await manifest(client, system, await kick_off(client, system))
    found = await exported(client, system, everything)
    assert ids(found, "Patient") == {
        str(clinic.patient_a),
        str(clinic.patient_b),
        first["id"],
        gone["id"],
    }
    assert everything["deleted"] == []
    assert len(found["CarePlan"]) == 1
    assert len(found["ActivityDefinition"]) >= 7
    # Changes after the export: one patient changed, one new.
    changed = await client.patch(
        f"/v1/patients/{first['id']}",
        json={"time_zone": "Europe/Lisbon"},
        headers={**admin.headers, "If-Match": f'"{first["id"]}-1"'},
    )
    assert changed.status_code == 200, changed.text
    second = await new_patient(client, admin)
    deleted = await client.delete(
        f"/v1/patients/{gone['id']}", headers={**admin.headers, "If-Match": f'"{gone["id"]}-1"'}
    )
    assert deleted.status_code == 204, deleted.text
    since = everything["transactionTime"]
    after = await manifest(
        client, system, await kick_off(client, system, _since=since, _type="Patient,CarePlan")
    )
    found_after = await exported(client, system, after)
    assert ids(found_after, "Patient") == {first["id"], second["id"]}
    assert "CarePlan" not in found_after
    # The deleted patient, as a transaction Bundle that deletes it.
    tombstones = await exported(client, system, {"output": after["deleted"]})
    assert [b["entry"][0]["request"] for b in tombstones["Bundle"]] == [
        {"method": "DELETE", "url": f"Patient/{gone['id']}"}
    ]
    # And from that export on: nothing.
    last = await manifest(
        client, system, await kick_off(client, system, _since=after["transactionTime"])
    )
    assert last["output"] == []
    assert last["deleted"] == []


async def test_a_queued_export_is_polled_run_by_the_worker_function_and_cancelled(
    queued_app: FastAPI,
) -> None:
    world = await build_world(queued_app)
    system = world["client_all"]
    async with make_client(queued_app) as client:
        location = await kick_off(client, system, "Patient/$export", _type="Patient")
        waiting = await client.get(location, headers=system.headers)
        assert waiting.status_code == 202
        assert waiting.headers["x-progress"] == "queued"
        # Another caller, even of the same clinic, has no such export.
        other = await client.get(location, headers=world["admin1"].headers)
        assert_outcome(other, 404, "not-found")
        assert await bulk.run_next(queued_app.state.engine) is True
        done = await exported(client, system, await manifest(client, system, location))
        assert ids(done, "Patient") == {str(world.patient_a), str(world.patient_b)}
        # Cancelling deletes the export and its files.
        files = [o["url"] for o in (await manifest(client, system, location))["output"]]
        cancelled = await client.delete(location, headers=system.headers)
        assert cancelled.status_code == 202
        assert_outcome(await client.get(location, headers=system.headers), 404)
        assert_outcome(await client.get(files[0], headers=system.headers), 404)
        # An export whose runner went away mid-run (its process ended) runs again.
        location = await kick_off(client, system, _type="Patient")
        job_id = uuid.UUID(location.rsplit("/", 1)[1])
        async with transaction(queued_app.state.engine) as session:
            job = await session.get(FhirExportJob, job_id)
            assert job is not None
            job.status, job.updated_at = "running", utcnow() - timedelta(hours=1)
            session.add(job)
        assert (await client.get(location, headers=system.headers)).status_code == 202
        assert await bulk.run_next(queued_app.state.engine) is True
        again = await exported(client, system, await manifest(client, system, location))
        assert ids(again, "Patient") == {str(world.patient_a), str(world.patient_b)}
        # A queued export cancelled before a worker reaches it never runs.
        location = await kick_off(client, system)
        assert (await client.delete(location, headers=system.headers)).status_code == 202
        assert await bulk.run_next(queued_app.state.engine) is False
        assert_outcome(await client.get(location, headers=system.headers), 404)


@pytest.mark.parametrize(
    ("path", "params", "headers"),
    [
        ("$export", {}, {}),  # no Prefer: respond-async
        ("$export", {"_typeFilter": "Patient?active=true"}, ASYNC),
        ("$export", {"_type": "Encounter"}, ASYNC),
        ("Patient/$export", {"_type": "ActivityDefinition"}, ASYNC),
        ("$export", {"_since": "yesterday"}, ASYNC),
        ("$export", {"_outputFormat": "application/fhir+xml"}, ASYNC),
    ],
)
async def test_a_kick_off_it_cannot_serve_answers_400(
    client: AsyncClient,
    world: World,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
) -> None:
    response: Response = await client.get(
        f"{FHIR}/{path}", params=params, headers={**world["admin1"].headers, **headers}
    )
    assert_outcome(response, 400, "invalid")


async def test_what_commits_while_an_export_reads_comes_in_the_next_export_since(
    app: FastAPI, client: AsyncClient, clinic: World, backend: str
) -> None:
    """A writer that took the clinic's change lock before the export's snapshot and
    commits after it: the export holds none of its work, the next one (`_since` its
    `transactionTime`) all of it."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: the export could not write its files")
    system = clinic["client_all"]
    admin = clinic["admin1"]
    assert admin.id is not None
    known = await new_patient(client, admin)
    caller = Caller(
        Principal(
            kind=ActorKind.clinician,
            id=admin.id,
            clinic_id=clinic.clinic1,
            session_id=uuid.uuid4(),
            scopes=CLINICIAN_SCOPES,
            role=Role.admin,
        ),
        ip=None,
        request_id=None,
    )
    async with transaction(app.state.engine) as session:
        await patients.update(
            session, caller, uuid.UUID(known["id"]), PatientUpdate(time_zone="Asia/Tokyo"), None
        )
        new = await patients.create(
            session,
            caller,
            PatientCreate(
                reference=f"SLOW-{uuid.uuid4().hex[:8]}",
                affected_side="left",
                cause="stroke",
                time_zone="UTC",
            ),
        )
        await session.flush()
        during = await manifest(client, system, await kick_off(client, system, _type="Patient"))
    by_type = await exported(client, system, during)
    assert str(new.id) not in ids(by_type, "Patient")
    old = next(p for p in by_type["Patient"] if p["id"] == known["id"])
    assert old["meta"]["versionId"] == "1"
    since = during["transactionTime"]
    after = await exported(
        client,
        system,
        await manifest(client, system, await kick_off(client, system, _since=since)),
    )
    assert ids(after, "Patient") == {known["id"], str(new.id)}
    assert {p["meta"]["versionId"] for p in after["Patient"]} == {"1", "2"}


async def test_files_are_written_and_read_a_chunk_at_a_time_and_split_at_file_lines(
    client: AsyncClient, clinic: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of two resources (a chunk each), files of at most three: a batch may
    # straddle two files, and every resource still lands in exactly one.
    monkeypatch.setattr(bulk, "BATCH", 2)
    monkeypatch.setattr(bulk, "FILE_LINES", 3)
    system = clinic["client_all"]
    added = [(await new_patient(client, clinic["admin1"]))["id"] for _ in range(6)]
    found = await manifest(client, system, await kick_off(client, system, _type="Patient"))
    counts = [output["count"] for output in found["output"]]
    assert counts == [3, 3, 2]
    exported_ids = [r["id"] for r in (await exported(client, system, found))["Patient"]]
    assert sorted(exported_ids) == sorted([str(clinic.patient_a), str(clinic.patient_b), *added])


async def test_exported_procedures_and_observations_are_their_reads_across_chunks_and_files(
    client: AsyncClient, clinic: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of two records, files of three, and what plan versions say forgotten after
    # every batch: each resource is rendered into its line as the writer takes it, and is
    # what reading it answers, whichever chunk it lands in.
    monkeypatch.setattr(bulk, "BATCH", 2)
    monkeypatch.setattr(bulk, "FILE_LINES", 3)
    monkeypatch.setattr(bulk, "VERSIONS_KEPT", 0)
    admin = clinic["admin1"]
    system = clinic["client_all"]
    patient = await new_patient(client, admin)
    plan, _ = await active_plan(client, admin, patient["id"], items=[item(), item()])
    headers = await paired_headers(client, admin, patient["id"])
    now = utcnow().replace(microsecond=0)
    records = [
        {
            "id": str(uuid.uuid4()),
            "plan_id": plan["id"],
            "plan_version": plan["version"],
            "item_id": plan["items"][day % 2]["id"],
            "performed_at": (now - timedelta(days=day, hours=1)).isoformat(),
            **(
                {"status": "skipped", "skip_reason": "pain"}
                if day == 3
                else {"status": "completed", "pain": day}
            ),
        }
        for day in range(7)
    ]
    upload = await client.post("/v1/adherence/batch", json={"records": records}, headers=headers)
    assert upload.status_code == 200, upload.text
    found = await manifest(
        client, system, await kick_off(client, system, _type="Procedure,Observation")
    )
    assert [(o["type"], o["count"]) for o in found["output"]] == [
        ("Procedure", 3),
        ("Procedure", 3),
        ("Procedure", 1),
        ("Observation", 3),
        ("Observation", 3),
    ]
    by_type = await exported(client, system, found)
    for kind, expected in (("Procedure", 7), ("Observation", 6)):
        assert len(by_type[kind]) == expected
        for resource in by_type[kind]:
            read = await client.get(f"{FHIR}/{kind}/{resource['id']}", headers=system.headers)
            assert read.status_code == 200, read.text
            assert read.json() == resource
    assert ids(by_type, "Procedure") == {r["id"] for r in records}


async def test_a_runner_whose_export_was_cancelled_stops_at_its_next_write(
    queued_app: FastAPI,
) -> None:
    """The export is cancelled (deleted) once its runner has claimed it: the runner's next
    write finds it gone, and it stops without a failure and without leaving a file."""
    world = await build_world(queued_app)
    system = world["client_all"]
    engine = queued_app.state.engine
    async with make_client(queued_app) as client:
        location = await kick_off(client, system, _type="Patient")
        job_id = uuid.UUID(location.rsplit("/", 1)[1])
        async with transaction(engine) as session:
            job = await session.get(FhirExportJob, job_id)
            assert job is not None
            job.status = "running"  # claimed, as `run_job` claims it
            session.add(job)
        cancelled = await client.delete(location, headers=system.headers)
        assert cancelled.status_code == 202
        await bulk._run(engine, job)
        assert_outcome(await client.get(location, headers=system.headers), 404)
    async with transaction(engine) as session:
        left = await session.exec(select(FhirExportFile).where(FhirExportFile.job_id == job_id))
        assert left.all() == []
