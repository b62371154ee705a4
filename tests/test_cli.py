"""The `dorsi` command as an operator runs it: serve a fresh database, then check health."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.main import create_app, dispose_engines
from tests.conftest import World, make_client, migrated, settings_for

DORSI = Path(sys.executable).with_name("dorsi")
START_TIMEOUT_SECONDS = 30
CATALOG_SIZE = 8


@dataclass(frozen=True)
class Server:
    url: str
    stdout: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment(**settings: str) -> dict[str, str]:
    """The caller's environment without its DORSI_* settings, plus these."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("DORSI_")}
    return values | {f"DORSI_{name.upper()}": value for name, value in settings.items()}


def wait_until_up(process: subprocess.Popen[bytes], url: str, stderr: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dorsi serve exited with {process.returncode}: {stderr.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"dorsi serve did not answer within {START_TIMEOUT_SECONDS}s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`dorsi serve` on a database file that does not exist yet."""
    home = tmp_path_factory.mktemp("serve")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stdout, stderr = home / "stdout.log", home / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(DORSI), "serve", "--port", str(port)],
            env=environment(database_url=f"sqlite:///{home / 'dorsi.db'}"),
            cwd=home,
            stdout=out,
            stderr=err,
        )
    try:
        wait_until_up(process, url, stderr)
        yield Server(url, stdout)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_migrates_a_new_database_and_serves_the_catalog(server: Server) -> None:
    response = httpx.get(f"{server.url}/v1/exercises", timeout=10)
    assert response.status_code == 200
    assert len(response.json()["items"]) == CATALOG_SIZE


def test_serve_logs_each_request_as_a_json_line_on_stdout(server: Server) -> None:
    request_id = f"cli-{uuid.uuid4().hex}"
    httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": request_id}, timeout=10)
    found = logged(server.stdout, request_id)
    assert len(found) == 1
    assert found[0]["route"] == "/healthz"
    assert found[0]["status"] == 200


