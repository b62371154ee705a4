"""Uploading adherence records in batches: a replay never duplicates, each record is
answered on its own, and the clinic reads them back."""

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col, func, select

from app.adherence.models import AdherenceRecord
from app.audit.models import AuditEvent
from app.core.db import transaction
from app.sync.models import Change
from tests.conftest import Actor, World
from tests.core.problems import assert_problem
from tests.plans import EVERY_DAY, active_plan, changed_plan, item, new_patient, paired_headers

BATCH = "/v1/adherence/batch"
PERFORMED_AT = "2026-11-20T09:15:00+01:00"
OPTIONAL = (
    "sets_done",
    "reps_done",
    "hold_seconds",
    "pain",
    "effort",
    "skip_reason",
    "note",
    "assistive_device",
)


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


@dataclass(frozen=True)
class Patient:
    """A new patient of clinic 1, paired, with an active plan whose two items are both due
    every day (the first on every weekday, the second flexible)."""

    id: str
    time_zone: str
    plan: dict[str, Any]
    app: dict[str, str]

    def item(self, index: int) -> str:
        item_id: str = self.plan["items"][index]["id"]
        return item_id


async def patient_with_plan(client: AsyncClient, clinician: Actor, **fields: Any) -> Patient:
    patient = await new_patient(client, clinician, **fields)
    plan, _ = await active_plan(
        client,
        clinician,
        patient["id"],
        items=[
            item(schedule={"days_of_week": EVERY_DAY}),
            item("hip-rotation", schedule={"sessions_per_week": 3}),
        ],
    )
    app = await paired_headers(client, clinician, patient["id"])
    return Patient(patient["id"], patient["time_zone"], plan, app)


# What a skipped session leaves out: it has no sets, reps, hold or effort.
NOTHING_DONE = dict.fromkeys(("sets_done", "reps_done", "hold_seconds", "effort"))


def record(plan: dict[str, Any], index: int = 0, **fields: Any) -> dict[str, Any]:
    """A completed session of the plan's item at ``index``, with a new id."""
    return {
        "id": str(uuid.uuid4()),
        "plan_id": plan["id"],
        "plan_version": plan["version"],
        "item_id": plan["items"][index]["id"],
        "performed_at": PERFORMED_AT,
        "status": "completed",
        "sets_done": 3,
        "reps_done": 10,
        **fields,
    }


async def upload(
    client: AsyncClient, headers: dict[str, str], *records: dict[str, Any]
) -> list[dict[str, Any]]:
    """POSTs the batch, expecting 200 and one result per record, in order."""
    response = await client.post(BATCH, headers=headers, json={"records": list(records)})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(records)))
    return results


def local_date(performed_at: str, time_zone: str) -> str:
    return datetime.fromisoformat(performed_at).astimezone(ZoneInfo(time_zone)).date().isoformat()


def as_stored(
    sent: dict[str, Any], patient: Patient, source: str = "patient_app"
) -> dict[str, Any]:
    """The record the server should keep for ``sent``, without its timestamps."""
    return {
        **dict.fromkeys(OPTIONAL),
        **sent,
        "patient_id": patient.id,
        "performed_on": local_date(sent["performed_at"], patient.time_zone),
        "source": source,
        "version": 1,
    }


def content(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if k not in ("created_at", "updated_at")}


async def rows(app: FastAPI, ids: Iterable[str]) -> int:
    """How many adherence records with these ids the database holds."""
    wanted = [uuid.UUID(i) for i in ids]
    async with transaction(app.state.engine) as session:
        statement = select(func.count()).where(col(AdherenceRecord.id).in_(wanted))
        return (await session.exec(statement)).one()


async def outbox(app: FastAPI, ids: Iterable[str]) -> list[tuple[str, str, int | None]]:
    async with transaction(app.state.engine) as session:
        changes = (
            await session.exec(
                select(Change)
                .where(Change.resource_type == "adherence_record", col(Change.resource_id).in_(ids))
                .order_by(col(Change.id))
            )
        ).all()
    return [(c.resource_id, c.operation, c.version) for c in changes]


