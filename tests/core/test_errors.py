"""Every failure, whatever raised it, answers an RFC 9457 problem that names its request."""

from collections.abc import AsyncIterator

import orjson
import pytest
from fastapi import FastAPI, Request
from httpx import AsyncClient
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.db import SessionDep, execute
from app.main import create_app, dispose_engines
from tests.conftest import make_client
from tests.core.problems import assert_problem

SECRET = "secret detail"


def fail_unexpectedly() -> None:
    raise RuntimeError(SECRET)


async def count_body(request: Request) -> dict[str, int]:
    return {"received": len(await request.body())}


async def end_own_connection(session: SessionDep) -> None:
    """As a database restart or failover would, mid-request."""
    await execute(session, select(func.pg_terminate_backend(func.pg_backend_pid())))


@pytest.fixture
async def probe_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app plus two routes no shipped route provides: one that crashes, one that
    reads its whole body."""
    application = create_app(settings)
    application.add_api_route("/probe/crash", fail_unexpectedly, methods=["GET"])
    application.add_api_route("/probe/body", count_body, methods=["POST"])
    application.add_api_route("/probe/end-connection", end_own_connection, methods=["GET"])
    yield application
    await dispose_engines(application)


@pytest.fixture
async def probe(probe_app: FastAPI) -> AsyncIterator[AsyncClient]:
    # The server would see the exception too (and log it); the client must see only a 500.
    async with make_client(probe_app, raise_app_exceptions=False) as http:
        yield http


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/v1", "/v1/exercises/x/y"])
async def test_unknown_route_is_404_problem(client: AsyncClient, path: str) -> None:
    problem = assert_problem(await client.get(path), 404, "not-found")
    assert path in problem["detail"]


@pytest.mark.parametrize(("method", "path"), [("PUT", "/v1/exercises"), ("POST", "/healthz")])
async def test_wrong_method_is_405_problem_that_says_what_is_allowed(
    client: AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={})
    assert_problem(response, 405, "method-not-allowed")
    assert "GET" in response.headers["allow"].split(", ")


async def test_body_over_the_limit_is_413_problem(client: AsyncClient, settings: Settings) -> None:
    response = await client.post(
        "/v1/exercises",
        content=b"x" * (settings.max_body_bytes + 1),
        headers={"content-type": "application/json"},
    )
    problem = assert_problem(response, 413, "payload-too-large")
    assert str(settings.max_body_bytes) in problem["detail"]


async def test_streamed_body_over_the_limit_is_413_problem(
    probe: AsyncClient, settings: Settings
) -> None:
    """A chunked body announces no length; the limit still holds while it is read."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(settings.max_body_bytes // 4096 + 1):
            yield b"x" * 4096

    response = await probe.post("/probe/body", content=chunks())
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large")


async def test_body_at_the_limit_is_accepted(probe: AsyncClient, settings: Settings) -> None:
    response = await probe.post("/probe/body", content=b"x" * settings.max_body_bytes)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": settings.max_body_bytes}


async def test_unexpected_exception_is_500_problem_that_keeps_its_secrets(
    probe: AsyncClient,
) -> None:
    response = await probe.get("/probe/crash")
    problem = assert_problem(response, 500, "internal")
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert problem["detail"] == "An unexpected error occurred."


async def test_an_unexpected_exception_is_logged_once_with_its_trace_and_request_id(
    probe: AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    response = await probe.get("/probe/crash", headers={"X-Request-ID": "crash-7"})
    assert_problem(response, 500, "internal")
    lines = [orjson.loads(line) for line in capfd.readouterr().out.splitlines() if line]
    failures = [line for line in lines if line.get("level") == "error"]
    assert len(failures) == 1
    assert failures[0]["request_id"] == "crash-7"
    assert "RuntimeError: secret detail" in failures[0]["exception"]


async def test_a_database_that_goes_away_mid_request_is_503_to_try_again(
    probe: AsyncClient, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("An embedded database does not go away.")
    response = await probe.get("/probe/end-connection", headers={"X-Request-ID": "gone-1"})
    problem = assert_problem(response, 503, "database-busy")
    assert response.headers["retry-after"] == "1"
    assert problem["request_id"] == "gone-1"
    assert (await probe.get("/readyz")).status_code == 200


async def test_problem_names_the_request_id_the_client_sent(client: AsyncClient) -> None:
    response = await client.get("/v1/nothing-here", headers={"X-Request-ID": "trace-42"})
    assert assert_problem(response, 404, "not-found")["request_id"] == "trace-42"