def logged(stdout: Path, request_id: str) -> list[dict[str, Any]]:
    """The request's log lines, waiting a moment: a line is written just after its
    response is sent."""
    deadline = time.monotonic() + 0.1
    while True:
        found = [
            orjson.loads(line)
            for line in stdout.read_bytes().splitlines()
            if request_id.encode() in line
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def test_a_killed_server_has_lost_no_log_line(tmp_path: Path) -> None:
    """No line waits in a buffer: a process killed right after answering has logged it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(DORSI), "serve", "--port", str(port)],
            env=environment(database_url=f"sqlite:///{tmp_path / 'dorsi.db'}"),
            cwd=tmp_path,
            stdout=out,
            stderr=err,
        )
    try:
        wait_until_up(process, url, stderr)
        request_id = f"killed-{uuid.uuid4().hex}"
        httpx.get(f"{url}/v1/exercises", headers={"X-Request-ID": request_id}, timeout=10)
        time.sleep(0.1)
    finally:
        process.kill()
        process.wait()
    assert [line["status"] for line in logged(stdout, request_id)] == [200]


def test_healthcheck_exits_0_when_the_server_answers(server: Server) -> None:
    result = subprocess.run(
        [str(DORSI), "healthcheck", "--url", f"{server.url}/healthz"],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "healthy" in result.stdout


def test_healthcheck_exits_1_when_nothing_listens() -> None:
    # In process: the script's start-up was paid above, and the command is the same.
    result = CliRunner().invoke(cli, ["healthcheck", "--url", f"http://127.0.0.1:{free_port()}/"])
    assert result.exit_code == 1
    assert "unhealthy" in result.stderr


async def test_a_clinic_and_an_api_client_made_with_the_command_can_sign_in(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = environment(database_url=database_url)

    def dorsi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DORSI), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    assert dorsi("migrate").returncode == 0
    made = dorsi(
        "create-clinic",
        "--name",
        "North Clinic",
        "--admin-email",
        "admin@north.test",
        "--admin-password",
        "a long enough password",
    )
    assert made.returncode == 0, made.stderr
    clinic_id = made.stdout.split()[1]
    short = dorsi(
        "create-clinic", "--name", "X", "--admin-email", "x@x.test", "--admin-password", "short"
    )
    assert short.returncode != 0
    refused = dorsi(
        "create-client", "--clinic-id", clinic_id, "--name", "EHR", "--scope", "everything"
    )
    assert refused.returncode != 0
    assert "everything" in refused.stderr
    client = dorsi(
        "create-client", "--clinic-id", clinic_id, "--name", "EHR", "--scope", "patients:read"
    )
    assert client.returncode == 0, client.stderr
    values = dict(line.split(" ", 1) for line in client.stdout.splitlines())

    app = create_app(settings_for(database_url))
    try:
        async with make_client(app) as http:
            admin = await http.post(
                "/v1/auth/token",
                data={
                    "grant_type": "password",
                    "username": "admin@north.test",
                    "password": "a long enough password",
                },
            )
            assert admin.status_code == 200
            system = await http.post(
                "/v1/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": values["client_id"],
                    "client_secret": values["client_secret"],
                },
            )
            assert system.status_code == 200
            assert system.json()["scope"] == "patients:read"
            staff = {"Authorization": f"Bearer {admin.json()['access_token']}"}
            # What the commands made is in the clinic's audit trail, made by the system.
            trail = await http.get("/v1/audit-events", headers=staff)
            assert trail.status_code == 200, trail.text
            assert [
                (e["actor_kind"], e["actor_id"], e["action"], e["resource_type"], e["changes"])
                for e in trail.json()["items"]
            ] == [
                (
                    "system",
                    None,
                    "create",
                    "api_client",
                    {
                        "name": {"before": None, "after": "EHR"},
                        "scopes": {"before": None, "after": ["patients:read"]},
                    },
                ),
                (
                    "system",
                    None,
                    "create",
                    "clinician",
                    {
                        "email": {"before": None, "after": "admin@north.test"},
                        "role": {"before": None, "after": "admin"},
                        "active": {"before": None, "after": True},
                    },
                ),
                (
                    "system",
                    None,
                    "create",
                    "clinic",
                    {"name": {"before": None, "after": "North Clinic"}},
                ),
            ]
            assert values["client_secret"] not in trail.text
            for reference in ("N-1", "N-2"):
                made_patient = await http.post(
                    "/v1/patients",
                    json={
                        "reference": reference,
                        "affected_side": "left",
                        "cause": "stroke",
                        "time_zone": "Pacific/Auckland",
                    },
                    headers=staff,
                )
                assert made_patient.status_code == 201, made_patient.text
    finally:
        await dispose_engines(app)

    # New patients' overview figures are stale until recomputed: the worker does it, and
    # stops cleanly on SIGTERM.
    worker = subprocess.Popen(
        [str(DORSI), "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while await rollup_rows(database_url) < 2:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            if time.monotonic() > deadline:
                worker.kill()
                pytest.fail(f"the worker made no overview figures: {worker.communicate()}")
            await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert b"worker_stopped" in out + err


async def rollup_rows(database_url: str) -> int:
    from sqlalchemy import func, select

    from app.adherence.models import AdherenceRollup
    from app.core.db import execute, make_engine, transaction

    engine = make_engine(settings_for(database_url))
    try:
        async with transaction(engine) as session:
            counted = select(func.count()).select_from(AdherenceRollup)
            return int((await execute(session, counted)).scalar_one())
    finally:
        await engine.dispose()


async def test_the_demo_comes_back_after_its_patient_was_deleted(tmp_path: Path) -> None:
    from datetime import timedelta

    import app.demo as demo
    from app.auth.security import Secrets
    from app.core.columns import utcnow
    from app.core.db import make_engine, transaction
    from app.patients.models import Patient

    settings = settings_for(await migrated(f"sqlite:///{tmp_path / 'demo.db'}"))
    engine = make_engine(settings)
    try:
        first = await demo.ensure_demo(engine, Secrets(settings), timedelta(minutes=5))
        async with transaction(engine) as session:
            patient = await session.get(
                Patient, (uuid.UUID(first.clinic_id), uuid.UUID(first.patient_id))
            )
            assert patient is not None
            patient.deleted_at = utcnow()
            session.add(patient)
        again = await demo.ensure_demo(engine, Secrets(settings), timedelta(minutes=5))
        assert again.patient_id == first.patient_id
        assert again.access_code != first.access_code
        async with transaction(engine) as session:
            restored = await session.get(
                Patient, (uuid.UUID(first.clinic_id), uuid.UUID(first.patient_id))
            )
            assert restored is not None
            assert restored.deleted_at is None
    finally:
        await engine.dispose()


def test_metrics_sum_every_worker_process(tmp_path: Path) -> None:
    """Under `dorsi serve --workers 2`, /metrics counts the requests both processes
    answered, whichever of them serves it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(DORSI), "serve", "--port", str(port), "--workers", "2"],
            env=environment(database_url=f"sqlite:///{tmp_path / 'dorsi.db'}"),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until_up(process, url, stderr)
        for _ in range(30):  # a connection each, so that both processes answer some
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        counted = [
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
                if line.startswith("dorsi_http_requests_total{") and 'route="/readyz"' in line
            )
            for _ in range(6)
        ]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert counted == [30.0] * 6