async def audit_trail(app: FastAPI, patient_id: str) -> list[tuple[str, str, str | None]]:
    """(action, actor kind, actor id) of the patient's adherence audit events, in order."""
    async with transaction(app.state.engine) as session:
        events = (
            await session.exec(
                select(AuditEvent)
                .where(
                    AuditEvent.patient_id == uuid.UUID(patient_id),
                    AuditEvent.resource_type == "adherence_record",
                )
                .order_by(col(AuditEvent.id))
            )
        ).all()
    return [(e.action, e.actor_kind, str(e.actor_id) if e.actor_id else None) for e in events]


def pointers(result: dict[str, Any]) -> list[str]:
    return sorted(e["pointer"] for e in result["errors"] or [])


# --- replays --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"reps_done": 6}, id="reps"),
        pytest.param(
            {
                "status": "skipped",
                "skip_reason": "no_time",
                **NOTHING_DONE,
            },
            id="status",
        ),
        pytest.param({"note": "Felt easy."}, id="note added"),
        pytest.param(
            {"performed_at": "2026-11-20T08:15:00+00:00"}, id="same instant, other offset"
        ),
    ],
)
async def test_a_replay_is_unchanged_and_an_altered_one_conflicts(
    app: FastAPI, client: AsyncClient, clinician: Actor, change: dict[str, Any]
) -> None:
    patient = await patient_with_plan(client, clinician)
    sent = record(patient.plan)
    [created] = await upload(client, patient.app, sent)
    assert created["result"] == "created"
    assert created["id"] == sent["id"]
    assert created["errors"] is None
    stored = created["record"]
    assert content(stored) == as_stored(sent, patient)
    assert stored["performed_at"] == PERFORMED_AT
    assert await rows(app, [sent["id"]]) == 1

    # The same record again, even with its empty fields spelled out and its id in capitals.
    replay = {**dict.fromkeys(OPTIONAL), **sent, "id": sent["id"].upper()}
    [unchanged] = await upload(client, patient.app, replay)
    assert unchanged == {**created, "result": "unchanged"}
    assert await rows(app, [sent["id"]]) == 1

    [conflict] = await upload(client, patient.app, {**sent, **change})
    assert conflict == {**created, "result": "conflict"}
    assert await rows(app, [sent["id"]]) == 1
    listed = await client.get(f"/v1/patients/{patient.id}/adherence", headers=clinician.headers)
    assert listed.json()["items"] == [stored]
    assert await outbox(app, [sent["id"]]) == [(sent["id"], "create", 1)]


