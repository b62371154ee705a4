"""The adherence summary against hand-computed expectations.

Each case builds a plan history with versions made at chosen moments and records on chosen
local dates, all in the past, then reads the summary as the clinic.
"""

import asyncio
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy import Uuid, event, literal, select

from app.adherence.models import AdherenceRecord
from app.adherence.summary import uuid_text
from app.core.config import Settings
from app.core.db import execute, libpq_url, transaction
from app.exercises.catalog import catalog_id
from app.main import create_app, dispose_engines
from app.patients.models import Patient
from app.plans.models import Plan, PlanVersion
from tests.conftest import World, make_client

LISBON = "Europe/Lisbon"
EXERCISE = str(catalog_id("ankle-dorsiflexion"))
EVERY_DAY = [1, 2, 3, 4, 5, 6, 7]


def item(name: str, **schedule: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_OID, name)),
        "exercise_id": EXERCISE,
        "schedule": {"times_per_day": 1, **schedule},
        "side": "left",
    }


@dataclass
class History:
    patient_id: uuid.UUID
    plan_id: uuid.UUID


async def history(
    app: FastAPI,
    world: World,
    versions: list[tuple[str, str, list[dict[str, Any]]]],
    time_zone: str = LISBON,
) -> History:
    """A patient whose one plan had these versions: (made at, status, items)."""
    async with transaction(app.state.engine) as session:
        patient = Patient(
            clinic_id=world.clinic1,
            reference=f"SUM-{uuid.uuid4().hex[:10]}",
            affected_side="left",
            cause="stroke",
            time_zone=time_zone,
        )
        session.add(patient)
        await session.flush()
        plan = Plan(
            clinic_id=world.clinic1,
            patient_id=patient.id,
            status=versions[-1][1],
            version=len(versions),
        )
        session.add(plan)
        await session.flush()
        for number, (made, status, items) in enumerate(versions, start=1):
            session.add(
                PlanVersion(
                    plan_id=plan.id,
                    clinic_id=world.clinic1,
                    number=number,
                    status=status,
                    title="Summary case",
                    start_date=date(2026, 9, 1),
                    items=items,
                    created_at=datetime.fromisoformat(made),
                )
            )
        return History(patient.id, plan.id)


async def recorded(
    app: FastAPI,
    world: World,
    case: History,
    on: str,
    the_item: dict[str, Any],
    status: str = "completed",
    pain: int | None = None,
    time_zone: str = LISBON,
) -> None:
    day = date.fromisoformat(on)
    async with transaction(app.state.engine) as session:
        session.add(
            AdherenceRecord(
                id=uuid.uuid4(),
                clinic_id=world.clinic1,
                patient_id=case.patient_id,
                plan_id=case.plan_id,
                plan_version=1,
                item_id=uuid.UUID(the_item["id"]),
                performed_at=datetime.combine(day, time(12), ZoneInfo(time_zone)),
                utc_offset_minutes=0,
                performed_on=day,
                status=status,
                pain=pain,
                skip_reason="other" if status == "skipped" else None,
                source="patient_app",
                recorded_by=case.patient_id,
            )
        )


