"""The patient app's own view: who I am, my plan, and what is due today where I am."""

import asyncio
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from unittest.mock import ANY
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient

from app.core.config import Settings
from app.main import create_app, dispose_engines
from app.me.today import ExerciseCache, TodayBatcher
from tests.conftest import Actor, World, make_client
from tests.core.problems import assert_problem
from tests.plans import (
    EVERY_DAY,
    active_plan,
    as_input,
    changed_plan,
    item,
    local_today,
    new_patient,
    new_plan,
    paired_headers,
)

ME_PATHS = ("/v1/me", "/v1/me/plan", "/v1/me/today")
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/none"


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


def session_record(plan: dict[str, Any], index: int, **fields: Any) -> dict[str, Any]:
    """A completed session of the plan's item at ``index``, with a new id."""
    return {
        "id": str(uuid.uuid4()),
        "plan_id": plan["id"],
        "plan_version": plan["version"],
        "item_id": plan["items"][index]["id"],
        "status": "completed",
        "sets_done": 3,
        "reps_done": 10,
        **fields,
    }


async def upload(client: AsyncClient, app: dict[str, str], *records: dict[str, Any]) -> None:
    response = await client.post(
        "/v1/adherence/batch", headers=app, json={"records": list(records)}
    )
    assert response.status_code == 200, response.text
    assert [r["result"] for r in response.json()["results"]] == ["created"] * len(records)


