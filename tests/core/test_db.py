"""insert_many: many rows in one statement, in the order given, each with the shared values,
conflicts skipped on request, and values checked by the table as a plain INSERT would. The
engine's pool: connections the server ended are replaced before use."""

import asyncio
import uuid

import psycopg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from app.core.columns import utcnow
from app.core.db import libpq_url, retried, transaction
from app.core.driver import insert_many
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
    with pytest.raises(DBAPIError) as refused:
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
    assert isinstance(refused.value.orig, psycopg.errors.StringDataRightTruncation)


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


async def test_a_write_that_deadlocks_is_tried_again_and_succeeds(
    app: FastAPI, world: World, backend: str
) -> None:
    """`retried` goes back to its savepoint when the database ends the write as a deadlock
    victim, which gives up the write's locks, and tries again once the other is through."""
    if backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: it cannot deadlock.")
    first, second = (10**13 + uuid.uuid4().int % 10**9 + n for n in (0, 1))
    common = {
        "clinic_id": world.clinic1,
        "resource_type": "test_row",
        "operation": "create",
        "occurred_at": utcnow(),
    }
    insert = (
        'INSERT INTO "change" (id, clinic_id, resource_type, resource_id, operation,'
        " occurred_at) VALUES (%s, %s, 'test_row', 'other', 'create', now())"
        " ON CONFLICT DO NOTHING"
    )
    url = libpq_url(app.state.engine.url.render_as_string(hide_password=False))
    attempts = 0
    async with await psycopg.AsyncConnection.connect(url) as other:
        # The other transaction waits long before it checks for a deadlock: the write
        # under test is the one the database ends.
        await other.execute("SET deadlock_timeout = '30s'")
        await other.execute(insert, (second, world.clinic1))
        async with transaction(app.state.engine) as session:

            async def work() -> None:
                nonlocal attempts
                attempts += 1
                for key in (first, second):  # waits on `second`, which the other holds
                    await insert_many(
                        session,
                        CHANGES,
                        [{"id": key, "resource_id": "mine"}],
                        common=common,
                        skip_conflicts=True,
                    )

            writing = asyncio.create_task(retried(session, work))
            await asyncio.sleep(0.3)
            await other.execute(insert, (first, world.clinic1))  # a cycle: one must give way
            await other.commit()
            await writing
            await session.rollback()
        # The other's rows committed: out of clinic 1's change feed, which other tests follow.
        await other.execute('DELETE FROM "change" WHERE id IN (%s, %s)', (first, second))
        await other.commit()
    assert attempts == 2