async def summary(
    client: AsyncClient, world: World, case: History, since: str, until: str
) -> dict[str, Any]:
    answer = await client.get(
        f"/v1/patients/{case.patient_id}/adherence/summary",
        params={"from": since, "to": until},
        headers=world["clinician1"].headers,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def by_item(body: dict[str, Any]) -> dict[str, float]:
    return {entry["item_id"]: entry["expected"] for entry in body["items"]}


async def test_weekday_items_count_each_session_and_half_a_partial(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    mwf = item("mon-wed-fri", days_of_week=[1, 3, 5])
    case = await history(app, world, [("2026-09-01T08:00:00+01:00", "active", [mwf])])
    await recorded(app, world, case, "2026-10-05", mwf)  # Monday
    await recorded(app, world, case, "2026-10-07", mwf, "partial")  # Wednesday
    await recorded(app, world, case, "2026-10-09", mwf, "skipped")  # Friday
    body = await summary(client, world, case, "2026-10-05", "2026-10-11")
    assert (body["from"], body["to"], body["time_zone"]) == ("2026-10-05", "2026-10-11", LISBON)
    assert body["totals"] == {
        "expected": 3.0,
        "credited": 1.5,
        "adherence_percent": 50.0,
        "completed": 1,
        "partial": 1,
        "skipped": 1,
    }
    assert [w["week"] for w in body["weeks"]] == ["2026-W41"]
    # Monday done; Wednesday and Friday not: the streak broke.
    assert (body["longest_streak"], body["current_streak"]) == (1, 0)


async def test_sessions_per_week_cap_at_the_target_and_prorate_part_weeks(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    thrice = item("three-a-week", sessions_per_week=3)
    case = await history(app, world, [("2026-09-01T08:00:00+01:00", "active", [thrice])])
    for day, pain in (
        ("2026-10-05", 2),
        ("2026-10-06", 4),
        ("2026-10-07", None),
        ("2026-10-08", None),
        ("2026-10-13", 8),
    ):
        await recorded(app, world, case, day, thrice, pain=pain)
    week = await summary(client, world, case, "2026-10-05", "2026-10-11")
    assert (week["totals"]["expected"], week["totals"]["credited"]) == (3.0, 3.0)
    assert week["totals"]["completed"] == 4
    # From Wednesday: five days of the week in force, 3 x 5/7 = 2.14, so 2.
    part = await summary(client, world, case, "2026-10-07", "2026-10-11")
    assert (part["totals"]["expected"], part["totals"]["credited"]) == (2.0, 2.0)
    # Pain: week 41 means 3, week 42 means 8: rising, and the 8 is an alert.
    two = await summary(client, world, case, "2026-10-05", "2026-10-18")
    assert two["pain"]["weeks"] == [
        {"week": "2026-W41", "mean": 3.0},
        {"week": "2026-W42", "mean": 8.0},
    ]
    assert (two["pain"]["mean"], two["pain"]["trend"]) == (4.67, "rising")
    assert [alert["pain"] for alert in two["pain_alerts"]] == [8]


async def test_a_plan_edited_mid_week_changes_what_is_expected_from_that_day(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    old, new = item("old-daily", days_of_week=EVERY_DAY), item("new-daily", days_of_week=EVERY_DAY)
    case = await history(
        app,
        world,
        [
            ("2026-09-01T08:00:00+01:00", "active", [old]),
            # Wednesday noon: the whole Wednesday follows the new version.
            ("2026-10-07T12:00:00+01:00", "active", [new]),
        ],
    )
    body = await summary(client, world, case, "2026-10-05", "2026-10-11")
    assert by_item(body) == {old["id"]: 2.0, new["id"]: 5.0}
    assert body["totals"]["expected"] == 7.0


async def test_a_paused_week_expects_nothing(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    daily = item("daily", days_of_week=EVERY_DAY)
    case = await history(
        app,
        world,
        [
            ("2026-09-01T08:00:00+01:00", "active", [daily]),
            ("2026-10-12T08:00:00+01:00", "paused", [daily]),  # Monday of week 42
            ("2026-10-19T08:00:00+01:00", "active", [daily]),  # Monday of week 43
        ],
    )
    body = await summary(client, world, case, "2026-10-05", "2026-10-25")
    assert {w["week"]: w["expected"] for w in body["weeks"]} == {
        "2026-W41": 7.0,
        "2026-W43": 7.0,
    }


async def test_the_end_of_a_day_is_local_midnight_across_a_daylight_saving_change(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    sundays = item("sundays", days_of_week=[7])
    case = await history(
        app,
        world,
        [
            ("2026-09-01T08:00:00+01:00", "active", [sundays]),
            # Sunday 25 October 2026 in Lisbon lasts 25 hours (summer time ends at 02:00).
            # 23:30 UTC is still that Sunday (23:30 WET), so the Sunday follows this version:
            # a day measured as 24 hours from its start would have ended at 23:00 UTC.
            ("2026-10-25T23:30:00+00:00", "paused", [sundays]),
        ],
    )
    body = await summary(client, world, case, "2026-10-18", "2026-10-25")
    assert body["totals"]["expected"] == 1.0  # 18 October only


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"from": "2026-10-10", "to": "2026-10-01"}, "#/from"),
        ({"from": "2025-01-01", "to": "2026-10-01"}, "#/from"),
        ({"from": "yesterday"}, "#/from"),
        ({"window": "7"}, "#/window"),
    ],
)
async def test_a_bad_period_is_422(
    app: FastAPI, world: World, client: AsyncClient, params: dict[str, str], pointer: str
) -> None:
    case = await history(app, world, [("2026-09-01T08:00:00+01:00", "active", [])])
    answer = await client.get(
        f"/v1/patients/{case.patient_id}/adherence/summary",
        params=params,
        headers=world["clinician1"].headers,
    )
    assert answer.status_code == 422
    assert pointer in [e["pointer"] for e in answer.json()["errors"]]


async def test_days_to_come_expect_nothing_yet(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    daily = item("daily-future", days_of_week=EVERY_DAY)
    case = await history(app, world, [("2026-09-01T08:00:00+01:00", "active", [daily])])
    today = datetime.now(ZoneInfo(LISBON)).date()
    later = date.fromordinal(today.toordinal() + 10).isoformat()
    body = await summary(client, world, case, today.isoformat(), later)
    assert body["totals"]["expected"] == 1.0


async def test_items_alerts_and_last_activity(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    daily, mwf = item("daily-two", days_of_week=EVERY_DAY), item("mwf-two", days_of_week=[1, 3, 5])
    case = await history(app, world, [("2026-09-01T08:00:00+01:00", "active", [daily, mwf])])
    await recorded(app, world, case, "2026-10-05", daily, pain=7)
    await recorded(app, world, case, "2026-10-05", mwf, pain=5)
    await recorded(app, world, case, "2026-10-06", daily, "partial", pain=8)
    await recorded(app, world, case, "2026-10-07", daily, "skipped")
    await recorded(app, world, case, "2026-10-07", mwf, pain=3)
    body = await summary(client, world, case, "2026-10-05", "2026-10-11")
    items = {entry["item_id"]: entry for entry in body["items"]}
    assert items[daily["id"]] == {
        "expected": 7.0,
        "credited": 1.5,
        "adherence_percent": 21.4,
        "completed": 1,
        "partial": 1,
        "skipped": 1,
        "item_id": daily["id"],
        "exercise_id": EXERCISE,
    }
    assert (items[mwf["id"]]["expected"], items[mwf["id"]]["credited"]) == (3.0, 2.0)
    assert (body["totals"]["expected"], body["totals"]["credited"]) == (10.0, 3.5)
    # Noon in Lisbon (UTC+1) on the Wednesday.
    assert body["last_activity"] == "2026-10-07T11:00:00Z"
    # The most recent first.
    alerts = [(a["performed_on"], a["item_id"], a["pain"]) for a in body["pain_alerts"]]
    assert alerts == [("2026-10-06", daily["id"], 8), ("2026-10-05", daily["id"], 7)]
    # Monday had both items done; Tuesday's partial broke the run.
    assert (body["longest_streak"], body["current_streak"]) == (1, 0)
    assert body["pain"]["weeks"] == [{"week": "2026-W41", "mean": 5.75}]


@pytest.fixture
async def one_session(app: FastAPI, world: World) -> History:
    """A patient with one session."""
    daily = item("daily", days_of_week=EVERY_DAY)
    case = await history(app, world, [("2026-09-01T08:00:00+01:00", "active", [daily])])
    await recorded(app, world, case, "2026-10-05", daily)
    return case


async def test_concurrent_summaries_wait_for_one_of_a_bounded_set_of_connections(
    settings: Settings, world: World, one_session: History, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("The pool size setting is PostgreSQL's; SQLite takes one writer at a time.")
    case = one_session
    pool_size = 2
    application = create_app(settings.model_copy(update={"database_pool_size": pool_size}))
    in_use, most = 0, 0

    def checked_out(*_: object) -> None:
        nonlocal in_use, most
        in_use += 1
        most = max(most, in_use)

    def checked_in(*_: object) -> None:
        nonlocal in_use
        in_use -= 1

    pool = application.state.engine.sync_engine.pool
    event.listen(pool, "checkout", checked_out)
    event.listen(pool, "checkin", checked_in)
    try:
        async with make_client(application) as http:
            answers = await asyncio.gather(
                *(
                    http.get(
                        f"/v1/patients/{case.patient_id}/adherence/summary",
                        params={"from": "2026-10-05", "to": "2026-10-11"},
                        headers=world["clinician1"].headers,
                    )
                    for _ in range(12)
                )
            )
    finally:
        await dispose_engines(application)

    assert [a.status_code for a in answers] == [200] * 12, answers[0].text
    assert len({a.content for a in answers}) == 1
    assert answers[0].json()["totals"]["completed"] == 1
    # The engine's pool: its size, and as many again in overflow (`make_engine`).
    assert 1 <= most <= 2 * pool_size


async def test_a_summary_cut_short_at_any_point_leaves_its_connection_usable(
    settings: Settings, world: World, one_session: History, backend: str
) -> None:
    if backend == "sqlite":
        # A request cancelled in the middle of a statement invalidates its aiosqlite
        # connection, whose close is cancelled too: the connection, left open in its
        # thread, keeps the write lock its BEGIN IMMEDIATE took (app/core/db.py).
        pytest.skip("On SQLite a cancelled request's connection keeps the write lock.")
    # Few connections: a summary that kept one, or its slot, would block every later one.
    case = one_session
    application = create_app(settings.model_copy(update={"database_pool_size": 1}))

    async def ask() -> Response:
        return await http.get(
            f"/v1/patients/{case.patient_id}/adherence/summary",
            params={"from": "2026-10-05", "to": "2026-10-11"},
            headers=world["clinician1"].headers,
        )

    try:
        async with make_client(application) as http:
            whole = await ask()
            assert whole.status_code == 200, whole.text
            # Cut short after a few turns of the event loop, then after some time: while
            # the session is checked, while the records are read, and in between.
            for turns, seconds in [(n, 0.0) for n in range(8)] + [
                (0, s / 1000) for s in (0.5, 1, 2, 3, 5, 8)
            ]:
                request = asyncio.ensure_future(ask())
                for _ in range(turns):
                    await asyncio.sleep(0)
                await asyncio.sleep(seconds)
                request.cancel()
                with suppress(asyncio.CancelledError):
                    await request
                answer = await asyncio.wait_for(ask(), timeout=10)
                assert (answer.status_code, answer.content) == (200, whole.content)
    finally:
        await dispose_engines(application)


async def test_a_summary_after_the_database_ended_its_connections_is_answered(
    app: FastAPI, settings: Settings, world: World, client: AsyncClient, one_session: History
) -> None:
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("Only a server ends its clients' connections.")
    case = one_session
    before = await summary(client, world, case, "2026-10-05", "2026-10-11")
    # As a restart of the database, or an administrator ending sessions, would: every
    # connection to the database but this one, the app's pooled ones among them.
    async with await psycopg.AsyncConnection.connect(
        libpq_url(settings.database_url), autocommit=True
    ) as admin:
        ended = await (
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        ).fetchall()
    assert ended
    await asyncio.sleep(0.1)  # the ending reaches the connections

    assert await summary(client, world, case, "2026-10-05", "2026-10-11") == before


async def test_item_ids_read_as_text_are_canonical_on_either_database(app: FastAPI) -> None:
    """The summary reads item ids as text (`uuid_text`, compiled for each database): the
    same text as Python's."""
    ids = [uuid.uuid4(), uuid.UUID("8D5C0F7E-1A2B-4C3D-9E8F-7A6B5C4D3E2F"), uuid.UUID(int=0)]
    async with transaction(app.state.engine) as session:
        for one in ids:
            found = await execute(session, select(uuid_text(literal(one, Uuid()))))
            assert found.scalar_one() == str(one)
