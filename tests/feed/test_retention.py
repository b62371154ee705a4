"""Retention of the change feed: `dorsi prune-changes` deletes what is older than
DORSI_CHANGE_RETENTION_DAYS, and a cursor from before what is kept answers 410."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import update

from app.core.columns import utcnow
from app.core.db import execute, transaction
from app.core.pagination import decode_cursor
from app.sync.models import Change
from app.sync.retention import prune_changes
from tests.conftest import Actor, build_world
from tests.core.problems import assert_problem
from tests.feed import read
from tests.plans import new_patient

DORSI = Path(sys.executable).with_name("dorsi")


@pytest.fixture
async def admin(app: FastAPI) -> Actor:
    """The admin of a clinic of its own, whose changes no other test reads."""
    return (await build_world(app))["admin1"]


async def age(app: FastAPI, actor: Actor, through_cursor: str, days: int) -> None:
    """Make the clinic's changes up to the cursor ``days`` old."""
    (through,) = decode_cursor(through_cursor, 1)
    async with transaction(app.state.engine) as session:
        await execute(
            session,
            update(Change)
            .where(Change.clinic_id == actor.clinic_id, Change.id <= through)  # type: ignore[arg-type]
            .values(occurred_at=utcnow() - timedelta(days=days)),
        )


def run_prune(database_url: str, days: int) -> str:
    env = {"PATH": "/usr/bin:/bin", "DORSI_DATABASE_URL": database_url}
    env["DORSI_CHANGE_RETENTION_DAYS"] = str(days)
    done = subprocess.run(
        [str(DORSI), "prune-changes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_pruned_changes_are_gone_and_an_older_cursor_answers_410(
    app: FastAPI, client: AsyncClient, admin: Actor
) -> None:
    for _ in range(3):
        await new_patient(client, admin)
    first, second, third = (await read(client, admin, None))["items"]
    await age(app, admin, second["cursor"], days=91)

    out = run_prune(app.state.settings.database_url, days=90)
    assert out.startswith("pruned 2 changes older than 90 days in 1 clinics"), out

    # From the oldest kept: the third; from the horizon itself: the third too.
    assert (await read(client, admin, None))["items"] == [third]
    assert (await read(client, admin, second["cursor"]))["items"] == [third]
    # From before it: the first two are missed, and the client is told to export again.
    for stale in (first["cursor"], "WzBd"):  # "WzBd": the cursor of an empty feed, [0]
        gone = await client.get("/v1/changes", params={"cursor": stale}, headers=admin.headers)
        problem = assert_problem(gone, 410, "gone")
        assert "export again" in problem["detail"].lower()


async def test_changes_within_retention_are_kept(
    app: FastAPI, client: AsyncClient, admin: Actor
) -> None:
    await new_patient(client, admin)
    await new_patient(client, admin)
    first, second = (await read(client, admin, None))["items"]
    await age(app, admin, first["cursor"], days=89)
    pruned = await prune_changes(app.state.engine, timedelta(days=90))
    assert admin.clinic_id not in pruned
    kept = (await read(client, admin, None))["items"]
    assert [i["cursor"] for i in kept] == [first["cursor"], second["cursor"]]


async def test_a_clinic_whose_changes_were_all_pruned_follows_on_from_its_horizon(
    app: FastAPI, client: AsyncClient, admin: Actor
) -> None:
    await new_patient(client, admin)
    (only,) = (await read(client, admin, None))["items"]
    await age(app, admin, only["cursor"], days=100)
    pruned = await prune_changes(app.state.engine, timedelta(days=90))
    assert admin.clinic_id is not None
    assert pruned[admin.clinic_id] == 1
    assert admin.clinic_id not in await prune_changes(app.state.engine, timedelta(days=90))

    empty = await read(client, admin, None)
    assert empty == {"items": [], "next_cursor": only["cursor"]}  # from the horizon on
    patient = await new_patient(client, admin)
    page = await read(client, admin, empty["next_cursor"])
    assert [(i["id"], i["operation"]) for i in page["items"]] == [(patient["id"], "create")]
