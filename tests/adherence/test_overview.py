"""The clinic overview: each patient's 7- and 30-day adherence (equal to their summary over
the same days), the clinic's thresholds, pain alerts, last upload, sorting and paging, and
figures that follow every write.

Each test has a clinic of its own, so the overview shows only the patients it made.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import select

from app.adherence import overview, rollups
from app.adherence.models import STALE, AdherenceRecord, AdherenceRollup
from app.auth import accounts
from app.auth import service as auth_service
from app.auth.models import Role
from app.core.columns import utcnow
from app.core.config import Settings
from app.core.db import execute, transaction
from app.patients.models import Patient
from app.plans.models import Plan, PlanVersion
from app.worker.runner import Worker
from tests.adherence.test_summary import EVERY_DAY, item
from tests.conftest import PASSWORD, Actor, World
from tests.core.problems import assert_problem
from tests.core.query_plans import statements_run, unsorted_plans
from tests.plans import active_plan, new_patient
from tests.plans import item as plan_item
from tests.webhooks import Clock

LISBON, AUCKLAND, HONOLULU = "Europe/Lisbon", "Pacific/Auckland", "Pacific/Honolulu"
TONGATAPU = "Pacific/Tongatapu"  # UTC+13 all year, as Honolulu is UTC-10


@dataclass
class Clinic:
    id: uuid.UUID
    headers: dict[str, str]


@dataclass
class Case:
    patient_id: uuid.UUID
    plan_id: uuid.UUID
    zone: str

    @property
    def today(self) -> date:
        return datetime.now(ZoneInfo(self.zone)).date()


@pytest.fixture
async def clinic(app: FastAPI) -> Clinic:
    async with transaction(app.state.engine) as session:
        made = await accounts.create_clinic(session, "Overview Clinic")
        email = f"overview-{uuid.uuid4().hex[:8]}@clinic.test"
        secrets = app.state.secrets
        await accounts.create_clinician(session, secrets, made.id, email, PASSWORD, Role.admin)
        token = await auth_service.password_grant(session, secrets, email, PASSWORD, None)
    return Clinic(made.id, {"Authorization": f"Bearer {token.access_token}"})


async def patient(
    app: FastAPI,
    clinic: Clinic,
    zone: str,
    versions: list[tuple[int, list[dict[str, Any]]]] | None = None,
) -> Case:
    """A patient whose one plan had these active versions: (made this many days ago, items);
    with none, a patient without a plan. Made straight in the tables, as no service makes
    them: the overview makes the patient's figures when it first needs them."""
    async with transaction(app.state.engine) as session:
        person = Patient(
            clinic_id=clinic.id,
            reference=f"OV-{uuid.uuid4().hex[:10]}",
            affected_side="left",
            cause="stroke",
            time_zone=zone,
        )
        session.add(person)
        await session.flush()
        if not versions:
            return Case(person.id, uuid.uuid4(), zone)
        plan = Plan(clinic_id=clinic.id, patient_id=person.id, status="active", version=1)
        session.add(plan)
        await session.flush()
        for number, (days_ago, items) in enumerate(versions, start=1):
            made = datetime.now(ZoneInfo(zone)) - timedelta(days=days_ago)
            session.add(
                PlanVersion(
                    plan_id=plan.id,
                    clinic_id=clinic.id,
                    number=number,
                    status="active",
                    title="Overview case",
                    start_date=date(2025, 1, 1),
                    items=items,
                    created_at=made,
                )
            )
            plan.version = number
        session.add(plan)
        return Case(person.id, plan.id, zone)


async def stored(
    app: FastAPI, case: Case, days_ago: int, the_item: dict[str, Any], status: str = "completed"
) -> None:
    """A record written straight to the table (so before any overview read)."""
    day = case.today - timedelta(days=days_ago)
    async with transaction(app.state.engine) as session:
        session.add(
            AdherenceRecord(
                id=uuid.uuid4(),
                clinic_id=(
                    await session.exec(
                        select(Patient.clinic_id).where(Patient.id == case.patient_id)
                    )
                ).one(),
                patient_id=case.patient_id,
                plan_id=case.plan_id,
                plan_version=1,
                item_id=uuid.UUID(the_item["id"]),
                performed_at=datetime.combine(day, time(12), ZoneInfo(case.zone)),
                utc_offset_minutes=0,
                performed_on=day,
                status=status,
                skip_reason="other" if status == "skipped" else None,
                source="patient_app",
                recorded_by=case.patient_id,
            )
        )


