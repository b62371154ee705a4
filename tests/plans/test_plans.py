"""Patients' plans: prescribing, versions, If-Match, status rules, scoping and the outbox."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth.principal import Caller
from app.core.db import transaction
from app.plans import service as plans_service
from app.plans.models import Plan
from app.sync.models import Change
from app.sync.outbox import record_change
from tests.conftest import Actor, World, make_client
from tests.core.problems import assert_problem
from tests.plans import (
    GLOBAL_TEMPLATE_ID,
    active_plan,
    as_input,
    changed_plan,
    exercise_id,
    item,
    local_today,
    new_patient,
    new_plan,
    patch_plan,
    post_plan,
    version_tag,
)


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


@pytest.fixture
async def patient(client: AsyncClient, clinician: Actor) -> dict[str, Any]:
    """A new patient of clinic 1, right side affected, in America/Chicago."""
    return await new_patient(client, clinician)


def pointers(response: Response) -> list[str]:
    problem = assert_problem(response, 422, "validation")
    return [error["pointer"] for error in problem["errors"]]


async def changes(app: FastAPI, plan_id: object) -> list[Change]:
    """The outbox rows written for a plan, oldest first."""
    async with transaction(app.state.engine) as session:
        found = await session.exec(
            select(Change)
            .where(Change.resource_type == "plan", Change.resource_id == str(plan_id))
            .order_by(col(Change.id))
        )
        return list(found.all())


async def recorded(app: FastAPI, plan_id: object) -> list[tuple[str, int | None]]:
    return [(change.operation, change.version) for change in await changes(app, plan_id)]


LoadPlan = Callable[[AsyncSession, Caller, uuid.UUID], Awaitable[Plan]]


def loading_together(parties: int) -> LoadPlan:
    """`load_plan` that lets the plan's ETag be checked only once ``parties`` requests
    have read their plan: the race that a real pair of clinicians (or server processes)
    meets when they click at once. Routes share one event loop, so the wait is a
    coroutine's, not a thread's."""
    barrier = asyncio.Barrier(parties)
    load = plans_service.load_plan

    async def load_together(session: AsyncSession, caller: Caller, plan_id: uuid.UUID) -> Plan:
        plan = await load(session, caller, plan_id)
        async with asyncio.timeout(10):
            await barrier.wait()
        return plan

    return load_together


async def get_plan(client: AsyncClient, actor: Actor, plan_id: object) -> dict[str, Any]:
    response = await client.get(f"/v1/plans/{plan_id}", headers=actor.headers)
    assert response.status_code == 200, response.text
    plan: dict[str, Any] = response.json()
    return plan


async def versions(client: AsyncClient, actor: Actor, plan_id: object) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/plans/{plan_id}/versions", headers=actor.headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    listed: list[dict[str, Any]] = page["items"]
    return listed


def content(entry: dict[str, Any]) -> dict[str, Any]:
    """An item without what a copy renews (its id) or fills in (its side)."""
    return {k: v for k, v in entry.items() if k not in ("id", "side")}


# --- prescribing --------------------------------------------------------------------------


async def test_a_plan_from_the_template_is_a_draft_with_copied_items(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    response = await post_plan(client, clinician, patient["id"], template_id=GLOBAL_TEMPLATE_ID)
    assert response.status_code == 201, response.text
    plan = response.json()
    assert response.headers["location"] == f"/v1/plans/{plan['id']}"
    assert version_tag(response.headers["etag"]) == f'"{plan["id"]}-1"'
    assert plan["patient_id"] == patient["id"]
    assert plan["template_id"] == GLOBAL_TEMPLATE_ID
    assert (plan["status"], plan["version"]) == ("draft", 1)
    assert (plan["title"], plan["notes"], plan["end_date"]) == (
        "Foot drop home program",
        None,
        None,
    )
    assert plan["start_date"] == local_today(patient["time_zone"]).isoformat()

    template = (
        await client.get(f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=clinician.headers)
    ).json()
    assert [content(i) for i in plan["items"]] == [content(i) for i in template["items"]]
    # New ids, one per item; the side is the patient's affected side.
    plan_ids = [i["id"] for i in plan["items"]]
    assert len(set(plan_ids)) == 7
    assert not set(plan_ids) & {i["id"] for i in template["items"]}
    assert {i["side"] for i in plan["items"]} == {"right"}
    assert await get_plan(client, clinician, plan["id"]) == plan


async def test_later_template_edits_do_not_change_the_plan(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    made = await client.post(
        "/v1/plan-templates",
        json={"name": "Ours", "items": [item(side="left", reps=8), item("ankle-eversion")]},
        headers=clinician.headers,
    )
    assert made.status_code == 201, made.text
    template = made.json()
    location = f"/v1/plan-templates/{template['id']}"
    try:
        plan, _ = await new_plan(client, clinician, patient["id"], template_id=template["id"])
        assert plan["title"] == "Ours"
        # A side the template names is kept; a missing one is the patient's.
        assert [i["side"] for i in plan["items"]] == ["left", "right"]
        edited = await client.patch(
            location,
            json={"name": "Ours, revised", "items": [item("hip-rotation", sets=5)]},
            headers=clinician.headers,
        )
        assert edited.status_code == 200, edited.text
        assert await get_plan(client, clinician, plan["id"]) == plan
        assert (await client.delete(location, headers=clinician.headers)).status_code == 204
        assert await get_plan(client, clinician, plan["id"]) == plan
    finally:
        await client.delete(location, headers=clinician.headers)


async def test_a_plan_from_its_own_items(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    items = [
        item(sets=3, reps=10, rest_seconds=60, resistance="yellow", notes="Slowly.", side="left"),
        item("hip-rotation", hold_seconds=5, schedule={"sessions_per_week": 2, "times_per_day": 2}),
    ]
    plan, etag = await new_plan(
        client,
        clinician,
        patient["id"],
        items=items,
        title="After discharge",
        notes="Review in four weeks.",
        start_date="2030-03-01",
        end_date="2030-03-29",
    )
    assert version_tag(etag) == f'"{plan["id"]}-1"'
    assert plan["template_id"] is None
    assert (plan["status"], plan["version"]) == ("draft", 1)
    assert (plan["title"], plan["notes"]) == ("After discharge", "Review in four weeks.")
    assert (plan["start_date"], plan["end_date"]) == ("2030-03-01", "2030-03-29")
    first, second = plan["items"]
    assert first["exercise"] == {
        "id": exercise_id("ankle-dorsiflexion"),
        "slug": "ankle-dorsiflexion",
        "name": "Ankle dorsiflexion with a band or towel",
    }
    assert (first["sets"], first["reps"], first["hold_seconds"], first["rest_seconds"]) == (
        3,
        10,
        None,
        60,
    )
    assert (first["side"], first["resistance"], first["notes"]) == ("left", "yellow", "Slowly.")
    assert first["schedule"] == {
        "days_of_week": [1, 3, 5],
        "sessions_per_week": None,
        "times_per_day": 1,
    }
    assert (second["order"], second["side"], second["hold_seconds"]) == (2, "right", 5)
    assert second["schedule"] == {"days_of_week": None, "sessions_per_week": 2, "times_per_day": 2}
    assert uuid.UUID(first["id"]) != uuid.UUID(second["id"])


async def test_template_and_items_together_are_refused(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    both = await post_plan(
        client, clinician, patient["id"], template_id=GLOBAL_TEMPLATE_ID, items=[item()]
    )
    assert pointers(both) == ["#/items"]
    unknown = await post_plan(client, clinician, patient["id"], template_id=str(uuid.uuid4()))
    assert_problem(unknown, 404, "not-found")
    listed = await client.get(f"/v1/patients/{patient['id']}/plans", headers=clinician.headers)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("entry", "pointer"),
    [
        (item(exercise_id=str(uuid.uuid4())), "#/items/0/exercise_id"),
        (item(schedule={"days_of_week": [1], "sessions_per_week": 2}), "#/items/0/schedule"),
        (item(schedule={"days_of_week": [8]}), "#/items/0/schedule/days_of_week/0"),
        (item(sets=21), "#/items/0/sets"),
        (item(reps=0), "#/items/0/reps"),
        (item(hold_seconds=601), "#/items/0/hold_seconds"),
    ],
)
async def test_invalid_items_are_422_on_create_and_update(
    client: AsyncClient,
    clinician: Actor,
    patient: dict[str, Any],
    entry: dict[str, Any],
    pointer: str,
) -> None:
    assert pointers(await post_plan(client, clinician, patient["id"], items=[entry])) == [pointer]
    plan, etag = await new_plan(client, clinician, patient["id"])
    assert pointers(await patch_plan(client, clinician, plan["id"], etag, items=[entry])) == [
        pointer
    ]
    assert await get_plan(client, clinician, plan["id"]) == plan


async def test_an_end_date_before_the_start_date_is_422(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    refused = await post_plan(
        client,
        clinician,
        patient["id"],
        items=[item()],
        start_date="2030-01-10",
        end_date="2030-01-09",
    )
    assert pointers(refused) == ["#/end_date"]
    plan, etag = await new_plan(
        client, clinician, patient["id"], start_date="2030-01-10", end_date="2030-01-10"
    )
    early = await patch_plan(client, clinician, plan["id"], etag, end_date="2030-01-01")
    assert pointers(early) == ["#/end_date"]
    late_start = await patch_plan(client, clinician, plan["id"], etag, start_date="2030-02-01")
    assert pointers(late_start) == ["#/end_date"]
    assert await get_plan(client, clinician, plan["id"]) == plan


# --- versions and If-Match ----------------------------------------------------------------


async def test_a_change_needs_the_current_etag(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    plan, etag = await new_plan(client, clinician, patient["id"])
    missing = await patch_plan(client, clinician, plan["id"], None, title="No If-Match")
    assert_problem(missing, 428, "precondition-required")
    stale = await patch_plan(client, clinician, plan["id"], f'"{plan["id"]}-7"', title="Stale")
    assert_problem(stale, 412, "precondition-failed")
    # If-Match compares strongly: the weak form of the current ETag does not match.
    weak = await patch_plan(client, clinician, plan["id"], f"W/{etag}", title="Weak")
    assert_problem(weak, 412, "precondition-failed")
    assert await get_plan(client, clinician, plan["id"]) == plan
    listed = await patch_plan(client, clinician, plan["id"], f'"other", {etag}', title="Listed")
    assert listed.status_code == 200, listed.text
    plan, etag = listed.json(), listed.headers["etag"]
    changed, new_etag = await changed_plan(client, clinician, plan["id"], etag, title="Current")
    assert changed["title"] == "Current"
    assert new_etag != etag
    # The old ETag is stale now.
    again = await patch_plan(client, clinician, plan["id"], etag, title="Old")
    assert_problem(again, 412, "precondition-failed")


async def test_each_change_is_a_new_version_and_old_ones_stay_as_they_were(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    v1, etag1 = await new_plan(
        client, clinician, patient["id"], title="First", items=[item(reps=8)]
    )
    v2, etag2 = await changed_plan(client, clinician, v1["id"], etag1, title="Second")
    v3, etag3 = await changed_plan(
        client,
        clinician,
        v1["id"],
        etag2,
        status="active",
        items=[as_input(v2["items"][0], reps=12)],
    )
    assert [v["version"] for v in (v1, v2, v3)] == [1, 2, 3]
    assert [etag1, etag2, etag3] == [f'"{v1["id"]}-{n}"' for n in (1, 2, 3)]
    current = await client.get(f"/v1/plans/{v1['id']}", headers=clinician.headers)
    assert current.headers["etag"] == etag3
    unchanged = await client.get(
        f"/v1/plans/{v1['id']}", headers={**clinician.headers, "If-None-Match": etag3}
    )
    assert unchanged.status_code == 304

    listed = await versions(client, clinician, v1["id"])
    assert [v["number"] for v in listed] == [1, 2, 3]
    assert [v["status"] for v in listed] == ["draft", "draft", "active"]
    assert [v["title"] for v in listed] == ["First", "Second", "Second"]
    assert [v["items"][0]["reps"] for v in listed] == [8, 8, 12]
    assert {v["plan_id"] for v in listed} == {v1["id"]}
    assert {v["created_by"] for v in listed} == {str(clinician.id)}
    for plan, version in zip((v1, v2, v3), listed, strict=True):
        assert version["items"] == plan["items"]
        assert (version["start_date"], version["end_date"]) == (plan["start_date"], None)
    for number in (1, 2, 3):
        one = await client.get(f"/v1/plans/{v1['id']}/versions/{number}", headers=clinician.headers)
        assert one.status_code == 200
        assert one.json() == listed[number - 1]
    for number in (0, 4, 2**31):
        missing = await client.get(
            f"/v1/plans/{v1['id']}/versions/{number}", headers=clinician.headers
        )
        assert_problem(missing, 404, "not-found")


async def test_a_patch_that_changes_nothing_makes_no_version(
    app: FastAPI, client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    plan, etag = await new_plan(client, clinician, patient["id"], title="Same")
    same, same_etag = await changed_plan(client, clinician, plan["id"], etag, title="Same")
    assert (same["version"], same_etag) == (1, etag)
    assert len(await versions(client, clinician, plan["id"])) == 1
    assert await recorded(app, plan["id"]) == [("create", 1)]


async def test_items_keep_their_ids_across_versions(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    plan, etag = await new_plan(
        client, clinician, patient["id"], items=[item(reps=5), item("ankle-eversion", reps=10)]
    )
    first, second = plan["items"]
    kept = as_input(second)
    changed, etag = await changed_plan(
        client, clinician, plan["id"], etag, items=[as_input(second, reps=15), item("hip-rotation")]
    )
    moved, added = changed["items"]
    assert moved["id"] == second["id"]
    assert (moved["order"], moved["reps"]) == (1, 15)
    assert added["id"] not in (first["id"], second["id"])
    original = await client.get(f"/v1/plans/{plan['id']}/versions/1", headers=clinician.headers)
    assert original.json()["items"] == plan["items"]

    for unknown in (str(uuid.uuid4()), first["id"]):  # never in the plan, or no longer in it
        refused = await patch_plan(
            client, clinician, plan["id"], etag, items=[item(id=unknown), kept]
        )
        assert pointers(refused) == ["#/items/0/id"]
    twice = await patch_plan(client, clinician, plan["id"], etag, items=[kept, kept])
    assert pointers(twice) == ["#/items"]
    assert await get_plan(client, clinician, plan["id"]) == changed


# --- status -------------------------------------------------------------------------------


async def test_a_plan_is_activated_paused_resumed_and_completed(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    plan, etag = await new_plan(client, clinician, patient["id"])
    for status in ("active", "paused", "active", "completed"):
        plan, etag = await changed_plan(client, clinician, plan["id"], etag, status=status)
        assert plan["status"] == status
    assert plan["version"] == 5


@pytest.mark.parametrize("final", ["completed", "cancelled"])
async def test_completed_and_cancelled_are_final(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any], final: str
) -> None:
    plan, etag = await active_plan(client, clinician, patient["id"])
    plan, etag = await changed_plan(client, clinician, plan["id"], etag, status=final)
    for change in (
        {"status": "active"},
        {"status": "paused"},
        {"status": "draft"},
        {"title": "Renamed"},
        {"items": [item("hip-rotation")]},
    ):
        refused = await patch_plan(client, clinician, plan["id"], etag, **change)
        assert_problem(refused, 409, "conflict")
    assert await get_plan(client, clinician, plan["id"]) == plan


@pytest.mark.parametrize("target", ["completed", "paused"])
async def test_a_draft_can_only_be_activated_or_cancelled(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any], target: str
) -> None:
    plan, etag = await new_plan(client, clinician, patient["id"])
    refused = await patch_plan(client, clinician, plan["id"], etag, status=target)
    assert_problem(refused, 409, "conflict")
    cancelled, _ = await changed_plan(client, clinician, plan["id"], etag, status="cancelled")
    assert cancelled["status"] == "cancelled"


async def test_a_plan_without_items_cannot_be_activated(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    empty, etag = await new_plan(client, clinician, patient["id"], items=[])
    assert empty["items"] == []
    refused = await patch_plan(client, clinician, empty["id"], etag, status="active")
    assert_problem(refused, 409, "conflict")
    # Nor can an active plan lose all its items.
    plan, etag = await active_plan(client, clinician, patient["id"])
    emptied = await patch_plan(client, clinician, plan["id"], etag, items=[])
    assert_problem(emptied, 409, "conflict")
    assert await get_plan(client, clinician, plan["id"]) == plan


async def test_a_patient_has_at_most_one_active_plan(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    first, first_etag = await active_plan(client, clinician, patient["id"])
    second, second_etag = await new_plan(client, clinician, patient["id"])
    refused = await patch_plan(client, clinician, second["id"], second_etag, status="active")
    assert_problem(refused, 409, "conflict")
    assert (await get_plan(client, clinician, second["id"]))["status"] == "draft"
    # Another patient's active plan is no obstacle.
    other = await new_patient(client, clinician)
    await active_plan(client, clinician, other["id"])

    first, first_etag = await changed_plan(
        client, clinician, first["id"], first_etag, status="paused"
    )
    second, second_etag = await changed_plan(
        client, clinician, second["id"], second_etag, status="active"
    )
    resumed = await patch_plan(client, clinician, first["id"], first_etag, status="active")
    assert_problem(resumed, 409, "conflict")
    active = await client.get(
        f"/v1/patients/{patient['id']}/plans",
        params={"status": "active"},
        headers=clinician.headers,
    )
    assert [p["id"] for p in active.json()["items"]] == [second["id"]]


# --- concurrent writers -------------------------------------------------------------------


async def test_the_second_patch_with_the_same_etag_is_412(
    app: FastAPI, client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    plan, etag = await new_plan(client, clinician, patient["id"])
    winner = await patch_plan(client, clinician, plan["id"], etag, title="Mine")
    loser = await patch_plan(client, clinician, plan["id"], etag, title="Theirs")
    assert winner.status_code == 200
    assert_problem(loser, 412, "precondition-failed")
    assert (await get_plan(client, clinician, plan["id"]))["title"] == "Mine"
    assert await recorded(app, plan["id"]) == [("create", 1), ("update", 2)]


async def test_two_concurrent_patches_with_the_same_etag_one_wins_the_other_is_412(
    app: FastAPI,
    clinician: Actor,
    patient: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite runs write transactions one at a time: this race cannot happen")
    async with make_client(app, raise_app_exceptions=False) as client:
        plan, etag = await new_plan(client, clinician, patient["id"])
        # Both requests get past the If-Match check before either writes.
        monkeypatch.setattr("app.plans.service.load_plan", loading_together(2))
        answers = await asyncio.gather(
            patch_plan(client, clinician, plan["id"], etag, title="Mine"),
            patch_plan(client, clinician, plan["id"], etag, title="Theirs"),
        )
        monkeypatch.undo()
        by_status = {answer.status_code: answer for answer in answers}
        assert sorted(by_status) == [200, 412], [a.text for a in answers]
        assert_problem(by_status[412], 412, "precondition-failed")
        winner = by_status[200].json()
        assert await get_plan(client, clinician, plan["id"]) == winner
        assert len(await versions(client, clinician, plan["id"])) == 2
    assert await recorded(app, plan["id"]) == [("create", 1), ("update", 2)]


async def test_two_racing_activations_leave_one_active_plan(
    app: FastAPI,
    clinician: Actor,
    patient: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite runs write transactions one at a time: this race cannot happen")
    async with make_client(app, raise_app_exceptions=False) as client:
        drafts = [await new_plan(client, clinician, patient["id"]) for _ in range(2)]
        monkeypatch.setattr("app.plans.service.load_plan", loading_together(2))
        answers = await asyncio.gather(
            *(patch_plan(client, clinician, p["id"], etag, status="active") for p, etag in drafts)
        )
        monkeypatch.undo()
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        active = await client.get(
            f"/v1/patients/{patient['id']}/plans",
            params={"status": "active"},
            headers=clinician.headers,
        )
        assert len(active.json()["items"]) == 1
    outbox = [await recorded(app, p["id"]) for p, _ in drafts]
    assert sorted(outbox) == [[("create", 1)], [("create", 1), ("update", 2)]]


# --- lists and scoping --------------------------------------------------------------------


async def test_a_patients_plans_are_listed_newest_first_by_cursor_and_status(
    client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    made = [(await new_plan(client, clinician, patient["id"]))[0] for _ in range(3)]
    oldest, middle, newest = made
    await active_plan(client, clinician, patient["id"], template_id=GLOBAL_TEMPLATE_ID)
    active = (
        await client.get(f"/v1/patients/{patient['id']}/plans", headers=clinician.headers)
    ).json()["items"][0]
    path = f"/v1/patients/{patient['id']}/plans"

    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 3}
    while True:
        page = (await client.get(path, params=params, headers=clinician.headers)).json()
        assert len(page["items"]) <= 3
        seen += [p["id"] for p in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [active["id"], newest["id"], middle["id"], oldest["id"]]

    drafts = await client.get(
        path, params={"status": "draft", "limit": 2}, headers=clinician.headers
    )
    assert [p["id"] for p in drafts.json()["items"]] == [newest["id"], middle["id"]]
    rest = await client.get(
        path,
        params={"status": "draft", "cursor": drafts.json()["next_cursor"]},
        headers=clinician.headers,
    )
    assert [p["id"] for p in rest.json()["items"]] == [oldest["id"]]
    assert rest.json()["next_cursor"] is None
    only_active = await client.get(path, params={"status": "active"}, headers=clinician.headers)
    assert only_active.json()["items"] == [active]
    none = await client.get(path, params={"status": "completed"}, headers=clinician.headers)
    assert none.json() == {"items": [], "next_cursor": None}

    wrong_status = await client.get(path, params={"status": "done"}, headers=clinician.headers)
    assert pointers(wrong_status) == ["#/status"]
    wrong_cursor = await client.get(path, params={"cursor": "nonsense"}, headers=clinician.headers)
    assert pointers(wrong_cursor) == ["#/cursor"]


async def test_another_clinics_plan_is_404(
    client: AsyncClient, world: World, clinician: Actor, patient: dict[str, Any]
) -> None:
    plan, etag = await new_plan(client, clinician, patient["id"])
    other = world["clinician2"].headers
    for path in (
        f"/v1/plans/{plan['id']}",
        f"/v1/plans/{plan['id']}/versions",
        f"/v1/plans/{plan['id']}/versions/1",
        f"/v1/patients/{patient['id']}/plans",
    ):
        assert_problem(await client.get(path, headers=other), 404, "not-found")
    patched = await patch_plan(client, world["clinician2"], plan["id"], etag, title="Theirs")
    assert_problem(patched, 404, "not-found")
    posted = await post_plan(client, world["clinician2"], patient["id"], items=[item()])
    assert_problem(posted, 404, "not-found")
    # Inside clinic 1, a clinic system with the plan scopes reads it like a clinician.
    assert await get_plan(client, world["client_all"], plan["id"]) == plan
    assert await get_plan(client, clinician, plan["id"]) == plan


@pytest.mark.parametrize(("name", "status"), [("patient_a", 403), ("anonymous", 401)])
async def test_only_staff_reach_plans(
    client: AsyncClient,
    world: World,
    clinician: Actor,
    patient: dict[str, Any],
    name: str,
    status: int,
) -> None:
    plan, etag = await new_plan(client, clinician, patient["id"])
    headers = world[name].headers
    assert (await client.get(f"/v1/plans/{plan['id']}", headers=headers)).status_code == status
    patched = await client.patch(
        f"/v1/plans/{plan['id']}", json={"title": "x"}, headers={**headers, "If-Match": etag}
    )
    assert patched.status_code == status
    posted = await post_plan(client, world[name], world.patient_a, items=[item()])
    assert posted.status_code == status
    assert await get_plan(client, clinician, plan["id"]) == plan


# --- the outbox ---------------------------------------------------------------------------


async def test_every_create_and_update_writes_one_outbox_row(
    app: FastAPI, world: World, client: AsyncClient, clinician: Actor, patient: dict[str, Any]
) -> None:
    plan, etag = await new_plan(client, clinician, patient["id"])
    assert await recorded(app, plan["id"]) == [("create", 1)]
    plan, etag = await changed_plan(client, clinician, plan["id"], etag, title="Renamed")
    plan, etag = await changed_plan(client, clinician, plan["id"], etag, status="active")
    assert await recorded(app, plan["id"]) == [("create", 1), ("update", 2), ("update", 3)]
    rows = await changes(app, plan["id"])
    assert {row.clinic_id for row in rows} == {world.clinic1}

    other, other_etag = await new_plan(client, clinician, patient["id"])
    failures = [
        await patch_plan(client, clinician, plan["id"], None, title="No If-Match"),
        await patch_plan(client, clinician, plan["id"], '"stale"', title="Stale"),
        await patch_plan(client, clinician, plan["id"], etag, status="draft"),
        await patch_plan(client, clinician, plan["id"], etag, end_date="2000-01-01"),
        await patch_plan(client, clinician, other["id"], other_etag, status="active"),
    ]
    assert [f.status_code for f in failures] == [428, 412, 409, 422, 409]
    assert await recorded(app, plan["id"]) == [("create", 1), ("update", 2), ("update", 3)]
    assert await recorded(app, other["id"]) == [("create", 1)]
    # Ids grow in the order the writes committed, across the clinic's plans.
    ids = [row.id or 0 for row in [*rows, *await changes(app, other["id"])]]
    assert ids == sorted(set(ids))


async def test_change_ids_follow_commit_order_when_writers_overlap(
    app: FastAPI,
    clinician: Actor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer that draws its change id and is slow to commit must not be overtaken by a
    later one of the same clinic: a reader already past the later id would skip it."""
    async with make_client(app, raise_app_exceptions=False) as client:
        patients = [await new_patient(client, clinician) for _ in range(2)]
        slow_drew, release = asyncio.Event(), asyncio.Event()
        calls = 0

        async def slow_first(session: AsyncSession, *args: Any, **kwargs: Any) -> None:
            nonlocal calls
            await record_change(session, *args, **kwargs)
            calls += 1
            if calls == 1:
                await session.flush()  # its change id is drawn now; the commit comes later
                slow_drew.set()
                async with asyncio.timeout(10):
                    await release.wait()

        monkeypatch.setattr("app.plans.service.record_change", slow_first)
        slow = asyncio.create_task(post_plan(client, clinician, patients[0]["id"], items=[item()]))
        async with asyncio.timeout(10):
            await slow_drew.wait()
        fast = asyncio.create_task(post_plan(client, clinician, patients[1]["id"], items=[item()]))
        await asyncio.sleep(0.5)
        fast_committed_first = fast.done()
        release.set()
        answers = [await slow, await fast]
        monkeypatch.undo()
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    (slow_change,) = await changes(app, answers[0].json()["id"])
    (fast_change,) = await changes(app, answers[1].json()["id"])
    slow_id, fast_id = slow_change.id or 0, fast_change.id or 0
    # Whichever committed first must have the smaller id (with the clinic's lock, the
    # later writer waits, so that is the slow one).
    assert (fast_id < slow_id) if fast_committed_first else (slow_id < fast_id)


@pytest.mark.parametrize("step", ["create", "update"])
async def test_a_write_whose_outbox_row_fails_leaves_nothing_behind(
    app: FastAPI,
    clinician: Actor,
    patient: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    """The plan and its change are one transaction: the feed never disagrees with the data."""
    async with make_client(app, raise_app_exceptions=False) as client:
        plan, etag = await new_plan(client, clinician, patient["id"])

        async def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("the outbox is unavailable")

        monkeypatch.setattr("app.plans.service.record_change", broken)
        if step == "create":
            failed = await post_plan(client, clinician, patient["id"], items=[item()])
        else:
            failed = await patch_plan(client, clinician, plan["id"], etag, status="active")
        monkeypatch.undo()
        assert_problem(failed, 500, "internal")
        listed = await client.get(f"/v1/patients/{patient['id']}/plans", headers=clinician.headers)
        assert listed.json()["items"] == [plan]
        assert len(await versions(client, clinician, plan["id"])) == 1
    assert await recorded(app, plan["id"]) == [("create", 1)]
