"""When a plan is in force: what a plan says, what the app may record against it and what
the summary counts agree (issue 19).

The scenario is a clinic moving a program begun on paper into Dorsi: the plan starts on the
Monday three weeks before this week and is activated today; the patient's app then uploads
the sessions of the first two weeks. Its figures are computed by hand.
"""

import asyncio
import json
import sys
import uuid
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.adherence.models import AdherenceRecord
from app.adherence.outside import outside_records
from app.core.config import Settings
from app.core.db import transaction
from tests.conftest import TEST_SECRET, Actor, World
from tests.feed import follow, tail
from tests.fhir import fhir_get
from tests.plans import (
    changed_plan,
    exercise_id,
    local_today,
    new_patient,
    new_plan,
    paired_headers,
)

# UTC-10, UTC and UTC+13, none of them with daylight saving time.
ZONES = ["Pacific/Honolulu", "UTC", "Pacific/Tongatapu"]


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


def monday_three_weeks_before_this_week(time_zone: str) -> date:
    today = local_today(time_zone)
    return today - timedelta(days=today.isoweekday() - 1 + 21)


def at_noon(day: date, time_zone: str) -> str:
    return datetime.combine(day, time(12), ZoneInfo(time_zone)).isoformat()


@pytest.mark.parametrize("time_zone", ZONES)
async def test_a_plan_moved_from_paper_counts_from_its_start_date(
    client: AsyncClient, clinician: Actor, time_zone: str
) -> None:
    patient = await new_patient(client, clinician, time_zone=time_zone)
    start = monday_three_weeks_before_this_week(time_zone)
    draft, etag = await new_plan(
        client,
        clinician,
        patient["id"],
        start_date=start.isoformat(),
        items=[
            {
                "exercise_id": exercise_id("ankle-dorsiflexion"),
                "sets": 3,
                "reps": 10,
                "schedule": {"sessions_per_week": 3},
            },
            {
                "exercise_id": exercise_id("ankle-eversion"),
                "reps": 10,
                "schedule": {"days_of_week": [1, 3, 5]},
            },
        ],
    )
    plan, _ = await changed_plan(client, clinician, draft["id"], etag, status="active")
    dorsiflexion, eversion = (entry["id"] for entry in plan["items"])
    app = await paired_headers(client, clinician, patient["id"])

    week1, week2 = start, start + timedelta(days=7)
    sessions = [
        # Week 1: dorsiflexion Monday, Wednesday and Friday; eversion done, half, skipped.
        (week1, dorsiflexion, "completed"),
        (week1 + timedelta(days=2), dorsiflexion, "completed"),
        (week1 + timedelta(days=4), dorsiflexion, "completed"),
        (week1, eversion, "completed"),
        (week1 + timedelta(days=2), eversion, "partial"),
        (week1 + timedelta(days=4), eversion, "skipped"),
        # Week 2: dorsiflexion Monday and half on Wednesday; eversion every scheduled day,
        # and once more on the Tuesday, which is not one of its days.
        (week2, dorsiflexion, "completed"),
        (week2 + timedelta(days=2), dorsiflexion, "partial"),
        (week2, eversion, "completed"),
        (week2 + timedelta(days=1), eversion, "completed"),
        (week2 + timedelta(days=2), eversion, "completed"),
        (week2 + timedelta(days=4), eversion, "completed"),
    ]
    records: list[dict[str, Any]] = [
        {
            "id": str(uuid.uuid4()),
            "plan_id": plan["id"],
            "plan_version": plan["version"],
            "item_id": item_id,
            "performed_at": at_noon(day, time_zone),
            "status": status,
            **({"skip_reason": "no_time"} if status == "skipped" else {"sets_done": 3}),
        }
        for day, item_id, status in sessions
    ]
    uploaded = await client.post("/v1/adherence/batch", json={"records": records}, headers=app)
    assert uploaded.status_code == 200, uploaded.text
    assert [r["result"] for r in uploaded.json()["results"]] == ["created"] * 12

    answer = await client.get(
        f"/v1/patients/{patient['id']}/adherence/summary",
        params={"from": week1.isoformat(), "to": (week2 + timedelta(days=6)).isoformat()},
        headers=clinician.headers,
    )
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["totals"] == {
        "expected": 12.0,
        "credited": 9.0,
        "adherence_percent": 75.0,
        "completed": 9,
        "partial": 2,
        "skipped": 1,
    }
    # Week 1: dorsiflexion 3 of 3, eversion 1.5 of 3. Week 2: dorsiflexion 1.5 of 3,
    # eversion 3 of 3 (the Tuesday earns nothing).
    assert [(w["expected"], w["credited"]) for w in summary["weeks"]] == [(6.0, 4.5), (6.0, 4.5)]
    items = {entry["item_id"]: entry for entry in summary["items"]}
    assert (items[dorsiflexion]["expected"], items[dorsiflexion]["credited"]) == (6.0, 4.5)
    assert (items[eversion]["expected"], items[eversion]["credited"]) == (6.0, 4.5)
    assert [items[eversion][k] for k in ("completed", "partial", "skipped")] == [5, 1, 1]