def with_id(headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    request_id = f"today-{uuid.uuid4().hex}"
    return request_id, {**headers, "X-Request-ID": request_id}


async def today_events(client: AsyncClient, admin: Actor, patient_id: str) -> list[dict[str, Any]]:
    """The audit events of the patient's reads of today, as a clinic admin sees them."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"patient_id": patient_id, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/audit-events", params=query, headers=admin.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        found += [e for e in page["items"] if e["resource_type"] == "today"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


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


async def test_my_plan_has_the_plans_etag(client: AsyncClient, clinician: Actor) -> None:
    patient, app = await patient_with_app(client, clinician)
    plan, etag = await active_plan(client, clinician, patient["id"])

    mine = await client.get("/v1/me/plan", headers=app)
    assert mine.status_code == 200, mine.text
    assert mine.headers["etag"] == etag
    assert mine.headers["cache-control"] == "private, no-cache"
    unchanged = await client.get("/v1/me/plan", headers={**app, "If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.headers["etag"] == etag
    assert unchanged.content == b""

    plan, new_etag = await changed_plan(
        client, clinician, plan["id"], etag, items=[item("hip-rotation", reps=6)]
    )
    assert new_etag != etag
    changed = await client.get("/v1/me/plan", headers={**app, "If-None-Match": etag})
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == new_etag
    assert changed.json() == plan


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
        entry = as_input(plan["items"][0])
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


async def test_today_shows_what_was_recorded_today(client: AsyncClient, clinician: Actor) -> None:
    zone = "Asia/Kolkata"
    patient, app = await patient_with_app(client, clinician, time_zone=zone)
    plan, _ = await active_plan(
        client,
        clinician,
        patient["id"],
        items=[
            item(schedule={"days_of_week": EVERY_DAY}),
            item("hip-rotation", schedule={"sessions_per_week": 3}),
        ],
    )
    now = datetime.now(ZoneInfo(zone)).replace(microsecond=0).isoformat()
    done = [
        session_record(plan, 0, performed_at=now, pain=3),
        session_record(plan, 1, performed_at=now, status="skipped", skip_reason="pain", pain=6)
        | dict.fromkeys(("sets_done", "reps_done")),
    ]
    await upload(client, app, *done)

    body = await today(client, app, zone)
    recorded = {entry["item_id"]: entry["recorded"] for entry in body["items"]}
    assert recorded == {
        plan["items"][index]["id"]: [
            {
                "id": sent["id"],
                "status": sent["status"],
                "performed_at": now,  # with the offset it was recorded with
                "sets_done": sent["sets_done"],
                "reps_done": sent["reps_done"],
                "pain": sent["pain"],
            }
        ]
        for index, sent in enumerate(done)
    }


async def test_concurrent_requests_each_get_their_own_answer_and_audit_event(
    client: AsyncClient, world: World, clinician: Actor
) -> None:
    apps: list[tuple[str, str, dict[str, str]]] = []  # patient id, plan id, app headers
    for _ in range(3):
        patient, app = await patient_with_app(client, clinician)
        plan, _ = await active_plan(client, clinician, patient["id"])
        apps.append((patient["id"], plan["id"], app))
    calls = [
        (patient_id, plan_id, *with_id(app)) for patient_id, plan_id, app in apps for _ in range(8)
    ]

    responses = await asyncio.gather(
        *(client.get("/v1/me/today", headers=headers) for *_, headers in calls)
    )

    for (_, plan_id, request_id, _), response in zip(calls, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == request_id
        assert response.json()["plan_id"] == plan_id
    for patient_id, _, _ in apps:
        sent = sorted(request_id for p, _, request_id, _ in calls if p == patient_id)
        found = await today_events(client, world["admin1"], patient_id)
        assert sorted(e["request_id"] for e in found) == sent
        assert {(e["action"], e["actor_id"]) for e in found} == {("read", patient_id)}


async def test_requests_beyond_a_batchs_bound_are_answered_by_further_batches(
    client: AsyncClient, settings: Settings, world: World, clinician: Actor
) -> None:
    """With room for 3 requests a batch and 2 batches at a time, 20 requests at once all
    get their own answers and audit events."""
    patient, headers = await patient_with_app(client, clinician)
    plan, _ = await active_plan(client, clinician, patient["id"])
    app = create_app(settings)
    app.state.today = TodayBatcher(
        app.state.engine, ExerciseCache(10, 60), workers=2, gather=2, max_batch=3
    )
    calls = [with_id(headers) for _ in range(20)]
    try:
        async with make_client(app) as http:
            responses = await asyncio.wait_for(
                asyncio.gather(*(http.get("/v1/me/today", headers=h) for _, h in calls)),
                timeout=30,
            )
    finally:
        await dispose_engines(app)

    for (request_id, _), response in zip(calls, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == request_id
        assert response.json()["plan_id"] == plan["id"]
    found = await today_events(client, world["admin1"], patient["id"])
    assert sorted(e["request_id"] for e in found) == sorted(r for r, _ in calls)


async def test_requests_answered_together_each_get_their_own_verdict(
    client: AsyncClient, world: World, clinician: Actor
) -> None:
    """A revoked app's and a clinician's requests, among a valid app's, are refused (and
    not audited) while the valid app's are answered and audited."""
    valid, valid_app = await patient_with_app(client, clinician)
    plan, _ = await active_plan(client, clinician, valid["id"])
    revoked, revoked_app = await patient_with_app(client, clinician)
    await active_plan(client, clinician, revoked["id"])
    devices = await client.get(f"/v1/patients/{revoked['id']}/devices", headers=clinician.headers)
    for device in devices.json()["items"]:
        path = f"/v1/patients/{revoked['id']}/devices/{device['id']}"
        assert (await client.delete(path, headers=clinician.headers)).status_code == 204
    calls = [
        (who, *with_id(headers))
        for _ in range(4)
        for who, headers in (
            ("valid", valid_app),
            ("revoked", revoked_app),
            ("clinician", clinician.headers),
        )
    ]

    responses = await asyncio.gather(
        *(client.get("/v1/me/today", headers=headers) for *_, headers in calls)
    )

    for (who, request_id, _), response in zip(calls, responses, strict=True):
        assert response.headers["x-request-id"] == request_id
        if who == "valid":
            assert response.status_code == 200, response.text
            assert response.json()["plan_id"] == plan["id"]
        elif who == "revoked":
            assert_problem(response, 401, "unauthorized")
        else:
            assert_problem(response, 403, "forbidden")
    found = await today_events(client, world["admin1"], valid["id"])
    sent = sorted(request_id for who, request_id, _ in calls if who == "valid")
    assert sorted(e["request_id"] for e in found if e["request_id"] in sent) == sent
    assert await today_events(client, world["admin1"], revoked["id"]) == []


