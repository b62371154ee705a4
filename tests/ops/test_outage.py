"""PostgreSQL going down and coming back, on a throwaway cluster this test starts itself
(never the shared one): 503 with Retry-After while it is away, never a 500 or a hang, and
the same app serves again once it is back, with no restart."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI

from app.main import create_app, dispose_engines
from bench.harness import POSTGRES_BIN, Cluster, throwaway_cluster
from tests.conftest import make_client, migrated, settings_for
from tests.core.problems import assert_problem
from tests.ops.test_metrics import scrape


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if POSTGRES_BIN is None:
        pytest.skip("PostgreSQL's server programs are not installed.")
    with throwaway_cluster() as found:
        yield found


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
        # /metrics still answers, with the process's figures and without the database's.
        started = time.monotonic()
        figures = await scrape(http)
        assert time.monotonic() - started < 10
        assert figures["dorsi_metrics_database_up"] == 0
        assert "dorsi_db_pool_in_use" in figures

        await asyncio.to_thread(cluster.start)
        deadline = time.monotonic() + 5
        while (status := (await http.get("/readyz")).status_code) != 200:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
        assert (await http.get("/v1/exercises?limit=1")).status_code == 200
