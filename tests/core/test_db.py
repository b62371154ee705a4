"""insert_many: many rows in one statement, in the order given, each with the shared values,
conflicts skipped on request, and values checked by the table as a plain INSERT would. The
engine's pool: connections the server ended are replaced before use."""

import asyncio
import uuid

import psycopg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col, select

from app.core.bulk import insert_many
from app.core.columns import utcnow
from app.core.db import libpq_url, transaction
from app.sync.models import Change
from tests.conftest import World

CHANGES = Change.__table__  # type: ignore[attr-defined]


async def test_rows_go_in_in_the_order_given_each_with_the_shared_values(
    app: FastAPI, world: World
) -> None:
    resource_ids = [str(uuid.uuid4()) for _ in range(5)]
    now = utcnow()
    async with transaction(app.state.engine) as session:
        await insert_many(
            session,
            CHANGES,
            [{"resource_id": r, "operation": "create", "version": 1} for r in resource_ids],
            common={"clinic_id": world.clinic1, "resource_type": "test_row", "occurred_at": now},
        )
        stored = (
            await session.exec(
                select(
                    Change.resource_id, Change.clinic_id, Change.resource_type, Change.occurred_at
                )
                .where(col(Change.resource_id).in_(resource_ids))
                .order_by(col(Change.id))
            )
        ).all()
        await session.rollback()
    assert [row[0] for row in stored] == resource_ids
    assert {row[1:] for row in stored} == {(world.clinic1, "test_row", now)}


async def test_skipping_conflicts_gives_back_only_the_keys_it_inserted(
    app: FastAPI, world: World
) -> None:
    taken, new = 10**12 + uuid.uuid4().int % 10**6, 2 * 10**12 + uuid.uuid4().int % 10**6
    common = {
        "clinic_id": world.clinic1,
        "resource_type": "test_row",
        "operation": "create",
        "occurred_at": utcnow(),
    }
    async with transaction(app.state.engine) as session:
        first = await insert_many(
            session, CHANGES, [{"id": taken, "resource_id": "first"}], common=common
        )
        again = await insert_many(
            session,
            CHANGES,
            [{"id": taken, "resource_id": "again"}, {"id": new, "resource_id": "new"}],
            common=common,
            skip_conflicts=True,
        )
        kept = (await session.get_one(Change, taken)).resource_id
        await session.rollback()
    assert first == set()
    assert again == {new}
    assert kept == "first"


async def test_a_value_too_long_for_its_column_is_refused_not_cut_short(
    app: FastAPI, world: World, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite does not hold strings to a column's length.")
    too_long = psycopg.errors.StringDataRightTruncation
    with pytest.raises(too_long):
        async with transaction(app.state.engine) as session:
            await insert_many(
                session,
                CHANGES,
                [{"resource_id": "x" * 65, "operation": "create"}],  # the column holds 64
                common={
                    "clinic_id": world.clinic1,
                    "resource_type": "test_row",
                    "occurred_at": utcnow(),
                },
            )


async def test_a_request_after_the_database_ended_the_pooled_connections_is_answered(
    app: FastAPI, world: World, client: AsyncClient
) -> None:
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to end connections.")
    clinician = world["clinician1"].headers
    before = await client.get("/v1/patients", headers=clinician)
    assert before.status_code == 200, before.text
    # As a restart of the database, or an administrator ending sessions, would: every
    # backend of this database but the one that ends them.
    url = libpq_url(app.state.engine.url.render_as_string(hide_password=False))
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert ended
    await asyncio.sleep(0.1)  # the ending reaches the connections

    after = await client.get("/v1/patients", headers=clinician)
    assert after.status_code == 200, after.text
    assert after.json() == before.json()
