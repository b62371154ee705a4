"""The worker computes each patient's next day's overview figures shortly before their
local midnight (`rollups.AHEAD`), a chunk of patients a transaction, and moves them into
place once it has passed; a plan version made after they were computed spends them."""

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.adherence import rollups
from app.adherence.models import AdherenceRollup
from app.auth import accounts
from app.auth import service as auth_service
from app.auth.models import Role
from app.core.config import Settings
from app.core.db import transaction
from app.plans.models import Plan, PlanVersion
from app.worker.runner import Worker
from tests.adherence.test_overview import (
    DAILY,
    HONOLULU,
    TONGATAPU,
    Case,
    Clinic,
    assert_summary_equals,
    last_midnight,
    patient,
    read,
    records_read,
    row_of,
    stored,
)
from tests.conftest import PASSWORD
from tests.webhooks import Clock


@pytest.fixture
async def clinic(app: FastAPI) -> Clinic:
    async with transaction(app.state.engine) as session:
        made = await accounts.create_clinic(session, "Midnight Clinic")
        email = f"midnight-{uuid.uuid4().hex[:8]}@clinic.test"
        secrets = app.state.secrets
        await accounts.create_clinician(session, secrets, made.id, email, PASSWORD, Role.admin)
        token = await auth_service.password_grant(session, secrets, email, PASSWORD, None)
    return Clinic(made.id, {"Authorization": f"Bearer {token.access_token}"})


async def rollup(app: FastAPI, case: Case) -> AdherenceRollup:
    async with transaction(app.state.engine) as session:
        return await session.get_one(AdherenceRollup, case.patient_id)


async def test_only_patients_whose_midnight_is_near_are_computed_ahead(
    app: FastAPI, settings: Settings, clinic: Clinic
) -> None:
    """Honolulu's midnight is an hour before Tongatapu's (UTC-10 and UTC+13): ten minutes
    before the first, the worker computes that patient's next day only; once it has
    passed, the worker's round moves those figures into place without reading a record."""
    near = await patient(app, clinic, HONOLULU, [(60, [DAILY])])
    far = await patient(app, clinic, TONGATAPU, [(60, [DAILY])])
    for case in (near, far):
        await stored(app, case, 1, DAILY)
    midnight = last_midnight(near) + timedelta(days=1)
    clock = Clock(midnight - timedelta(minutes=10))
    worker = Worker(app.state.engine, settings, clock=clock)
    await worker.clinic_round()

    ahead, other = await rollup(app, near), await rollup(app, far)
    tomorrow = midnight.date()
    assert (ahead.as_of, ahead.valid_until) == (tomorrow - timedelta(days=1), midnight)
    assert (ahead.next_as_of, ahead.next_valid_until) == (
        tomorrow,
        midnight + timedelta(days=1),
    )
    assert other.valid_until > midnight + rollups.AHEAD
    assert other.next_valid_until is None

    clock.advance(minutes=11)
    with records_read(app, clinic) as computed:
        await worker.clinic_round()
    assert computed == set()
    taken = await rollup(app, near)
    assert (taken.as_of, taken.valid_until, taken.next_valid_until) == (
        tomorrow,
        midnight + timedelta(days=1),
        None,
    )
    assert (taken.expected_7d, taken.credited_7d) == (7.0, 1.0)
    assert (taken.expected_7d, taken.credited_7d) == (
        ahead.next_expected_7d,
        ahead.next_credited_7d,
    )


async def new_version(app: FastAPI, clinic: Clinic, case: Case, made: datetime) -> None:
    """The patient's plan paused at ``made`` (written straight to the tables, as then): the
    day it was made expects nothing."""
    async with transaction(app.state.engine) as session:
        plan = await session.get_one(Plan, (clinic.id, case.plan_id))
        plan.version, plan.status = 2, "paused"
        session.add(plan)
        session.add(
            PlanVersion(
                plan_id=plan.id,
                clinic_id=clinic.id,
                number=2,
                status="paused",
                title="Overview case",
                start_date=date(2025, 1, 1),
                items=[DAILY],
                created_at=made,
            )
        )


async def test_a_plan_version_made_after_the_figures_were_computed_spends_them(
    app: FastAPI, settings: Settings, client: AsyncClient, clinic: Clinic
) -> None:
    """The next day's windows end with the day the figures were computed on, so a plan
    version made later that evening governs a day they hold: as it is written, the row is
    marked stale; the worker's next round computes it again, and a reader after midnight
    recomputes a patient whose version came after the last round."""
    seen = await patient(app, clinic, HONOLULU, [(60, [DAILY])])
    unseen = await patient(app, clinic, HONOLULU, [(60, [DAILY])])
    for case in (seen, unseen):
        for days_ago in (1, 2, 3):
            await stored(app, case, days_ago, DAILY)
    midnight = last_midnight(seen)
    clock = Clock(midnight - timedelta(minutes=10))
    worker = Worker(app.state.engine, settings, clock=clock)
    await worker.clinic_round()
    assert (await rollup(app, seen)).next_expected_7d == 7.0

    await new_version(app, clinic, seen, midnight - timedelta(minutes=9))
    clock.advance(minutes=8)
    await worker.clinic_round()
    await new_version(app, clinic, unseen, midnight - timedelta(minutes=1))

    with records_read(app, clinic) as computed:
        _, rows = await read(client, clinic)
    assert computed == {unseen.patient_id}
    for case in (seen, unseen):
        row = row_of(rows, case)
        # Paused since the evening of the last day: 6 days expected, not 7.
        assert (row["as_of"], row["last_7_days"]["expected"]) == (str(case.today), 6.0)
        await assert_summary_equals(client, clinic, case, row)


async def test_a_large_clinic_is_computed_ahead_a_chunk_a_transaction(
    app: FastAPI,
    settings: Settings,
    client: AsyncClient,
    clinic: Clinic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round computes every patient near their midnight, however many chunks it takes
    (two patients a chunk here, as a thousand in production)."""
    monkeypatch.setattr(rollups, "CHUNK", 2)
    cases = [await patient(app, clinic, "UTC", [(60, [DAILY])]) for _ in range(5)]
    for n, case in enumerate(cases):
        for days_ago in range(1, n + 2):
            await stored(app, case, days_ago, DAILY)
    midnight = datetime.combine(datetime.now(UTC).date(), time(0), ZoneInfo("UTC"))
    worker = Worker(app.state.engine, settings, clock=Clock(midnight - timedelta(minutes=1)))
    await worker.clinic_round()

    with records_read(app, clinic) as computed:
        _, rows = await read(client, clinic)
    assert computed == set()
    for case in cases:
        await assert_summary_equals(client, clinic, case, row_of(rows, case))