async def read(
    client: AsyncClient, clinic: Clinic, **params: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    answer = await client.get("/v1/adherence/overview", params=params, headers=clinic.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body, body["items"]


def row_of(rows: list[dict[str, Any]], case: Case) -> dict[str, Any]:
    return next(r for r in rows if r["patient_id"] == str(case.patient_id))


async def upload(
    client: AsyncClient, clinic: Clinic, case: Case, the_item: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    day = case.today - timedelta(days=fields.pop("days_ago", 1))
    performed = datetime.combine(day, time(12), ZoneInfo(case.zone))
    record = {
        "id": str(uuid.uuid4()),
        "plan_id": str(case.plan_id),
        "plan_version": 1,
        "item_id": the_item["id"],
        "performed_at": min(performed, datetime.now(UTC)).isoformat(),
        "status": "completed",
        **fields,
    }
    answer = await client.post(
        "/v1/adherence/batch", json={"records": [record]}, headers=clinic.headers
    )
    assert answer.json()["results"][0]["result"] == "created", answer.text
    return record


async def assert_summary_equals(
    client: AsyncClient, clinic: Clinic, case: Case, row: dict[str, Any]
) -> None:
    """The row's 7- and 30-day figures are the patient's summary over the same days."""
    for window in ("last_7_days", "last_30_days"):
        figures = row[window]
        answer = await client.get(
            f"/v1/patients/{case.patient_id}/adherence/summary",
            params={"from": figures["from"], "to": figures["to"]},
            headers=clinic.headers,
        )
        totals = answer.json()["totals"]
        assert (figures["expected"], figures["credited"], figures["adherence_percent"]) == (
            totals["expected"],
            totals["credited"],
            totals["adherence_percent"],
        ), (case.zone, window)


def last_midnight(case: Case) -> datetime:
    """The patient's latest local midnight: the moment their today began."""
    return datetime.combine(case.today, time(0), ZoneInfo(case.zone))


@contextmanager
def records_read(app: FastAPI, clinic: Clinic) -> Iterator[set[uuid.UUID]]:
    """The patients whose adherence records the database read in the block: those whose
    figures were computed."""
    patients: set[uuid.UUID] = set()
    with statements_run(app.state.engine, lambda s: "FROM adherence_record" in s) as seen:
        yield patients
    for _, parameters in seen:
        values = parameters.values() if isinstance(parameters, dict) else parameters
        for value in values:
            with suppress(ValueError, TypeError, AttributeError):
                patients.add(uuid.UUID(str(value)))
    patients.discard(clinic.id)


DAILY = item("overview-daily", days_of_week=EVERY_DAY)
THRICE = item("overview-thrice", sessions_per_week=3)
MWF = item("overview-mwf", days_of_week=[1, 3, 5])


async def test_each_patients_figures_equal_their_summary_over_the_same_days(
    app: FastAPI, client: AsyncClient, clinic: Clinic
) -> None:
    daily = await patient(app, clinic, LISBON, [(60, [DAILY])])
    # Done on 5 of the last 7 days, one of them partial: 4.5 of 7.
    for days_ago, status in ((1, "completed"), (2, "completed"), (3, "partial"), (5, "completed")):
        await stored(app, daily, days_ago, DAILY, status)
    await stored(app, daily, 6, DAILY, "skipped")
    await stored(app, daily, 7, DAILY)
    await stored(app, daily, 0, DAILY)  # today: outside both windows, which end yesterday
    weekly = await patient(app, clinic, AUCKLAND, [(90, [THRICE])])
    for days_ago in (1, 2, 3, 4, 9, 10, 20):
        await stored(app, weekly, days_ago, THRICE)
    edited = await patient(app, clinic, HONOLULU, [(90, [DAILY]), (10, [MWF])])
    for days_ago in range(1, 30, 2):
        await stored(app, edited, days_ago, MWF if days_ago < 10 else DAILY)
    no_plan = await patient(app, clinic, LISBON)

    body, rows = await read(client, clinic)
    assert (body["threshold_percent"], body["pain_alert_at"]) == (70, 7)
    assert {r["patient_id"] for r in rows} == {
        str(c.patient_id) for c in (daily, weekly, edited, no_plan)
    }
    first = row_of(rows, daily)
    assert first["last_7_days"] == {
        "from": str(daily.today - timedelta(days=7)),
        "to": str(daily.today - timedelta(days=1)),
        "expected": 7.0,
        "credited": 4.5,
        "adherence_percent": 64.3,
    }
    assert first["below_threshold"] is True
    assert first["as_of"] == str(daily.today)
    for case in (daily, weekly, edited):
        row = row_of(rows, case)
        assert row["time_zone"] == case.zone
        await assert_summary_equals(client, clinic, case, row)
    nothing = row_of(rows, no_plan)
    assert nothing["last_30_days"]["adherence_percent"] is None
    assert (nothing["below_threshold"], nothing["last_upload_at"]) == (False, None)


async def test_sorted_by_the_database_and_paged_with_a_cursor(
    app: FastAPI, client: AsyncClient, clinic: Clinic
) -> None:
    cases = []
    for done in (0, 2, 4, 6, 7):  # of the last 7 days
        case = await patient(app, clinic, LISBON, [(60, [DAILY])])
        for days_ago in range(1, done + 1):
            await stored(app, case, days_ago, DAILY)
        cases.append(case)
    cases.append(await patient(app, clinic, LISBON))  # nothing expected: last either way
    ids = [str(c.patient_id) for c in cases]

    _, rows = await read(client, clinic)
    assert [r["patient_id"] for r in rows] == ids
    assert [r["last_7_days"]["adherence_percent"] for r in rows] == [
        0.0,
        28.6,
        57.1,
        85.7,
        100.0,
        None,
    ]
    _, rows = await read(client, clinic, sort="-adherence_7d")
    assert [r["patient_id"] for r in rows] == [*reversed(ids[:5]), ids[5]]

    for sort in ("adherence_7d", "-adherence_30d", "reference", "last_upload_at"):
        walked: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"sort": sort, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            body, rows = await read(client, clinic, **params)
            walked += [r["patient_id"] for r in rows]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        _, whole = await read(client, clinic, sort=sort)
        assert walked == [r["patient_id"] for r in whole], sort
        assert sorted(walked) == sorted(ids)

    body, _ = await read(client, clinic, limit=2)
    other_sort = await client.get(
        "/v1/adherence/overview",
        params={"cursor": body["next_cursor"], "sort": "reference"},
        headers=clinic.headers,
    )
    problem = assert_problem(other_sort, 422, "validation")
    assert [e["pointer"] for e in problem["errors"]] == ["#/cursor"]
    for bad in ({"sort": "name"}, {"limit": 0}, {"cursor": "nonsense"}, {"flagged": "yes"}):
        answer = await client.get("/v1/adherence/overview", params=bad, headers=clinic.headers)
        assert answer.status_code == 422, bad


async def test_the_clinic_sets_its_thresholds_and_filters_by_them(
    app: FastAPI, client: AsyncClient, clinic: Clinic, world: World
) -> None:
    struggling = await patient(app, clinic, LISBON, [(60, [DAILY])])
    for days_ago in (1, 2, 3, 4):  # 4 of 7: 57.1 %
        await stored(app, struggling, days_ago, DAILY)
    steady = await patient(app, clinic, LISBON, [(60, [DAILY])])
    for days_ago in range(1, 8):
        await stored(app, steady, days_ago, DAILY)
    await upload(client, clinic, steady, DAILY, days_ago=0, pain=8)

    _, rows = await read(client, clinic, below_threshold="true")
    assert [r["patient_id"] for r in rows] == [str(struggling.patient_id)]
    _, rows = await read(client, clinic, pain_alert="true")
    assert [r["patient_id"] for r in rows] == [str(steady.patient_id)]
    assert (rows[0]["pain_alerts_7d"], rows[0]["max_pain_7d"]) == (1, 8)

    changed = await client.patch(
        "/v1/clinic",
        json={"adherence_threshold_percent": 50, "pain_alert_at": 9},
        headers=clinic.headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["adherence_threshold_percent"], changed.json()["pain_alert_at"]) == (
        50,
        9,
    )
    assert (await client.get("/v1/clinic", headers=clinic.headers)).json() == changed.json()
    body, rows = await read(client, clinic)
    assert (body["threshold_percent"], body["pain_alert_at"]) == (50, 9)
    assert not any(r["below_threshold"] for r in rows)
    assert row_of(rows, steady)["pain_alerts_7d"] == 0
    summary = await client.get(
        f"/v1/patients/{steady.patient_id}/adherence/summary", headers=clinic.headers
    )
    assert summary.json()["pain_alerts"] == []

    for bad in (
        {"adherence_threshold_percent": 0},
        {"adherence_threshold_percent": 101},
        {"pain_alert_at": 11},
        {"name": "Renamed"},
    ):
        answer = await client.patch("/v1/clinic", json=bad, headers=clinic.headers)
        assert answer.status_code == 422, bad
    # Another clinic's settings are its own.
    other = await client.get("/v1/clinic", headers=world["clinician2"].headers)
    assert other.json()["id"] == str(world.clinic2)
    assert other.json()["adherence_threshold_percent"] == 70


async def test_figures_follow_uploads_corrections_and_deletes(
    app: FastAPI, client: AsyncClient, clinic: Clinic
) -> None:
    case = await patient(app, clinic, AUCKLAND, [(60, [DAILY])])
    _, rows = await read(client, clinic)
    assert row_of(rows, case)["last_7_days"]["credited"] == 0.0

    record = await upload(client, clinic, case, DAILY, days_ago=2)
    _, rows = await read(client, clinic)
    row = row_of(rows, case)
    assert row["last_7_days"]["credited"] == 1.0
    assert row["last_upload_at"] is not None

    current = await client.get(f"/v1/adherence/{record['id']}", headers=clinic.headers)
    corrected = await client.patch(
        f"/v1/adherence/{record['id']}",
        json={"status": "partial"},
        headers={**clinic.headers, "If-Match": current.headers["etag"]},
    )
    assert corrected.status_code == 200, corrected.text
    _, rows = await read(client, clinic)
    assert row_of(rows, case)["last_7_days"]["credited"] == 0.5

    deleted = await client.delete(
        f"/v1/adherence/{record['id']}",
        headers={**clinic.headers, "If-Match": corrected.headers["etag"]},
    )
    assert deleted.status_code == 204
    _, rows = await read(client, clinic)
    assert row_of(rows, case)["last_7_days"]["credited"] == 0.0


async def test_only_the_clinics_living_patients_and_their_own_time_zone(
    app: FastAPI, client: AsyncClient, clinic: Clinic, world: World
) -> None:
    kept = await patient(app, clinic, LISBON, [(60, [DAILY])])
    gone = await patient(app, clinic, LISBON, [(60, [DAILY])])
    _, rows = await read(client, clinic)
    assert len(rows) == 2

    deleted = await client.delete(f"/v1/patients/{gone.patient_id}", headers=clinic.headers)
    assert deleted.status_code == 204
    _, rows = await read(client, clinic)
    assert [r["patient_id"] for r in rows] == [str(kept.patient_id)]

    moved = await client.patch(
        f"/v1/patients/{kept.patient_id}", json={"time_zone": HONOLULU}, headers=clinic.headers
    )
    assert moved.status_code == 200, moved.text
    _, rows = await read(client, clinic)
    assert (rows[0]["time_zone"], rows[0]["as_of"]) == (
        HONOLULU,
        str(datetime.now(ZoneInfo(HONOLULU)).date()),
    )

    # Clinic 2 sees its own patients only.
    theirs = await client.get(
        "/v1/adherence/overview", params={"limit": 100}, headers=world["clinician2"].headers
    )
    assert theirs.status_code == 200
    assert str(kept.patient_id) not in {r["patient_id"] for r in theirs.json()["items"]}
    assert str(world.patient_c) in {r["patient_id"] for r in theirs.json()["items"]}


async def test_every_patient_shown_is_in_the_audit_trail(
    app: FastAPI, client: AsyncClient, clinic: Clinic
) -> None:
    shown = await patient(app, clinic, LISBON, [(60, [DAILY])])
    unseen = await patient(app, clinic, LISBON, [(60, [DAILY])])
    await stored(app, unseen, 1, DAILY)  # 100 %: after the other on the default order
    _, rows = await read(client, clinic, limit=1)
    assert [r["patient_id"] for r in rows] == [str(shown.patient_id)]

    async def events(case: Case) -> list[tuple[str, str, str | None]]:
        answer = await client.get(
            "/v1/audit-events", params={"patient_id": str(case.patient_id)}, headers=clinic.headers
        )
        assert answer.status_code == 200, answer.text
        return [(e["action"], e["resource_type"], e["resource_id"]) for e in answer.json()["items"]]

    assert ("list", "adherence_overview", str(shown.patient_id)) in await events(shown)
    assert not [e for e in await events(unseen) if e[1] == "adherence_overview"]


async def test_the_default_order_is_read_off_an_index_not_sorted(
    app: FastAPI, client: AsyncClient, clinic: Clinic, backend: str
) -> None:
    """A page in the default order (lowest 7-day adherence first) walks the clinic's rows
    in an index's order: it neither reads nor sorts every patient of the clinic."""
    for _ in range(2):
        await patient(app, clinic, LISBON)
    with statements_run(app.state.engine, lambda statement: "sort_key" in statement) as pages:
        body, _ = await read(client, clinic, limit=1)
        await read(client, clinic, limit=1, cursor=body["next_cursor"])
    assert len(pages) == 2  # the first page, and one after a cursor
    for plan in await unsorted_plans(app.state.engine, pages):
        assert "ix_adherence_rollup_clinic_percent_7d" in plan, plan


async def test_a_recomputation_leaves_stale_a_row_an_upload_made_meanwhile(
    app: FastAPI, client: AsyncClient, clinic: Clinic
) -> None:
    """A patient's row is made when first needed, by whichever comes first: the overview
    or an upload. A recomputation that found no row, and read the records before an
    upload made one, does not write its figures over the upload's mark."""
    case = await patient(app, clinic, LISBON, [(60, [DAILY])])
    await stored(app, case, 1, DAILY)
    async with transaction(app.state.engine) as session:
        settings = (
            await execute(session, overview.CLINIC_THRESHOLDS, {"clinic_id": clinic.id})
        ).one()
        values = {"clinic_id": clinic.id, "now": utcnow(), "pain_alert_at": settings.pain_alert_at}
        stale = list((await execute(session, rollups.STALE_ROWS, values)).all())
    assert [(row.patient_id, row.generation) for row in stale] == [(case.patient_id, None)]

    uploaded = utcnow()
    async with transaction(app.state.engine) as session:  # an upload, meanwhile
        await rollups.mark_stale(session, clinic.id, [case.patient_id], uploaded_at=uploaded)
    async with transaction(app.state.engine) as session:  # the recomputation goes on
        await rollups._recompute(session, settings, stale, utcnow())
    async with transaction(app.state.engine) as session:
        row = await session.get_one(AdherenceRollup, case.patient_id)
        assert (row.valid_until, row.generation, row.last_upload_at) == (STALE, 1, uploaded)

    _, rows = await read(client, clinic)
    assert row_of(rows, case)["last_7_days"]["credited"] == 1.0
    assert datetime.fromisoformat(row_of(rows, case)["last_upload_at"]) == uploaded


@pytest.mark.parametrize("zone", [HONOLULU, "UTC", TONGATAPU])
async def test_the_first_overview_after_midnight_shows_figures_the_worker_computed_before_it(
    app: FastAPI, settings: Settings, client: AsyncClient, clinic: Clinic, zone: str
) -> None:
    """Shortly before each patient's midnight the worker computes their next day's
    figures; the first overview after it shows them without computing anything, and they
    are the summary's over the new windows, with what was uploaded late the day before.
    An upload after the worker's last round costs the recomputation of that patient only."""
    early = await patient(app, clinic, zone, [(60, [DAILY])])
    late = await patient(app, clinic, zone, [(60, [DAILY])])
    for case in (early, late):
        for days_ago in (2, 4, 8, 15):
            await stored(app, case, days_ago, DAILY)
    midnight = last_midnight(early)
    clock = Clock(midnight - timedelta(minutes=10))
    worker = Worker(app.state.engine, settings, clock=clock)
    await worker.clinic_round()

    def before_midnight(minutes: int) -> str:
        return (midnight - timedelta(minutes=minutes)).isoformat()

    await upload(client, clinic, early, DAILY, performed_at=before_midnight(9), pain=8)
    clock.advance(minutes=8)
    await worker.clinic_round()
    await upload(client, clinic, late, DAILY, performed_at=before_midnight(1), status="partial")

    with records_read(app, clinic) as computed:
        body, rows = await read(client, clinic)
    assert computed == {late.patient_id}
    for case, credited in ((early, (3.0, 5.0)), (late, (2.5, 4.5))):
        row = row_of(rows, case)
        assert row["as_of"] == str(case.today)
        assert (row["last_7_days"]["credited"], row["last_30_days"]["credited"]) == credited
        await assert_summary_equals(client, clinic, case, row)
    assert (row_of(rows, early)["pain_alerts_7d"], row_of(rows, early)["max_pain_7d"]) == (1, 8)
    with records_read(app, clinic) as computed:
        assert await read(client, clinic) == (body, rows)
    assert computed == set()


async def test_the_next_days_figures_are_sorted_and_paged_as_they_stand_after_midnight(
    app: FastAPI, settings: Settings, client: AsyncClient, clinic: Clinic
) -> None:
    """Until the worker moves the next day's figures into place, the overview sorts and
    pages the figures in force, which may order the patients otherwise than the day
    before; once moved, the same page is read off the index."""
    slipping = await patient(app, clinic, "UTC", [(60, [DAILY])])
    catching_up = await patient(app, clinic, "UTC", [(60, [DAILY])])
    for days_ago in range(2, 9):  # all of the day before's week, not that day itself
        await stored(app, slipping, days_ago, DAILY)
    for days_ago in range(1, 8):  # all but the first day of it, and that day
        await stored(app, catching_up, days_ago, DAILY)
    midnight = last_midnight(slipping)
    clock = Clock(midnight - timedelta(minutes=10))
    worker = Worker(app.state.engine, settings, clock=clock)
    await worker.clinic_round()
    order = [str(case.patient_id) for case in (slipping, catching_up)]

    async def walked() -> tuple[list[str], list[float]]:
        first, [one] = await read(client, clinic, limit=1)
        _, [two] = await read(client, clinic, limit=1, cursor=first["next_cursor"])
        return [one["patient_id"], two["patient_id"]], [
            row["last_7_days"]["adherence_percent"] for row in (one, two)
        ]

    with records_read(app, clinic) as computed:
        _, rows = await read(client, clinic)
        assert ([r["patient_id"] for r in rows], await walked()) == (
            order,
            (order, [85.7, 100.0]),
        )
    assert computed == set()
    clock.now = datetime.now(UTC)
    await worker.clinic_round()
    with statements_run(app.state.engine, lambda statement: "sort_key" in statement) as pages:
        assert await walked() == (order, [85.7, 100.0])
    for plan in await unsorted_plans(app.state.engine, pages):
        assert "ix_adherence_rollup_clinic_percent_7d" in plan, plan


async def test_a_plan_activated_from_a_past_start_shows_at_once(
    client: AsyncClient, clinic: Clinic
) -> None:
    """A plan's first active version governs from its start date, even a past one: the
    figures follow as soon as the plan is written, as they follow records (a plan's
    versions mark the patient's row stale as they are made)."""
    clinician = Actor("clinician", clinic.headers["Authorization"].removeprefix("Bearer "))
    made = await new_patient(client, clinician, time_zone="UTC")
    case = Case(uuid.UUID(made["id"]), uuid.uuid4(), "UTC")
    _, rows = await read(client, clinic)
    assert row_of(rows, case)["last_7_days"]["expected"] == 0.0

    start = case.today - timedelta(days=20)
    daily = plan_item(schedule={"days_of_week": EVERY_DAY})
    await active_plan(client, clinician, case.patient_id, start_date=str(start), items=[daily])
    _, rows = await read(client, clinic)
    row = row_of(rows, case)
    assert (row["last_7_days"]["expected"], row["last_30_days"]["expected"]) == (7.0, 20.0)
    await assert_summary_equals(client, clinic, case, row)
