"""PostgreSQL going down and coming back, on a throwaway cluster this test starts itself
(never the shared one): 503 with Retry-After while it is away, never a 500 or a hang, and
the same app serves again once it is back, with no restart."""

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.main import create_app, dispose_engines
from tests.conftest import make_client, migrated, settings_for
from tests.core.problems import assert_problem
from tests.test_cli import free_port

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


@dataclass
class Cluster:
    directory: Path
    port: int

    def ctl(self, *args: str, check: bool = True) -> None:
        assert BIN is not None
        subprocess.run(
            [*_as_postgres(), str(BIN / "pg_ctl"), "-D", str(self.directory / "data"), *args],
            check=check,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self.ctl("-w", "-o", options, "-l", str(self.directory / "log"), "start")

    def stop(self) -> None:
        self.ctl("-w", "-m", "fast", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def _as_postgres() -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if BIN is None:
        pytest.skip("PostgreSQL's server programs are not installed.")
    # Not under pytest's temporary root, which the postgres user cannot enter.
    directory = Path(tempfile.mkdtemp(prefix="dorsi-cluster-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    subprocess.run(
        [
            *_as_postgres(),
            str(BIN / "initdb"),
            "-D",
            str(directory / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    found = Cluster(directory, free_port())
    found.start()
    try:
        yield found
    finally:
        found.ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def outage_app(backend: str, cluster: Cluster) -> AsyncIterator[FastAPI]:
    if backend == "sqlite":
        pytest.skip("An embedded database does not go away.")
    url = await migrated(cluster.url.replace("postgresql://", "postgresql+psycopg://"))
    application = create_app(settings_for(url))
    yield application
    await dispose_engines(application)


async def test_a_restarting_database_is_503_then_served_again(
    outage_app: FastAPI, cluster: Cluster
) -> None:
    async with make_client(outage_app) as http:
        assert (await http.get("/readyz")).status_code == 200
        assert (await http.get("/v1/exercises?limit=1")).status_code == 200

        await asyncio.to_thread(cluster.stop)
        sign_in = {"grant_type": "password", "username": "a@clinic.example", "password": "x"}
        for request in (
            http.build_request("GET", "/v1/exercises/ankle-dorsiflexion"),
            http.build_request("POST", "/v1/auth/token", data=sign_in),
            # Met first by the idempotency layer, outside the routes.
            http.build_request(
                "POST",
                "/v1/adherence/batch",
                json={"records": []},
                headers={"Authorization": "Bearer x", "Idempotency-Key": "outage-1"},
            ),
        ):
            started = time.monotonic()
            response = await http.send(request)
            assert time.monotonic() - started < 10
            assert_problem(response, 503, "database-unavailable")
            assert int(response.headers["retry-after"]) >= 1
        assert_problem(await http.get("/readyz"), 503, "database-unavailable")

        await asyncio.to_thread(cluster.start)
        deadline = time.monotonic() + 5
        while (status := (await http.get("/readyz")).status_code) != 200:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
        assert (await http.get("/v1/exercises?limit=1")).status_code == 200
