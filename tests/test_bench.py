"""The benchmarks keep working: the adherence benchmark's data (what its generator copies
in reads back through the API exactly like what the API wrote, so the benchmark measures
the real thing), and a short run of the load test."""

import os
import random
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from app.adherence.models import AdherenceRecord
from app.core.db import transaction
from app.main import create_app, dispose_engines
from bench.adherence_data import load, session_fields
from tests.conftest import (
    POSTGRES_ADMIN_URL,
    DatabaseFactory,
    make_client,
    migrated,
    settings_for,
)


async def test_generated_data_reads_back_through_the_api(
    backend: str, new_database: DatabaseFactory
) -> None:
    if backend != "postgresql":
        pytest.skip("The generator copies into PostgreSQL.")
    url = await migrated(new_database())
    data = load(url, patients=12, records=2_000, seed=3)
    assert len(data.patients) == 12
    app = create_app(settings_for(url))
    try:
        async with make_client(app) as http:
            token = await http.post(
                "/v1/auth/token",
                data={"grant_type": "password", "username": data.email, "password": data.password},
            )
            assert token.status_code == 200, token.text
            staff = {"Authorization": f"Bearer {token.json()['access_token']}"}

            # The year's summary counts every session the table holds for those days.
            heavy = data.patient
            until = datetime.now(ZoneInfo(heavy.time_zone)).date()
            since = until - timedelta(days=364)
            summary = await http.get(
                f"/v1/patients/{heavy.id}/adherence/summary",
                params={"from": str(since), "to": str(until)},
                headers=staff,
            )
            assert summary.status_code == 200, summary.text
            totals = summary.json()["totals"]
            async with transaction(app.state.engine) as session:
                counted = await session.exec(
                    select(func.count()).where(
                        AdherenceRecord.patient_id == heavy.id,
                        col(AdherenceRecord.performed_on) >= since,
                    )
                )
                stored = counted.one()
            assert stored > 0
            assert totals["completed"] + totals["partial"] + totals["skipped"] == stored
            assert totals["expected"] > 0

            # Every patient is in the overview, with the time of their last upload.
            overview = await http.get(
                "/v1/adherence/overview", params={"limit": 100}, headers=staff
            )
            assert overview.status_code == 200, overview.text
            rows = {row["patient_id"]: row for row in overview.json()["items"]}
            assert set(rows) == {str(p.id) for p in data.patients}
            assert all(
                rows[str(p.id)]["last_upload_at"] is not None for p in data.patients if p.records
            )

            # A session made the way the benchmark makes them is accepted as new.
            person = data.patients[1]
            performed = datetime.now(ZoneInfo(person.time_zone)) - timedelta(hours=1)
            record = {
                "id": str(uuid.uuid4()),
                "plan_id": str(person.plan_id),
                "plan_version": person.plan_version,
                "item_id": str(person.item_ids[0]),
                "performed_at": performed.isoformat(),
                **session_fields(random.Random(1), data.items[0]),
            }
            upload = await http.post(
                "/v1/adherence/batch", json={"records": [record]}, headers=staff
            )
            assert upload.json()["results"][0]["result"] == "created", upload.text
    finally:
        await dispose_engines(app)


def test_the_load_test_runs_and_counts_every_record(backend: str) -> None:
    """A few seconds of bench.load with a few users, so that it keeps working: it exits 0
    only with no error and every record answered stored exactly once."""
    if backend != "postgresql":
        pytest.skip("The load test runs on PostgreSQL.")
    short = ["--seconds", "3", "--users", "4", "--patients", "12", "--records", "200"]
    ran = subprocess.run(
        [sys.executable, "-m", "bench.load", *short, "--api-processes", "2"],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "DORSI_BENCH_POSTGRES_URL": POSTGRES_ADMIN_URL},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "errors: 0;" in ran.stdout
    assert re.search(r"answered created or unchanged: [1-9]\d*, stored: [1-9]", ran.stdout)
    assert "lost: 0, duplicated: 0" in ran.stdout
    assert re.search(r"^upload +[1-9]", ran.stdout, re.MULTILINE), ran.stdout
