"""Schemathesis fuzzes the API as it is served, on PostgreSQL, as each kind of caller.

One uvicorn process serves a fresh database that `alembic upgrade head` made; `st run`
drives it with the committed contract (openapi.yaml) once per caller: its examples,
coverage, fuzzing and stateful phases (the stateful one follows the contract's links from
each create to the read, update and delete of what it made). Every answer must be no
server error, match its documented status, schema, content type and headers, and a
request that breaks the contract must not be accepted; an undeclared method answers 405.

The runs go at once. At the default counts they send about 9,500 cases for about 140 s
of CPU in all (server included): a little over a minute on two idle cores.
DORSI_FUZZ_EXAMPLES raises the counts and DORSI_FUZZ_SEED picks another seed. Each run
prints how many test cases it sent.
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from app.main import create_app, dispose_engines
from tests.conftest import (
    POSTGRES_ADMIN_URL,
    REQUIRE_POSTGRES,
    TEST_SECRET,
    World,
    build_world,
    migrated,
    settings_for,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = int(os.environ.get("DORSI_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("DORSI_FUZZ_SEED", "20261203"))
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "no_undocumented_header",  # tests/fuzz/hooks.py
)
# Who signs in (an admin, a clinician, a patient's app and a clinic system with every
# scope), with which phases, on which operations. The coverage phase (every boundary and
# every wrong type of every input, every undeclared method) is most of the cases: it runs
# for the admin, who reaches every staff operation, for the clinic system on what clinic
# systems use (FHIR, the feed, exports, webhooks), and for the patient's app on its own
# operations; elsewhere the clinic system's and the clinician's would repeat the admin's.
ALL_PHASES = "examples,coverage,fuzzing,stateful"
RUNS: dict[str, tuple[str, str, str | None]] = {
    "admin1": ("admin1", ALL_PHASES, None),
    "client_all": ("client_all", "examples,fuzzing,stateful", None),
    "client_all-coverage": ("client_all", "coverage", "^/(fhir/|v1/(changes|export/|webhooks))"),
    "clinician1": ("clinician1", "examples,fuzzing,stateful", None),
    "patient_a": ("patient_a", "examples,fuzzing,stateful", None),
    "patient_a-coverage": ("patient_a", "coverage", "^/v1/(me|adherence/batch|auth/)"),
}


@dataclass(frozen=True)
class Served:
    base: str
    world: World
    log: Path


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required but unreachable: {error}")
        pytest.skip("PostgreSQL is not reachable; the fuzzer runs on PostgreSQL only")
    name = f"dorsi_fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
async def served(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """uvicorn serving the migrated database, and the signed-in callers of `build_world`
    (their tokens last the whole run)."""
    settings = settings_for(await migrated(postgres_url), access_token_minutes=240)
    app = create_app(settings)
    try:
        world = await build_world(app)
    finally:
        await dispose_engines(app)
    port = _free_port()
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    env = {
        **os.environ,
        "DORSI_DATABASE_URL": postgres_url,
        "DORSI_ENVIRONMENT": "test",
        "DORSI_SECRET_KEY": TEST_SECRET,
        "DORSI_PASSWORD_HASHING": "fast",
        "DORSI_ACCESS_TOKEN_MINUTES": "240",
        # The fuzzer signs in and pairs far more often than a person would.
        "DORSI_SIGN_IN_RATE_LIMIT": "100000/minute",
        "DORSI_SIGN_IN_ACCOUNT_CEILING": "100000/minute",
        "DORSI_LOG_LEVEL": "WARNING",
    }
    command = [
        *(str(BIN / "python"), "-m", "uvicorn", "app.main:app"),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
    ]
    with log.open("wb") as output:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if server.poll() is not None:
                pytest.fail(f"uvicorn ended:\n{log.read_text()}")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"uvicorn did not answer:\n{log.read_text()}")
        yield Served(base, world, log)
    finally:
        server.terminate()
        server.wait(10)


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    cases: int
    seconds: float


@pytest.fixture(scope="module")
def runs(served: Served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """`st run` as each caller, all at once against the one server (on two cores, the
    runs' generation and the server's answers overlap)."""
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    running = {}
    for name, (caller, phases, paths) in RUNS.items():
        home = tmp_path_factory.mktemp(f"st-{name}")
        command = [
            *(str(BIN / "st"), "run", str(ROOT / "openapi.yaml"), "--url", served.base),
            *("--header", f"Authorization: Bearer {served.world[caller].token}"),
            *("--checks", ",".join(CHECKS)),
            *("--phases", phases),
            *(("--include-path-regex", paths) if paths else ()),
            *("--max-examples", str(EXAMPLES), "--seed", str(SEED)),
            *("--workers", "1", "--generation-database", "none", "--no-color"),
            *("--report", "json", "--report-json-path", str(home / "report.json")),
        ]
        output = (home / "output.txt").open("w")
        process = subprocess.Popen(command, cwd=home, env=env, stdout=output, stderr=output)
        running[name] = (process, home, output)
    done = {}
    for name, (process, home, output) in running.items():
        returncode = process.wait()
        output.close()
        done[name] = Run(
            returncode,
            (home / "output.txt").read_text(),
            _cases(home / "report.json"),
            time.monotonic() - started,
        )
    return done


@pytest.mark.parametrize("caller", RUNS)
def test_fuzz(
    runs: dict[str, Run], served: Served, caller: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runs[caller]
    with capsys.disabled():  # shown in every run, not only a failing one
        print(
            f"\nschemathesis as {caller}: {run.cases} test cases, "
            f"done {run.seconds:.0f} s after the runs began"
        )
    assert run.cases > 0, run.output
    if run.returncode != 0:
        pytest.fail(
            f"schemathesis as {caller} failed ({run.cases} cases):\n{run.output[-60000:]}"
            f"\n--- server log ---\n{served.log.read_text()[-20000:]}"
        )


def _cases(report: Path) -> int:
    """How many test cases the run generated and sent, from its JSON report."""
    if not report.exists():
        return 0
    generated: int = json.loads(report.read_text())["test_cases"]["generated"]
    return generated
