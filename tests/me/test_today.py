"""The patient app's own view: who I am, my plan, and what is due today where I am."""

from datetime import date, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import Actor, World
from tests.core.problems import assert_problem
from tests.plans import (
    EVERY_DAY,
    active_plan,
    changed_plan,
    item,
    local_today,
    new_patient,
    new_plan,
    paired_headers,
)

ME_PATHS = ("/v1/me", "/v1/me/plan", "/v1/me/today")


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


async def patient_with_app(
    client: AsyncClient, clinician: Actor, **fields: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """A new patient of clinic 1, and the headers of the app they paired."""
    patient = await new_patient(client, clinician, **fields)
    return patient, await paired_headers(client, clinician, patient["id"])


async def today(client: AsyncClient, headers: dict[str, str], time_zone: str) -> dict[str, Any]:
    """GET /v1/me/today; its date must be the patient's local date when it was asked."""
    before = local_today(time_zone)
    response = await client.get("/v1/me/today", headers=headers)
    after = local_today(time_zone)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["date"] in (before.isoformat(), after.isoformat())
    assert body["time_zone"] == time_zone
    return body


def weekday(day: str) -> int:
    return date.fromisoformat(day).isoweekday()


def due_ids(body: dict[str, Any]) -> list[str]:
    return [entry["item_id"] for entry in body["items"]]


# --- who I am and my plan -----------------------------------------------------------------


async def test_me_is_the_paired_patient(client: AsyncClient, clinician: Actor) -> None:
    patient, app = await patient_with_app(
        client, clinician, affected_side="left", time_zone="Europe/Berlin"
    )
    before = local_today("Europe/Berlin")
    response = await client.get("/v1/me", headers=app)
    after = local_today("Europe/Berlin")
    assert response.status_code == 200, response.text
    me = response.json()
    assert me.pop("today") in (before.isoformat(), after.isoformat())
    assert me == {"id": patient["id"], "affected_side": "left", "time_zone": "Europe/Berlin"}


async def test_my_plan_is_the_active_plan(client: AsyncClient, clinician: Actor) -> None:
    patient, app = await patient_with_app(client, clinician)
    assert_problem(await client.get("/v1/me/plan", headers=app), 404, "not-found")
    draft, etag = await new_plan(client, clinician, patient["id"])
    assert_problem(await client.get("/v1/me/plan", headers=app), 404, "not-found")

    plan, etag = await changed_plan(client, clinician, draft["id"], etag, status="active")
    mine = await client.get("/v1/me/plan", headers=app)
    assert mine.status_code == 200, mine.text
    assert mine.json() == plan
    plan, etag = await changed_plan(
        client, clinician, plan["id"], etag, items=[item("hip-rotation", reps=6)]
    )
    assert (await client.get("/v1/me/plan", headers=app)).json() == plan

    await changed_plan(client, clinician, plan["id"], etag, status="paused")
    assert_problem(await client.get("/v1/me/plan", headers=app), 404, "not-found")


# --- what is due today --------------------------------------------------------------------


async def test_today_lists_scheduled_and_flexible_items_with_steps_and_dose(
    client: AsyncClient, clinician: Actor
) -> None:
    zone = "America/Chicago"
    patient, app = await patient_with_app(client, clinician, time_zone=zone)
    day = local_today(zone).isoweekday()
    other_days = [d for d in EVERY_DAY if d != day]
    plan, _ = await active_plan(
        client,
        clinician,
        patient["id"],
        items=[
            item(
                sets=3,
                reps=10,
                rest_seconds=30,
                resistance="red",
                notes="Toes toward you.",
                schedule={"days_of_week": [day], "times_per_day": 2},
            ),
            item("hip-rotation", hold_seconds=5, side="left", schedule={"sessions_per_week": 3}),
            item("ankle-eversion", reps=10, schedule={"days_of_week": other_days}),
            item("assisted-heel-raises", reps=10, schedule={"days_of_week": EVERY_DAY}),
        ],
    )
    body = await today(client, app, zone)
    assert (body["plan_id"], body["plan_version"]) == (plan["id"], 2)
    on_day = [0, 1, 3] if weekday(body["date"]) == day else [1, 2, 3]
    expected = [plan["items"][n] for n in on_day]
    assert due_ids(body) == [entry["id"] for entry in expected]

    for due, entry in zip(body["items"], expected, strict=True):
        slug = entry["exercise"]["slug"]
        exercise = (await client.get(f"/v1/exercises/{slug}", headers=clinician.headers)).json()
        assert due["exercise"] == {
            "id": exercise["id"],
            "slug": slug,
            "name": exercise["name"],
            "steps": exercise["steps"],
        }
        assert due["exercise"]["steps"]
        for field in (
            "sets",
            "reps",
            "hold_seconds",
            "rest_seconds",
            "side",
            "resistance",
            "notes",
        ):
            assert due[field] == entry[field], field
        assert due["order"] == entry["order"]
        assert due["times_per_day"] == entry["schedule"]["times_per_day"]
        assert due["sessions_per_week"] == entry["schedule"]["sessions_per_week"]
        assert due["due"] == ("flexible" if slug == "hip-rotation" else "scheduled")
        assert due["recorded"] == []
    if weekday(body["date"]) == day:
        dorsiflexion = body["items"][0]
        assert (dorsiflexion["sets"], dorsiflexion["reps"], dorsiflexion["times_per_day"]) == (
            3,
            10,
            2,
        )
        assert (dorsiflexion["resistance"], dorsiflexion["side"]) == ("red", "right")


@pytest.mark.parametrize(
    "zones",
    [
        ("Pacific/Auckland", "Pacific/Honolulu"),
        # 25 hours apart: never on the same date, and at least one is never on UTC's.
        ("Pacific/Kiritimati", "Pacific/Pago_Pago"),
    ],
)
async def test_today_is_the_patients_own_day(
    client: AsyncClient, clinician: Actor, zones: tuple[str, str]
) -> None:
    """Each patient's item is scheduled only on the weekday that is today where they are."""
    people = []
    for zone in zones:
        patient, app = await patient_with_app(client, clinician, time_zone=zone)
        day = local_today(zone).isoweekday()
        plan, etag = await active_plan(
            client, clinician, patient["id"], items=[item(schedule={"days_of_week": [day]})]
        )
        people.append((zone, app, day, plan, etag))

    for zone, app, day, plan, _ in people:
        me = (await client.get("/v1/me", headers=app)).json()
        body = await today(client, app, zone)
        assert me["today"] == body["date"]
        assert body["plan_id"] == plan["id"]
        # Seen today, unless midnight passed where the patient is since the plan was made.
        seen = weekday(body["date"]) == day
        assert due_ids(body) == ([plan["items"][0]["id"]] if seen else [])
        if seen:
            assert body["items"][0]["due"] == "scheduled"

    for zone, app, day, plan, etag in people:
        others = [d for d in EVERY_DAY if d != day]
        entry = {k: v for k, v in plan["items"][0].items() if k not in ("order", "exercise")}
        await changed_plan(
            client,
            clinician,
            plan["id"],
            etag,
            items=[{**entry, "schedule": {"days_of_week": others}}],
        )
        body = await today(client, app, zone)
        assert body["plan_version"] == 3
        assert due_ids(body) == ([] if weekday(body["date"]) == day else [entry["id"]])


async def test_a_paused_plan_has_nothing_due(client: AsyncClient, clinician: Actor) -> None:
    patient, app = await patient_with_app(client, clinician)
    plan, etag = await active_plan(
        client, clinician, patient["id"], items=[item(schedule={"days_of_week": EVERY_DAY})]
    )
    assert due_ids(await today(client, app, patient["time_zone"])) == [plan["items"][0]["id"]]
    paused, etag = await changed_plan(client, clinician, plan["id"], etag, status="paused")
    assert paused["status"] == "paused"
    body = await today(client, app, patient["time_zone"])
    assert (body["plan_id"], body["plan_version"], body["items"]) == (None, None, [])
    await changed_plan(client, clinician, plan["id"], etag, status="active")
    assert due_ids(await today(client, app, patient["time_zone"])) == [plan["items"][0]["id"]]


@pytest.mark.parametrize("when", ["not started", "ended"])
async def test_a_plan_outside_its_dates_has_nothing_due(
    client: AsyncClient, clinician: Actor, when: str
) -> None:
    patient, app = await patient_with_app(client, clinician)
    local = local_today(patient["time_zone"])
    if when == "not started":
        dates = {"start_date": (local + timedelta(days=2)).isoformat()}
    else:
        dates = {
            "start_date": (local - timedelta(days=30)).isoformat(),
            "end_date": (local - timedelta(days=2)).isoformat(),
        }
    plan, _ = await active_plan(
        client,
        clinician,
        patient["id"],
        items=[item(schedule={"sessions_per_week": 3})],
        **dates,
    )
    body = await today(client, app, patient["time_zone"])
    assert (body["plan_id"], body["items"]) == (plan["id"], [])


async def test_without_a_plan_nothing_is_due(client: AsyncClient, clinician: Actor) -> None:
    patient, app = await patient_with_app(client, clinician, time_zone="Asia/Kolkata")
    body = await today(client, app, patient["time_zone"])
    assert patient["time_zone"] == "Asia/Kolkata"
    assert (body["plan_id"], body["plan_version"], body["items"]) == (None, None, [])


# --- who may ask --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [("clinician1", 403), ("admin1", 403), ("client_all", 403), ("anonymous", 401)],
)
async def test_only_a_patients_app_has_a_me(
    client: AsyncClient, world: World, name: str, status: int
) -> None:
    for path in ME_PATHS:
        response = await client.get(path, headers=world[name].headers)
        assert_problem(response, status, "forbidden" if status == 403 else "unauthorized")


