"""On PostgreSQL, where writers run side by side: a follower of the feed sees every change
exactly once, in commit order, even when a transaction that drew its change early commits
after others, and wakes on commits of other processes (NOTIFY)."""

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select

from app.auth.models import ActorKind, Role
from app.auth.principal import CLINICIAN_SCOPES, Caller, Principal
from app.core.db import libpq_url, make_engine, transaction
from app.core.pagination import decode_cursor
from app.patients import service as patients
from app.patients.schemas import PatientCreate
from app.sync.models import Change
from tests.conftest import Actor, World
from tests.feed import read, tail
from tests.plans import changed_plan, new_patient, new_plan


@pytest.fixture(autouse=True)
def _postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite lets one writer in at a time: there is no order to get wrong.")


def caller_of(actor: Actor) -> Caller:
    assert actor.id is not None
    assert actor.clinic_id is not None
    principal = Principal(
        kind=ActorKind.clinician,
        id=actor.id,
        clinic_id=actor.clinic_id,
        session_id=uuid.uuid4(),
        scopes=CLINICIAN_SCOPES,
        role=Role.admin,
    )
    return Caller(principal=principal, ip=None, request_id=None)


def patient_body() -> PatientCreate:
    return PatientCreate(
        reference=f"HELD-{uuid.uuid4().hex[:12]}",
        affected_side="left",
        cause="stroke",
        time_zone="Europe/Lisbon",
    )


async def writer(client: AsyncClient, actor: Actor, rounds: int) -> None:
    """Creates patients and edits their plans, one request at a time."""
    for _ in range(rounds):
        patient = await new_patient(client, actor)
        plan, etag = await new_plan(client, actor, patient["id"])
        await changed_plan(client, actor, plan["id"], etag, status="active")


async def test_a_follower_sees_every_change_once_in_commit_order(
    app: FastAPI, client: AsyncClient, world: World
) -> None:
    admin = world["admin1"]
    start = await tail(client, admin)
    seen: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def follower() -> None:
        cursor = start
        while not done.is_set() or (await read(client, admin, cursor))["items"]:
            page = await read(client, admin, cursor, wait=1, limit=7)
            seen.extend(page["items"])
            cursor = page["next_cursor"]

    following = asyncio.create_task(follower())
    # Another process's pool: the held writer draws its change id first, then stays open.
    other = make_engine(app.state.settings)
    try:
        async with transaction(other) as held:
            early = await patients.create(held, caller_of(admin), patient_body())
            await held.flush()
            writers = [asyncio.create_task(writer(client, admin, 3)) for _ in range(3)]
            # The other clinic's writers are not held up by this clinic's open writer.
            await asyncio.wait_for(writer(client, world["clinician2"], 2), 10)
            await asyncio.sleep(0.5)
            assert not any(task.done() for task in writers)  # they wait for the held one
            assert seen == []  # nothing of this clinic committed yet
        await asyncio.wait_for(asyncio.gather(*writers), 30)
    finally:
        await other.dispose()
    done.set()
    await asyncio.wait_for(following, 10)

    async with transaction(app.state.engine) as session:
        (after,) = decode_cursor(start, 1)
        committed = (
            await session.exec(
                select(Change.id, Change.resource_id)  # type: ignore[call-overload]
                .where(Change.clinic_id == world.clinic1, Change.id > after)
                .order_by(Change.id)
            )
        ).all()
    positions = [decode_cursor(item["cursor"], 1)[0] for item in seen]
    assert positions == [row[0] for row in committed]  # each once, none missing or extra
    assert positions == sorted(positions)
    assert seen[0]["id"] == str(early.id)  # it committed first, so it comes first
    assert len(seen) == 1 + 3 * 3 * 3


async def test_a_waiting_follower_wakes_on_another_process_commit(
    app: FastAPI, client: AsyncClient, world: World
) -> None:
    admin = world["admin1"]
    cursor = await tail(client, admin)
    waiting = asyncio.create_task(read(client, admin, cursor, wait=20))
    await asyncio.sleep(0.5)  # the listener is up and the reader waits
    assert not waiting.done()
    # A writer of another process: only its NOTIFY reaches this one.
    resource = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(
        libpq_url(app.state.settings.database_url)
    ) as connection:
        await connection.execute(
            "SELECT pg_advisory_xact_lock(%s), pg_notify('dorsi_changes', %s)",
            (int.from_bytes(world.clinic1.bytes[:8], "big", signed=True), str(world.clinic1)),
        )
        await connection.execute(
            "INSERT INTO change (clinic_id, resource_type, resource_id, operation, version,"
            " occurred_at) VALUES (%s, 'plan_template', %s, 'delete', 2, now())",
            (world.clinic1, str(resource)),
        )
    page = await asyncio.wait_for(waiting, 0.9)  # well before the reader would look again
    assert [(i["id"], i["operation"], i["data"]) for i in page["items"]] == [
        (str(resource), "delete", None)
    ]
