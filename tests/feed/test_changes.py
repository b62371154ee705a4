"""The change feed: every synced create, update and delete, as its own GET renders it at
that version, in commit order, with tombstones; filters, cursors and long polls."""

import asyncio
import time
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.pagination import encode_cursor
from tests.conftest import Actor, World, build_world
from tests.core.problems import assert_problem
from tests.feed import clinic_exercise, follow, read, tail
from tests.plans import (
    PLAN_START,
    changed_plan,
    item,
    new_patient,
    new_plan,
    paired_headers,
)


@pytest.fixture
def admin(world: World) -> Actor:
    return world["admin1"]


def seen(items: list[Any]) -> list[tuple[str, str, str, int | None]]:
    return [(i["type"], i["id"], i["operation"], i["version"]) for i in items]


async def test_every_synced_write_arrives_as_its_get_rendered_it(
    client: AsyncClient, admin: Actor, world: World
) -> None:
    cursor = await tail(client, admin)
    patient = await new_patient(client, admin)
    pid = patient["id"]
    renamed = await client.patch(
        f"/v1/patients/{pid}",
        json={"reference": f"R-{uuid.uuid4().hex[:8]}"},
        headers=admin.headers,
    )
    plan1, etag = await new_plan(client, admin, pid, start_date=PLAN_START)
    plan2, _ = await changed_plan(client, admin, plan1["id"], etag, status="active")
    app_headers = await paired_headers(client, admin, pid)
    record = {
        "id": str(uuid.uuid4()),
        "plan_id": plan2["id"],
        "plan_version": 2,
        "item_id": plan2["items"][0]["id"],
        "performed_at": "2026-11-20T09:15:00+01:00",
        "status": "completed",
    }
    upload = await client.post(
        "/v1/adherence/batch", headers=app_headers, json={"records": [record]}
    )
    record1 = upload.json()["results"][0]["record"]
    corrected = await client.patch(
        f"/v1/adherence/{record['id']}",
        json={"pain": 3},
        headers={**admin.headers, "If-Match": f'"{record["id"]}-1"'},
    )
    assert corrected.status_code == 200, corrected.text
    deleted = await client.delete(
        f"/v1/adherence/{record['id']}",
        headers={**admin.headers, "If-Match": corrected.headers["etag"]},
    )
    assert deleted.status_code == 204
    template = await client.post(
        "/v1/plan-templates",
        json={"name": "Feed template", "items": [item()]},
        headers=admin.headers,
    )
    exercise = await client.post(
        "/v1/exercises",
        json=clinic_exercise("Feed toe taps"),
        headers=admin.headers,
    )
    assert exercise.status_code == 201, exercise.text
    settings = await client.patch("/v1/clinic", json={"pain_alert_at": 6}, headers=admin.headers)
    gone = await client.delete(f"/v1/patients/{pid}", headers=admin.headers)
    assert gone.status_code == 204

    items = await follow(client, admin, cursor)
    rid, version2 = record["id"], renamed.json()["version"]
    assert seen(items) == [
        ("patient", pid, "create", 1),
        ("patient", pid, "update", version2),
        ("plan", plan1["id"], "create", 1),
        ("plan", plan1["id"], "update", 2),
        ("adherence_record", rid, "create", 1),
        ("adherence_record", rid, "update", 2),
        ("adherence_record", rid, "delete", 2),
        ("plan_template", template.json()["id"], "create", 1),
        ("exercise", exercise.json()["id"], "create", 1),
        ("clinic", str(world.clinic1), "update", None),
        ("patient", pid, "delete", version2),
    ]
    data = [i["data"] for i in items]
    assert data == [
        patient,
        renamed.json(),
        plan1,
        plan2,
        record1,
        corrected.json(),
        None,  # a tombstone
        template.json(),
        exercise.json(),
        settings.json(),
        None,
    ]


async def test_types_filter_and_the_cursor_moves_past_what_they_skip(
    client: AsyncClient, admin: Actor
) -> None:
    cursor = await tail(client, admin)
    patient = await new_patient(client, admin)
    await new_plan(client, admin, patient["id"])
    plans_only = await read(client, admin, cursor, types="plan")
    assert seen(plans_only["items"])[0][:3] == ("plan", plans_only["items"][0]["id"], "create")
    assert len(plans_only["items"]) == 1
    # Nothing but patients since the plan: an empty page, and a cursor past the patient.
    await new_patient(client, admin)
    skipped = await read(client, admin, plans_only["next_cursor"], types=["plan", "clinic"])
    assert skipped["items"] == []
    assert skipped["next_cursor"] != plans_only["next_cursor"]
    assert (await read(client, admin, skipped["next_cursor"]))["items"] == []


async def test_pages_are_limited_and_every_page_has_a_next_cursor(
    client: AsyncClient, admin: Actor
) -> None:
    cursor = await tail(client, admin)
    empty = await read(client, admin, cursor)
    assert empty == {"items": [], "next_cursor": cursor}
    for _ in range(3):
        await new_patient(client, admin)
    first = await read(client, admin, cursor, limit=2)
    second = await read(client, admin, first["next_cursor"], limit=2)
    assert len(first["items"]) == 2
    assert len(second["items"]) == 1
    assert first["next_cursor"] == first["items"][-1]["cursor"]
    for params in ({"limit": 0}, {"limit": 1001}, {"wait": 31}, {"types": "nurse"}):
        bad = await client.get("/v1/changes", params=params, headers=admin.headers)
        assert_problem(bad, 422, "validation")
    for cursor in ("nonsense", encode_cursor(["x"]), encode_cursor([-1])):
        bad = await client.get("/v1/changes", params={"cursor": cursor}, headers=admin.headers)
        assert_problem(bad, 422, "validation")


async def test_a_clinic_sees_only_its_own_changes(
    app: FastAPI, client: AsyncClient, admin: Actor
) -> None:
    other = (await build_world(app))["admin1"]
    cursor = await tail(client, other)
    await new_patient(client, admin)
    assert await follow(client, other, cursor) == []


async def test_a_long_poll_answers_when_a_change_commits_holding_no_connection(
    app: FastAPI, client: AsyncClient, admin: Actor
) -> None:
    cursor = await tail(client, admin)
    pool = app.state.engine.pool
    started = time.monotonic()
    waiting = asyncio.create_task(read(client, admin, cursor, wait=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    assert pool.checkedout() == 0  # the waiting reader holds no connection
    patient = await new_patient(client, admin)
    page = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 5
    assert seen(page["items"]) == [("patient", patient["id"], "create", 1)]


async def test_a_long_poll_with_nothing_new_answers_an_empty_page_when_time_is_up(
    client: AsyncClient, admin: Actor
) -> None:
    cursor = await tail(client, admin)
    started = time.monotonic()
    page = await read(client, admin, cursor, wait=0.4)
    assert time.monotonic() - started >= 0.4
    assert page == {"items": [], "next_cursor": cursor}


async def test_reading_the_feed_is_audited_per_patient_shown(
    client: AsyncClient, admin: Actor
) -> None:
    cursor = await tail(client, admin)
    patient = await new_patient(client, admin)
    await follow(client, admin, cursor)
    trail = await client.get(
        "/v1/audit-events", params={"patient_id": patient["id"]}, headers=admin.headers
    )
    assert trail.status_code == 200, trail.text
    assert [(e["action"], e["resource_type"]) for e in trail.json()["items"]].count(
        ("list", "change")
    ) == 1