async def test_a_failed_batch_answers_each_of_its_requests_with_a_problem(
    settings: Settings, world: World
) -> None:
    """Requests whose batch cannot reach the database each answer 503 (try again), and
    the next requests are tried again rather than left waiting."""
    app = create_app(settings.model_copy(update={"database_url": UNREACHABLE_DATABASE}))
    calls = [with_id(world["patient_a"].headers) for _ in range(6)]
    try:
        async with make_client(app, raise_app_exceptions=False) as http:
            for _ in range(2):
                responses = await asyncio.wait_for(
                    asyncio.gather(
                        *(http.get("/v1/me/today", headers=headers) for _, headers in calls)
                    ),
                    timeout=30,
                )
                for (request_id, _), response in zip(calls, responses, strict=True):
                    assert_problem(response, 503, "database-unavailable")
                    assert response.headers["x-request-id"] == request_id
    finally:
        await dispose_engines(app)


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


async def test_a_revoked_app_is_refused_and_not_audited(
    client: AsyncClient, world: World, clinician: Actor
) -> None:
    patient, app = await patient_with_app(client, clinician)
    await active_plan(client, clinician, patient["id"])
    assert (await client.get("/v1/me/today", headers=app)).status_code == 200
    devices = await client.get(f"/v1/patients/{patient['id']}/devices", headers=clinician.headers)
    for device in devices.json()["items"]:
        path = f"/v1/patients/{patient['id']}/devices/{device['id']}"
        assert (await client.delete(path, headers=clinician.headers)).status_code == 204

    request_id, headers = with_id(app)
    for path in ME_PATHS:
        assert_problem(await client.get(path, headers=headers), 401, "unauthorized")
    found = await today_events(client, world["admin1"], patient["id"])
    assert request_id not in [e["request_id"] for e in found]


# --- exercise details kept in process ----------------------------------------------------


def exercise_row(n: int) -> tuple[uuid.UUID, str, str, list[str]]:
    return (uuid.UUID(int=n), f"slug-{n}", f"Exercise {n}", [f"Step {n}"])


def test_the_exercise_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = ExerciseCache(maxsize=3, ttl=60)
    found: dict[str, dict[str, Any]] = {}
    cache.keep([exercise_row(n) for n in (1, 2, 3)], found)
    assert len(found) == len(cache) == 3
    assert found[str(uuid.UUID(int=1))] == {
        "id": str(uuid.UUID(int=1)),
        "slug": "slug-1",
        "name": "Exercise 1",
        "steps": ["Step 1"],
    }
    cache.get({str(uuid.UUID(int=1))})  # 1 is now the most recently used, 2 the least
    cache.keep([exercise_row(4)], {})
    assert len(cache) == 3
    kept, missing = cache.get({str(uuid.UUID(int=n)) for n in (1, 2, 3, 4)})
    assert set(kept) == {str(uuid.UUID(int=n)) for n in (1, 3, 4)}
    assert missing == {str(uuid.UUID(int=2))}


def test_the_exercise_cache_forgets_after_its_time_to_live() -> None:
    now = [1000.0]
    cache = ExerciseCache(maxsize=10, ttl=60, clock=lambda: now[0])
    wanted = {str(uuid.UUID(int=1))}
    cache.keep([exercise_row(1)], {})
    now[0] += 59
    assert cache.get(wanted) == ({str(uuid.UUID(int=1)): ANY}, set())
    now[0] += 1
    assert cache.get(wanted) == ({}, wanted)
    assert len(cache) == 0

    nothing_kept = ExerciseCache(maxsize=10, ttl=0)
    into: dict[str, dict[str, Any]] = {}
    nothing_kept.keep([exercise_row(1)], into)
    assert set(into) == wanted  # the request still gets what it read
    assert len(nothing_kept) == 0