async def test_a_patient_sees_only_their_own_data(
    client: AsyncClient, world: World, clinician: Actor
) -> None:
    with_plan, with_plan_app = await patient_with_app(client, clinician)
    plan, _ = await active_plan(
        client, clinician, with_plan["id"], items=[item(schedule={"sessions_per_week": 2})]
    )
    without, without_app = await patient_with_app(client, clinician)

    assert (await client.get("/v1/me", headers=without_app)).json()["id"] == without["id"]
    assert_problem(await client.get("/v1/me/plan", headers=without_app), 404, "not-found")
    body = await today(client, without_app, without["time_zone"])
    assert (body["plan_id"], body["items"]) == (None, [])
    assert (await client.get("/v1/me/plan", headers=with_plan_app)).json()["id"] == plan["id"]
    assert due_ids(await today(client, with_plan_app, with_plan["time_zone"])) == [
        plan["items"][0]["id"]
    ]
    # Another clinic's patient is just as much on their own.
    other_clinic = (await client.get("/v1/me", headers=world["patient_c"].headers)).json()
    assert other_clinic["id"] == str(world.patient_c)

    # The clinic's routes are closed to patient tokens, for others' data and their own.
    for path in (
        f"/v1/plans/{plan['id']}",
        f"/v1/plans/{plan['id']}/versions",
        f"/v1/patients/{with_plan['id']}/plans",
        f"/v1/patients/{with_plan['id']}",
        f"/v1/patients/{without['id']}/plans",
        "/v1/patients",
    ):
        assert_problem(await client.get(path, headers=without_app), 403, "forbidden")
