"""Load benchmark: a patient's `GET /v1/me/today` on PostgreSQL, against a bare Starlette
app returning the same bytes, in one run.

    python -m bench.today [--seconds 5] [--connections 32] [--rounds 3]

Dorsi runs under uvicorn with one worker on a fresh PostgreSQL database (set
DORSI_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres, to
an admin connection that may create databases). The patient has the global foot-drop
template as an active plan; every request goes through the documented route, which checks
the token's session, reads the plan and writes an audit event, as in production. Target: at
least 0.15 of the bare app.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import orjson
import psycopg
from sqlalchemy import make_url

from app.auth import accounts
from app.auth.models import Role
from app.auth.security import Secrets
from app.core.config import Settings
from app.core.db import make_engine, transaction
from bench.harness import PYTHON, ROOT, ensure_wrk, raw_get, record, server, wrk

ADMIN_URL = os.environ.get(
    "DORSI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TARGET = 0.15
PASSWORD = "bench-password-long-enough"
SECRET = "bench-secret-" + "x" * 32


def prepare(database_url: str) -> None:
    """Migrate the new database and load the catalog."""
    env = {**os.environ, "DORSI_DATABASE_URL": database_url, "DORSI_SECRET_KEY": SECRET}
    subprocess.run(
        [PYTHON, "-m", "app.cli", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def create_clinician(database_url: str) -> None:
    """A clinic and its clinician, straight into the database (no route makes clinics)."""
    settings = Settings(database_url=database_url, secret_key=SECRET)
    engine = make_engine(settings)
    try:
        async with transaction(engine) as session:
            clinic = await accounts.create_clinic(session, "Bench Clinic")
            await accounts.create_clinician(
                session, Secrets(settings), clinic.id, "bench@clinic.test", PASSWORD, Role.clinician
            )
    finally:
        await engine.dispose()


def patient_token(base: str, database_url: str) -> str:
    """Sets up a patient with an active plan through the API; returns the app's token."""
    asyncio.run(create_clinician(database_url))
    with httpx.Client(base_url=base) as http:
        token = (
            http.post(
                "/v1/auth/token",
                data={
                    "grant_type": "password",
                    "username": "bench@clinic.test",
                    "password": PASSWORD,
                },
            )
            .raise_for_status()
            .json()["access_token"]
        )
        staff = {"Authorization": f"Bearer {token}"}
        patient = (
            http.post(
                "/v1/patients",
                headers=staff,
                json={
                    "reference": "BENCH-1",
                    "affected_side": "left",
                    "cause": "stroke",
                    "time_zone": "Europe/Lisbon",
                },
            )
            .raise_for_status()
            .json()
        )
        template = http.get("/v1/plan-templates", headers=staff).raise_for_status().json()
        plan = http.post(
            f"/v1/patients/{patient['id']}/plans",
            headers=staff,
            json={
                "template_id": template["items"][0]["id"],
            },
        ).raise_for_status()
        http.patch(
            f"/v1/plans/{plan.json()['id']}",
            json={"status": "active"},
            headers={**staff, "If-Match": plan.headers["etag"]},
        ).raise_for_status()
        code = http.post(f"/v1/patients/{patient['id']}/access-codes", headers=staff)
        paired = http.post("/v1/auth/pair", json={"code": code.raise_for_status().json()["code"]})
        access: str = paired.raise_for_status().json()["access_token"]
        return access


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ensure_wrk()

    name = f"dorsi_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    database_url = url.render_as_string(hide_password=False)
    try:
        prepare(database_url)
        env = {
            "DORSI_DATABASE_URL": database_url,
            "DORSI_SECRET_KEY": SECRET,
            "DORSI_ENVIRONMENT": "test",
        }
        with server("app.main:app", env) as dorsi, tempfile.TemporaryDirectory() as tmp:
            token = patient_token(dorsi, database_url)
            auth = {"Authorization": f"Bearer {token}"}
            # As wrk asks for it: without Accept-Encoding, so not compressed.
            first = raw_get(dorsi, "/v1/me/today", auth)
            assert first.status == 200, first.body
            assert orjson.loads(first.body)["items"], "the benchmark patient has nothing due today"
            recorded = Path(tmp) / "response.json"
            record(recorded, "/v1/me/today", {"identity": first})
            with server("bench.bare_app:app", {"BENCH_RESPONSE": str(recorded)}) as bare:
                wrk(dorsi + "/v1/me/today", 1, args.connections, None, auth)
                wrk(bare + "/v1/me/today", 1, args.connections, None, auth)
                ours, theirs = [], []
                for _ in range(args.rounds):
                    ours.append(
                        wrk(dorsi + "/v1/me/today", args.seconds, args.connections, None, auth)
                    )
                    theirs.append(
                        wrk(bare + "/v1/me/today", args.seconds, args.connections, None, auth)
                    )
        d, b = statistics.median(ours), statistics.median(theirs)
        ratio = d / b
        print(f"{'case':28} {'dorsi rps':>10} {'bare rps':>10} {'ratio':>7} {'target':>7}")
        target = f">= {TARGET}"
        print(
            f"{'GET /v1/me/today (PG)':28} {d:10.0f} {b:10.0f} {ratio:7.2f} {target:>7}"
            f"  {'ok' if ratio >= TARGET else 'BELOW TARGET'}"
        )
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    sys.exit(0 if ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