def test_make_run_serves_on_the_port_and_host_it_is_given(project_root: Path) -> None:
    planned = subprocess.run(
        ["make", "-n", "run", "PORT=8123", "HOST=0.0.0.0"],
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    serve = [line for line in planned.splitlines() if "dorsi serve" in line]
    assert serve == [".venv/bin/dorsi serve --host 0.0.0.0 --port 8123"]
    default = subprocess.run(
        ["make", "-n", "run"], cwd=project_root, capture_output=True, text=True, check=True
    ).stdout
    assert ".venv/bin/dorsi serve --host 127.0.0.1 --port 8000" in default.splitlines()


# Addresses the API and the CLI must agree on: special-use `.test` domains (the demo's)
# are taken, anything email-validator refuses is refused by both.
EMAILS = {
    "Physio@North.test": True,
    "admin@demo.dorsi.test": True,
    "someone@clinic.example.org": True,
    "no-at-sign.test": False,
    "nodot@localhost": False,
}


@pytest.fixture(scope="module")
def cli_emails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """What `dorsi create-clinic` made of each address: the admin's email as stored, or
    None when it refused (saying why, about --admin-email)."""
    home = tmp_path_factory.mktemp("emails")
    env = environment(database_url=f"sqlite:///{home / 'emails.db'}")
    subprocess.run([str(DORSI), "migrate"], env=env, capture_output=True, check=True)
    stored: dict[str, str | None] = {}
    for email in EMAILS:
        arguments = ["--name", "Emails", "--admin-email", email]
        made = subprocess.run(
            [str(DORSI), "create-clinic", *arguments, "--admin-password", "a long passphrase"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if made.returncode == 0:
            stored[email] = made.stdout.splitlines()[1].partition("<")[2].rstrip(">")
        else:
            assert "--admin-email" in made.stderr, made.stderr
            stored[email] = None
    return stored


async def test_the_api_and_the_cli_accept_the_same_emails(
    cli_emails: dict[str, str | None], world: World, client: httpx.AsyncClient
) -> None:
    for email, valid in EMAILS.items():
        # Another clinic's admin may have the address already: each clinician is one person.
        unique = email.replace("@", f"+{uuid.uuid4().hex[:6]}@")
        api = await client.post(
            "/v1/clinicians",
            headers=world["admin1"].headers,
            json={"email": unique, "password": "a long passphrase"},
        )
        assert api.status_code == (201 if valid else 422), (email, api.text)
        assert (cli_emails[email] is not None) == valid, email
        if valid:
            # Both keep it as accounts are keyed: trimmed and lower-cased.
            assert api.json()["email"] == unique.lower()
            assert cli_emails[email] == email.lower()