async def upload_one(
    client: AsyncClient, headers: dict[str, str], plan: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    record = {
        "id": str(uuid.uuid4()),
        "plan_id": plan["id"],
        "plan_version": plan["version"],
        "item_id": plan["items"][0]["id"],
        "status": "completed",
        **fields,
    }
    answer = await client.post("/v1/adherence/batch", json={"records": [record]}, headers=headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["results"][0]
    return result


def refusal(result: dict[str, Any]) -> tuple[str, str]:
    """The pointer and the reason of a rejected record's one error."""
    assert result["result"] == "rejected", result
    [error] = result["errors"]
    return error["pointer"], error["detail"]


@pytest.mark.parametrize("time_zone", ZONES)
async def test_a_record_outside_the_days_its_version_governed_is_rejected_with_a_reason(
    client: AsyncClient, clinician: Actor, time_zone: str
) -> None:
    today = local_today(time_zone)
    start, end = today - timedelta(days=14), today - timedelta(days=7)
    patient = await new_patient(client, clinician, time_zone=time_zone)
    app = await paired_headers(client, clinician, patient["id"])
    draft, etag = await new_plan(
        client, clinician, patient["id"], start_date=start.isoformat(), end_date=end.isoformat()
    )
    plan, _ = await changed_plan(client, clinician, draft["id"], etag, status="active")

    def on(day: date) -> str:
        return at_noon(day, time_zone)

    # The plan's first and last days are its own; the days around them are not.
    for day in (start, end):
        assert (await upload_one(client, app, plan, performed_at=on(day)))["result"] == "created"
    before = await upload_one(client, app, plan, performed_at=on(start - timedelta(days=1)))
    assert refusal(before) == (
        "#/records/0/performed_at",
        f"{start - timedelta(days=1)} is outside the plan's days, which run from {start} to {end}.",
    )
    after = await upload_one(client, app, plan, performed_at=on(end + timedelta(days=1)))
    assert refusal(after)[0] == "#/records/0/performed_at"
    # The draft never governed a day, not even one within the plan's dates.
    against_draft = await upload_one(client, app, draft, performed_at=on(start))
    assert refusal(against_draft) == (
        "#/records/0/plan_version",
        "Version 1 of the plan never governed a day (a draft, or the end of the plan); "
        "record against the version the app shows today.",
    )


async def test_an_edit_governs_from_its_day_and_the_version_it_replaced_until_then(
    client: AsyncClient, clinician: Actor
) -> None:
    time_zone = "Pacific/Tongatapu"
    today = local_today(time_zone)
    patient = await new_patient(client, clinician, time_zone=time_zone)
    app = await paired_headers(client, clinician, patient["id"])
    draft, etag = await new_plan(
        client, clinician, patient["id"], start_date=(today - timedelta(days=7)).isoformat()
    )
    v2, etag = await changed_plan(client, clinician, draft["id"], etag, status="active")
    v3, _ = await changed_plan(client, clinician, draft["id"], etag, notes="Slower.")
    yesterday = today - timedelta(days=1)
    # Version 3 was made today: yesterday belongs to version 2 alone.
    late = await upload_one(client, app, v3, performed_at=at_noon(yesterday, time_zone))
    assert refusal(late) == (
        "#/records/0/plan_version",
        f"Version 3 of the plan was not in force on {yesterday}; version 2 was.",
    )
    assert (await upload_one(client, app, v2, performed_at=at_noon(yesterday, time_zone)))[
        "result"
    ] == "created"
    # Today either: version 2 was in force until the edit, as on an app that had not yet
    # heard of it; version 3 since.
    now = datetime.now(ZoneInfo(time_zone)).isoformat(timespec="seconds")
    for version in (v2, v3):
        assert (await upload_one(client, app, version, performed_at=now))["result"] == "created"
    # The version list says which days each version governs, by the same rule.
    listed = await client.get(f"/v1/plans/{v3['id']}/versions", headers=clinician.headers)
    assert listed.status_code == 200, listed.text
    assert [(v["number"], v["governs_from"], v["governs_to"]) for v in listed.json()["items"]] == [
        (1, None, None),
        (2, (today - timedelta(days=7)).isoformat(), yesterday.isoformat()),
        (3, today.isoformat(), None),
    ]


async def test_stored_records_outside_their_plan_are_reported_and_kept(
    app: FastAPI, settings: Settings, client: AsyncClient, clinician: Actor
) -> None:
    time_zone = "Pacific/Honolulu"
    start = local_today(time_zone) - timedelta(days=10)
    patient = await new_patient(client, clinician, time_zone=time_zone)
    draft, etag = await new_plan(client, clinician, patient["id"], start_date=start.isoformat())
    plan, _ = await changed_plan(client, clinician, draft["id"], etag, status="active")
    item_id = uuid.UUID(plan["items"][0]["id"])
    assert clinician.clinic_id is not None
    # As stored before uploads followed the rule: the day before the start, and the draft.
    stored = {"before the start": (2, start - timedelta(days=1)), "draft": (1, start)}
    stored_ids = {name: uuid.uuid4() for name in (*stored, "within")}
    async with transaction(app.state.engine) as session:
        for name, (number, day) in {**stored, "within": (2, start)}.items():
            session.add(
                AdherenceRecord(
                    id=stored_ids[name],
                    clinic_id=clinician.clinic_id,
                    patient_id=uuid.UUID(patient["id"]),
                    plan_id=uuid.UUID(plan["id"]),
                    plan_version=number,
                    item_id=item_id,
                    performed_at=datetime.combine(day, time(12), ZoneInfo(time_zone)),
                    utc_offset_minutes=-600,
                    performed_on=day,
                    status="completed",
                    source="patient_app",
                    recorded_by=uuid.UUID(patient["id"]),
                )
            )
    async with transaction(app.state.engine) as session:
        found = await outside_records(session, clinician.clinic_id)
    mine = [o for o in found if str(o.patient_id) == patient["id"]]
    assert [(o.id, o.plan_version, o.performed_on, o.field) for o in mine] == [
        (stored_ids["draft"], 1, start, "plan_version"),
        (stored_ids["before the start"], 2, start - timedelta(days=1), "performed_at"),
    ]

    # The command reports the same, one JSON line each, and exits 1.
    env = {
        "DORSI_DATABASE_URL": settings.database_url,
        "DORSI_ENVIRONMENT": "test",
        "DORSI_SECRET_KEY": TEST_SECRET,
        "PATH": "/usr/bin:/bin",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("dorsi")),
        "check-records",
        "--clinic-id",
        str(clinician.clinic_id),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [
        (line["id"], line["field"], line["reason"])
        for line in lines
        if line["patient_id"] == patient["id"]
    ] == [(str(o.id), o.field, o.reason) for o in mine]
    assert err.decode().strip() == f"{len(lines)} records outside their plan"
    # Reported, not dropped: the clinic still reads all three.
    listed = await client.get(f"/v1/patients/{patient['id']}/adherence", headers=clinician.headers)
    assert sorted(r["id"] for r in listed.json()["items"]) == sorted(map(str, stored_ids.values()))


@pytest.mark.parametrize("time_zone", ["Pacific/Honolulu", "Pacific/Tongatapu"])
async def test_the_plan_its_changes_and_its_care_plan_say_which_days_it_governs(
    client: AsyncClient, world: World, clinician: Actor, time_zone: str
) -> None:
    admin = world["admin1"]
    cursor = await tail(client, admin)
    today = local_today(time_zone)
    start = monday_three_weeks_before_this_week(time_zone)
    patient = await new_patient(client, clinician, time_zone=time_zone)
    draft, etag = await new_plan(client, clinician, patient["id"], start_date=start.isoformat())
    active, etag = await changed_plan(client, clinician, draft["id"], etag, status="active")
    edited, etag = await changed_plan(client, clinician, draft["id"], etag, notes="Slower.")
    completed, _ = await changed_plan(client, clinician, draft["id"], etag, status="completed")

    # A draft governs nothing; activated today, the plan governs from its start date, on
    # through an edit; completed today, it governed until yesterday.
    spans = [(p["governs_from"], p["governs_to"]) for p in (draft, active, edited, completed)]
    open_ended = (start.isoformat(), None)
    ended = (start.isoformat(), (today - timedelta(days=1)).isoformat())
    assert spans == [(None, None), open_ended, open_ended, ended]
    read = await client.get(f"/v1/plans/{draft['id']}", headers=clinician.headers)
    assert (read.json()["governs_from"], read.json()["governs_to"]) == ended

    # The change feed carries each version as the plan's GET rendered it then.
    changes = [
        item
        for item in await follow(client, admin, cursor, types="plan")
        if item["id"] == draft["id"]
    ]
    assert [item["data"] for item in changes] == [draft, active, edited, completed]

    # FHIR's CarePlan.period is the same span; a draft's is the dates it is meant to run.
    care_plan = await fhir_get(client, admin, f"CarePlan/{draft['id']}")
    assert care_plan["period"] == {"start": ended[0], "end": ended[1]}
    first = await fhir_get(client, admin, f"CarePlan/{draft['id']}/_history/1")
    assert first["status"] == "draft"
    assert first["period"] == {"start": start.isoformat()}
    second = await fhir_get(client, admin, f"CarePlan/{draft['id']}/_history/2")
    assert second["period"] == {"start": start.isoformat()}