async def test_the_change_feed_lists_a_batch_in_the_order_it_was_sent(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    sent = [record(patient.plan, i % 2, reps_done=i) for i in range(25)]
    results = await upload(client, patient.app, *sent)
    assert {r["result"] for r in results} == {"created"}
    ids = [r["id"] for r in sent]
    assert await outbox(app, ids) == [(i, "create", 1) for i in ids]


async def test_a_partly_replayed_batch_stores_only_what_is_new(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    first, second, third = (record(patient.plan, i % 2, reps_done=i) for i in range(3))
    assert [r["result"] for r in await upload(client, patient.app, first)] == ["created"]
    # The app lost the answer and sends everything again, with what it recorded since.
    results = await upload(client, patient.app, second, first, third)
    assert [r["result"] for r in results] == ["created", "unchanged", "created"]
    assert [r["id"] for r in results] == [second["id"], first["id"], third["id"]]
    for sent, result in zip((second, first, third), results, strict=True):
        assert content(result["record"]) == as_stored(sent, patient)
    ids = [first["id"], second["id"], third["id"]]
    assert await rows(app, ids) == 3
    # The change feed follows the uploads, and within one the order records were sent in.
    in_order = (first["id"], second["id"], third["id"])
    assert await outbox(app, ids) == [(i, "create", 1) for i in in_order]


async def test_a_bad_record_is_rejected_and_the_rest_are_stored(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    good, bad, also_good = (
        record(patient.plan),
        record(patient.plan, item_id=str(uuid.uuid4())),
        record(patient.plan, 1, status="partial"),
    )
    results = await upload(client, patient.app, good, bad, also_good)
    assert [r["result"] for r in results] == ["created", "rejected", "created"]
    assert results[1] == {
        "index": 1,
        "id": bad["id"],
        "result": "rejected",
        "record": None,
        "errors": [
            {
                "location": "body",
                "pointer": "#/records/1/item_id",
                "detail": "Not an item of that plan version.",
            }
        ],
    }
    assert await rows(app, [good["id"], also_good["id"]]) == 2
    assert await rows(app, [bad["id"]]) == 0
    assert await outbox(app, [bad["id"]]) == []


async def test_one_id_twice_in_a_batch_is_stored_once(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    sent = record(patient.plan)
    results = await upload(client, patient.app, sent, sent, {**sent, "pain": 4})
    assert [r["result"] for r in results] == ["created", "unchanged", "conflict"]
    assert [r["id"] for r in results] == [sent["id"]] * 3
    # The first one is kept; the later ones are compared with it.
    assert [content(r["record"]) for r in results] == [as_stored(sent, patient)] * 3
    assert await rows(app, [sent["id"]]) == 1
    assert await outbox(app, [sent["id"]]) == [(sent["id"], "create", 1)]


async def test_a_rejected_first_copy_lets_a_good_second_copy_in(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    sent = record(patient.plan)
    results = await upload(client, patient.app, {**sent, "pain": 11}, sent)
    assert [r["result"] for r in results] == ["rejected", "created"]
    assert pointers(results[0]) == ["#/records/0/pain"]
    assert await rows(app, [sent["id"]]) == 1


# --- the batch itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "pointer"),
    [
        pytest.param(lambda r: {"records": [r(i) for i in range(501)]}, "#/records", id="501"),
        pytest.param(lambda r: {"records": []}, "#/records", id="none"),
        pytest.param(lambda r: {}, "#/records", id="missing"),
        pytest.param(lambda r: {"records": r(0)}, "#/records", id="not a list"),
        pytest.param(lambda r: {"records": [r(0), "r"]}, "#/records/1", id="not an object"),
        pytest.param(lambda r: {"records": [r(0)], "device": "x"}, "#/device", id="unknown field"),
    ],
)
async def test_a_malformed_batch_is_422_and_stores_nothing(
    app: FastAPI,
    client: AsyncClient,
    clinician: Actor,
    make: Any,
    pointer: str,
) -> None:
    patient = await patient_with_plan(client, clinician)
    made: list[dict[str, Any]] = []

    def one(index: int) -> dict[str, Any]:
        made.append(record(patient.plan, index % 2))
        return made[-1]

    response = await client.post(BATCH, headers=patient.app, json=make(one))
    problem = assert_problem(response, 422, "validation")
    assert [e["pointer"] for e in problem["errors"]] == [pointer]
    assert await rows(app, [r["id"] for r in made]) == 0


async def test_a_batch_of_500_is_stored(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    sent = [record(patient.plan, i % 2, note="n" * 1000) for i in range(500)]
    results = await upload(client, patient.app, *sent)
    assert {r["result"] for r in results} == {"created"}
    assert await rows(app, [r["id"] for r in sent]) == 500


# --- the rules, each with its pointer -------------------------------------------------------


# Leaves a field out of a record.
DROP: Any = object()


def in_minutes(minutes: int) -> str:
    """A time that many minutes from now, as a phone two hours east of UTC would say it."""
    east = timezone(timedelta(hours=2))
    return (datetime.now(east) + timedelta(minutes=minutes)).isoformat(timespec="seconds")


async def test_each_rule_rejects_with_its_pointer_and_the_limits_are_accepted(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    v2 = patient.plan
    # Version 3 keeps the first item, drops the second and adds another.
    v3, _ = await changed_plan(
        client,
        clinician,
        v2["id"],
        (await client.get(f"/v1/plans/{v2['id']}", headers=clinician.headers)).headers["etag"],
        items=[{**item(), "id": patient.item(0)}, item("ankle-eversion")],
    )
    assert v3["version"] == v2["version"] + 1
    # Version 3 governs from the day it was made (its updated_at), version 2 until then.
    made = datetime.fromisoformat(v3["updated_at"]).astimezone(ZoneInfo(patient.time_zone))
    base = record(v3, performed_at=made.isoformat(timespec="seconds"))
    dropped, added = patient.item(1), v3["items"][1]["id"]
    cases: dict[str, tuple[dict[str, Any], list[str] | None]] = {
        # name: (what the record changes, the fields pointed at; None: created)
        "naive performed_at": ({"performed_at": "2026-11-20T09:15:00"}, ["performed_at"]),
        "performed_at not a time": ({"performed_at": "yesterday"}, ["performed_at"]),
        "more than 5 minutes ahead": ({"performed_at": in_minutes(10)}, ["performed_at"]),
        "unknown status": ({"status": "done"}, ["status"]),
        "skipped without a reason": ({"status": "skipped", **NOTHING_DONE}, ["skip_reason"]),
        "a reason without a skip": ({"skip_reason": "pain"}, ["skip_reason"]),
        "unknown skip reason": (
            {"status": "skipped", "skip_reason": "bored", **NOTHING_DONE},
            ["skip_reason"],
        ),
        "sets and effort of a skip": (
            {"status": "skipped", "skip_reason": "no_time", "sets_done": 3, "reps_done": None},
            ["sets_done"],
        ),
        "21 sets": ({"sets_done": 21}, ["sets_done"]),
        "-1 sets": ({"sets_done": -1}, ["sets_done"]),
        "101 reps": ({"reps_done": 101}, ["reps_done"]),
        "601 s hold": ({"hold_seconds": 601}, ["hold_seconds"]),
        "pain 11": ({"pain": 11}, ["pain"]),
        "effort 11": ({"effort": 11}, ["effort"]),
        "effort -1": ({"effort": -1}, ["effort"]),
        "two problems": ({"sets_done": 21, "pain": -1}, ["pain", "sets_done"]),
        "long note": ({"note": "n" * 1001}, ["note"]),
        "unknown device": ({"assistive_device": "cane"}, ["assistive_device"]),
        "unknown field": ({"mood": "good"}, ["mood"]),
        "id not a uuid": ({"id": "not-a-uuid"}, ["id"]),
        "no id": ({"id": DROP}, ["id"]),
        "no plan": ({"plan_id": DROP}, ["plan_id"]),
        "no such plan": ({"plan_id": str(uuid.uuid4())}, ["plan_id"]),
        "version 0": ({"plan_version": 0}, ["plan_version"]),
        "no such version": ({"plan_version": 99}, ["plan_version"]),
        "no such item": ({"item_id": str(uuid.uuid4())}, ["item_id"]),
        "item dropped in this version": ({"item_id": dropped}, ["item_id"]),
        "item added in a later version": (
            {"plan_version": v2["version"], "item_id": added},
            ["item_id"],
        ),
        # The limits themselves are fine.
        "item of the earlier version": ({"plan_version": v2["version"], "item_id": dropped}, None),
        "item added in this version": ({"item_id": added}, None),
        "4 minutes ahead": ({"performed_at": in_minutes(4)}, None),
        "the highest numbers": (
            {
                "sets_done": 20,
                "reps_done": 100,
                "hold_seconds": 600,
                "pain": 10,
                "effort": 10,
                "note": "n" * 1000,
                "assistive_device": "fes",
            },
            None,
        ),
        "the lowest numbers": (
            {
                "status": "partial",
                "sets_done": 0,
                "reps_done": 0,
                "hold_seconds": 0,
                "pain": 0,
                "effort": 0,
                "assistive_device": "none",
            },
            None,
        ),
        "skipped with a reason": (
            {"status": "skipped", "skip_reason": "no_equipment", "pain": 3, **NOTHING_DONE},
            None,
        ),
        "with an AFO": ({"assistive_device": "afo", "pain": 7}, None),
    }
    names = list(cases)
    sent = [
        {
            k: v
            for k, v in {**base, "id": str(uuid.uuid4()), **cases[name][0]}.items()
            if v is not DROP
        }
        for name in names
    ]
    results = await upload(client, patient.app, *sent)

    def expected(index: int, fields: list[str] | None) -> tuple[str, list[str]]:
        if fields is None:
            return "created", []
        return "rejected", [f"#/records/{index}" + (f"/{f}" if f else "") for f in fields]

    assert {n: (r["result"], pointers(r)) for n, r in zip(names, results, strict=True)} == {
        n: expected(i, cases[n][1]) for i, n in enumerate(names)
    }
    for name, body, result in zip(names, sent, results, strict=True):
        if result["result"] == "rejected":
            assert result["record"] is None, name
            valid_id = name not in ("id not a uuid", "no id")
            assert result["id"] == (body["id"] if valid_id else None), name
        else:
            assert content(result["record"]) == as_stored(body, patient), name
    unknown_field = results[names.index("unknown field")]
    assert unknown_field["errors"][0]["detail"] == "Unknown field."
    created = [r["id"] for r in results if r["result"] == "created"]
    refused = [r["id"] for r in results if r["result"] == "rejected" and r["id"]]
    assert await rows(app, created) == len(created)
    assert await rows(app, refused) == 0


# --- local dates and offsets ----------------------------------------------------------------


async def test_performed_on_is_the_patients_local_date_and_the_offset_comes_back(
    client: AsyncClient, clinician: Actor
) -> None:
    zone = "Pacific/Auckland"
    patient = await patient_with_plan(client, clinician, time_zone=zone)
    times = [
        "2026-11-20T23:30:00+13:00",  # late evening at home
        "2026-11-20T10:30:00Z",  # the same instant, sent in UTC
        "2026-11-20T11:00:00Z",  # midnight at home: already the 21st there
        "2026-11-20T12:30:00+00:00",  # the 20th in UTC, the 21st at home
        "2026-11-20T05:30:00-08:00",  # travelling: the 20th where they were, the 21st at home
        "2026-11-20T10:59:59+00:00",  # one second before midnight at home
    ]
    sent = [record(patient.plan, performed_at=t) for t in times]
    results = await upload(client, patient.app, *sent)
    days = [r["record"]["performed_on"] for r in results]
    assert days == [local_date(t, zone) for t in times]
    assert days == [
        "2026-11-20",
        "2026-11-20",
        "2026-11-21",
        "2026-11-21",
        "2026-11-21",
        "2026-11-20",
    ]
    for time, result in zip(times, results, strict=True):
        back = datetime.fromisoformat(result["record"]["performed_at"])
        assert back == datetime.fromisoformat(time)
        assert back.utcoffset() == datetime.fromisoformat(time).utcoffset()
    assert results[0]["record"]["performed_at"] == "2026-11-20T23:30:00+13:00"
    assert results[4]["record"]["performed_at"] == "2026-11-20T05:30:00-08:00"

    # The clinic's list shows the same, and filters on the local date.
    path = f"/v1/patients/{patient.id}/adherence"
    listed = await client.get(path, params={"from": "2026-11-21"}, headers=clinician.headers)
    assert sorted(r["id"] for r in listed.json()["items"]) == sorted(
        r["id"] for r in results if r["record"]["performed_on"] == "2026-11-21"
    )
    assert {r["id"]: r for r in listed.json()["items"]} == {
        r["id"]: r["record"] for r in results if r["record"]["performed_on"] == "2026-11-21"
    }


# --- who may record for whom ----------------------------------------------------------------


async def active_plan_of(
    client: AsyncClient, clinician: Actor, patient_id: object
) -> dict[str, Any]:
    """The patient's active plan, made if there is none yet (the world's patients are shared)."""
    listed = await client.get(
        f"/v1/patients/{patient_id}/plans", params={"status": "active"}, headers=clinician.headers
    )
    assert listed.status_code == 200, listed.text
    found: list[dict[str, Any]] = listed.json()["items"]
    if found:
        return found[0]
    plan, _ = await active_plan(client, clinician, patient_id)
    return plan


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("patient_a", "patient_app"),
        ("clinician1", "clinician"),
        ("admin1", "clinician"),
        ("client_all", "clinic_system"),
    ],
)
async def test_the_patient_and_their_clinic_record_for_patient_a(
    app: FastAPI, client: AsyncClient, world: World, name: str, source: str
) -> None:
    plan = await active_plan_of(client, world["clinician1"], world.patient_a)
    sent = record(plan)
    [result] = await upload(client, world[name].headers, sent)
    assert result["result"] == "created", result
    assert result["record"]["source"] == source
    assert result["record"]["patient_id"] == str(world.patient_a)
    assert await rows(app, [sent["id"]]) == 1


@pytest.mark.parametrize("name", ["patient_b", "patient_c", "clinician2"])
async def test_others_cannot_record_against_patient_as_plan(
    app: FastAPI, client: AsyncClient, world: World, name: str
) -> None:
    plan = await active_plan_of(client, world["clinician1"], world.patient_a)
    theirs, nobodys = record(plan), record(plan, plan_id=str(uuid.uuid4()))
    results = await upload(client, world[name].headers, theirs, nobodys)
    assert [r["result"] for r in results] == ["rejected", "rejected"]
    assert pointers(results[0]) == ["#/records/0/plan_id"]
    # Patient A's plan answers exactly like a plan that does not exist.
    assert results[0]["errors"][0]["detail"] == results[1]["errors"][0]["detail"]
    assert await rows(app, [theirs["id"]]) == 0


@pytest.mark.parametrize(
    ("name", "status", "slug"),
    [("anonymous", 401, "unauthorized"), ("client_none", 403, "forbidden")],
)
async def test_uploading_needs_a_patient_or_adherence_write(
    app: FastAPI, client: AsyncClient, world: World, name: str, status: int, slug: str
) -> None:
    plan = await active_plan_of(client, world["clinician1"], world.patient_a)
    sent = record(plan)
    response = await client.post(BATCH, headers=world[name].headers, json={"records": [sent]})
    assert_problem(response, status, slug)
    assert await rows(app, [sent["id"]]) == 0


async def test_another_patients_record_id_is_rejected_without_revealing_it(
    app: FastAPI, client: AsyncClient, clinician: Actor
) -> None:
    """Within a clinic an id is taken; another clinic's ids are its own (test_record_ids)."""
    mine = await patient_with_plan(client, clinician)
    sent = record(mine.plan)
    [original] = await upload(client, mine.app, sent)

    same_clinic = await patient_with_plan(client, clinician)
    attempts = [
        (same_clinic.app, same_clinic.plan),  # another patient's app
        (clinician.headers, same_clinic.plan),  # their clinician, for another patient
    ]
    for headers, plan in attempts:
        # Everything about it the same but the plan it belongs to.
        taken = {**record(plan), **{k: sent[k] for k in ("id", "performed_at", "sets_done")}}
        [result] = await upload(client, headers, taken)
        assert result == {
            "index": 0,
            "id": sent["id"],
            "result": "rejected",
            "record": None,
            "errors": [
                {
                    "location": "body",
                    "pointer": "#/records/0/id",
                    "detail": "This id is taken; use a new one.",
                }
            ],
        }
    assert await rows(app, [sent["id"]]) == 1
    assert await outbox(app, [sent["id"]]) == [(sent["id"], "create", 1)]
    assert await audit_trail(app, same_clinic.id) == []
    listed = await client.get(f"/v1/patients/{mine.id}/adherence", headers=clinician.headers)
    assert listed.json()["items"] == [original["record"]]


# --- two uploads at once --------------------------------------------------------------------


async def test_two_identical_uploads_racing_store_each_record_once(
    app: FastAPI, client: AsyncClient, clinician: Actor, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite lets one writer in at a time: there is no race to lose there.")
    patient = await patient_with_plan(client, clinician)
    for _ in range(3):
        sent = [record(patient.plan, i % 2, reps_done=i) for i in range(40)]
        body = {"records": sent}
        first, second = await asyncio.gather(
            client.post(BATCH, headers=patient.app, json=body),
            client.post(BATCH, headers=patient.app, json=body),
        )
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        pairs = zip(first.json()["results"], second.json()["results"], strict=True)
        for one, other in pairs:
            assert sorted((one["result"], other["result"])) == ["created", "unchanged"]
            assert one["record"] == other["record"]
        ids = [r["id"] for r in sent]
        assert await rows(app, ids) == len(sent)
        assert sorted(await outbox(app, ids)) == sorted((i, "create", 1) for i in ids)


# --- the outbox and the audit trail ---------------------------------------------------------


async def test_created_records_reach_the_outbox_and_the_audit_trail(
    app: FastAPI, client: AsyncClient, clinician: Actor, world: World
) -> None:
    first = await patient_with_plan(client, clinician)
    second = await patient_with_plan(client, clinician)
    app_upload = [record(first.plan), record(first.plan, 1)]
    await upload(client, first.app, *app_upload)
    staff_upload = [record(first.plan), record(second.plan), record(second.plan, 1)]
    await upload(client, clinician.headers, *staff_upload)

    ids = [r["id"] for r in app_upload + staff_upload]
    assert await outbox(app, ids) == [(i, "create", 1) for i in ids]
    async with transaction(app.state.engine) as session:
        clinics = (
            await session.exec(select(Change.clinic_id).where(col(Change.resource_id).in_(ids)))
        ).all()
    assert set(clinics) == {world.clinic1}
    # One event per upload and patient, by whoever uploaded.
    assert await audit_trail(app, first.id) == [
        ("create", "patient", first.id),
        ("create", "clinician", str(clinician.id)),
    ]
    assert await audit_trail(app, second.id) == [("create", "clinician", str(clinician.id))]

    # A replay stores nothing, so it writes nothing to the outbox.
    results = await upload(client, clinician.headers, *app_upload, *staff_upload)
    assert {r["result"] for r in results} == {"unchanged"}
    assert await outbox(app, ids) == [(i, "create", 1) for i in ids]


# --- reading records back -------------------------------------------------------------------


async def test_the_list_is_newest_first_paged_and_filtered(
    client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    plan, path = patient.plan, f"/v1/patients/{patient.id}/adherence"
    r1 = record(plan, 0, performed_at="2026-11-18T08:00:00-06:00")
    r2 = record(
        plan,
        1,
        performed_at="2026-11-19T08:00:00-06:00",
        status="skipped",
        skip_reason="no_time",
        sets_done=None,
        reps_done=None,
    )
    r3 = record(plan, 0, performed_at="2026-11-19T20:00:00-06:00", status="partial")
    r4 = record(plan, 1, performed_at="2026-11-20T02:00:00Z")  # r3's instant; Chicago's 19th
    r5 = record(plan, 0, performed_at="2026-11-20T07:30:00-06:00")
    results = await upload(client, patient.app, r3, r1, r5, r2, r4)
    stored = {r["id"]: r["record"] for r in results}

    def newest_first(*sent: dict[str, Any]) -> list[str]:
        return [
            r["id"]
            for r in sorted(
                sent,
                key=lambda r: (datetime.fromisoformat(r["performed_at"]), uuid.UUID(r["id"])),
                reverse=True,
            )
        ]

    async def every_page(**params: Any) -> list[str]:
        """Follows next_cursor to the end; every page but the last is full."""
        seen: list[str] = []
        cursor: str | None = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = await client.get(path, params=query, headers=clinician.headers)
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["items"] == [stored[r["id"]] for r in page["items"]]
            seen += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen
            assert len(page["items"]) == params["limit"]

    everything = newest_first(r1, r2, r3, r4, r5)
    assert everything[0] == r5["id"]
    assert everything[-2:] == [r2["id"], r1["id"]]
    for limit in (1, 2, 5, 100):
        assert await every_page(limit=limit) == everything
    day_19 = newest_first(r2, r3, r4)
    assert await every_page(limit=2, **{"from": "2026-11-19", "to": "2026-11-19"}) == day_19
    assert await every_page(limit=50, **{"from": "2026-11-19"}) == newest_first(r2, r3, r4, r5)
    assert await every_page(limit=50, to="2026-11-18") == [r1["id"]]
    assert await every_page(limit=50, **{"from": "2026-11-21"}) == []
    assert await every_page(limit=1, item_id=patient.item(0)) == newest_first(r1, r3, r5)
    assert await every_page(limit=50, status="completed") == newest_first(r1, r4, r5)
    assert await every_page(limit=50, status="skipped") == [r2["id"]]
    both = {"item_id": patient.item(1), "status": "completed"}
    assert await every_page(limit=50, **both) == [r4["id"]]


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"from": "someday"}, "#/from"),
        ({"status": "done"}, "#/status"),
        ({"item_id": "x"}, "#/item_id"),
        ({"cursor": "not-a-cursor"}, "#/cursor"),
        ({"limit": 101}, "#/limit"),
    ],
)
async def test_a_bad_list_query_is_422(
    client: AsyncClient, world: World, params: dict[str, Any], pointer: str
) -> None:
    response = await client.get(
        f"/v1/patients/{world.patient_a}/adherence",
        params=params,
        headers=world["clinician1"].headers,
    )
    problem = assert_problem(response, 422, "validation")
    assert [e["pointer"] for e in problem["errors"]] == [pointer]


async def test_another_clinics_patient_is_not_found(
    client: AsyncClient, clinician: Actor, world: World
) -> None:
    patient = await patient_with_plan(client, clinician)
    await upload(client, patient.app, record(patient.plan))
    for path, headers in (
        (f"/v1/patients/{patient.id}/adherence", world["clinician2"].headers),
        (f"/v1/patients/{world.patient_c}/adherence", clinician.headers),
        (f"/v1/patients/{uuid.uuid4()}/adherence", clinician.headers),
    ):
        assert_problem(await client.get(path, headers=headers), 404, "not-found")
    assert_problem(
        await client.get(f"/v1/patients/{patient.id}/adherence", headers=patient.app),
        403,
        "forbidden",
    )


# --- the patient's today --------------------------------------------------------------------


async def test_today_shows_todays_records_under_their_item(
    client: AsyncClient, clinician: Actor
) -> None:
    zone = "Pacific/Auckland"
    patient = await patient_with_plan(client, clinician, time_zone=zone)
    now = datetime.now(ZoneInfo(zone)).replace(microsecond=0)
    midnight = now.replace(hour=0, minute=0, second=0)
    early = record(patient.plan, 0, performed_at=midnight.isoformat(), pain=2)
    later = record(patient.plan, 0, performed_at=now.isoformat(), status="partial", reps_done=4)
    before = record(patient.plan, 1, performed_at=(now - timedelta(days=2)).isoformat())
    results = await upload(client, patient.app, later, before, early)
    assert {r["result"] for r in results} == {"created"}

    response = await client.get("/v1/me/today", headers=patient.app)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["date"] == now.date().isoformat()
    recorded = {entry["item_id"]: entry["recorded"] for entry in body["items"]}
    fields = ("id", "status", "performed_at", "sets_done", "reps_done", "pain")
    assert recorded == {
        patient.item(0): [{k: r.get(k) for k in fields} for r in (early, later)],
        patient.item(1): [],
    }
