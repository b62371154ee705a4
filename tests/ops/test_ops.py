"""Operations: liveness, readiness, Prometheus metrics, request ids and the access log."""

import asyncio
import re
import uuid
from typing import Any

import orjson
import pytest
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings
from app.main import create_app, dispose_engines
from tests.conftest import World, make_client
from tests.core.problems import assert_problem

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/none"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


async def test_healthz_answers_ok(client: AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_answers_ok_when_the_database_does(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_503_problem_when_the_database_is_unreachable(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"database_url": UNREACHABLE_DATABASE}))
    try:
        async with make_client(app) as http:
            response = await http.get("/readyz")
            alive = await http.get("/healthz")
    finally:
        await dispose_engines(app)
    assert_problem(response, 503, "database-unavailable")
    assert "127.0.0.1" not in response.text
    assert alive.status_code == 200


# Metrics


async def requests_counted(client: AsyncClient, route: str, status: int) -> float:
    """What /metrics says dorsi_http_requests_total is for GETs of this route and status."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "dorsi_http_requests_total" and sample.labels == {
                "method": "GET",
                "route": route,
                "status": str(status),
            }:
                return sample.value
    return 0.0


async def test_metrics_are_prometheus_text(client: AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE dorsi_http_requests_total counter" in response.text
    assert "# TYPE dorsi_http_request_duration_seconds histogram" in response.text


async def test_metrics_show_the_database_pool(client: AsyncClient, world: World) -> None:
    """Connections in use and requests waiting for one; every connection a request took is
    back once it is answered."""

    def pool(text: str) -> dict[str, float]:
        return {
            family.name: family.samples[0].value
            for family in text_string_to_metric_families(text)
            if family.name in ("dorsi_db_pool_in_use", "dorsi_db_pool_waiting")
        }

    before = pool((await client.get("/metrics")).text)
    headers = world["clinician1"].headers
    answers = await asyncio.gather(*(client.get("/v1/patients", headers=headers) for _ in range(8)))
    assert {answer.status_code for answer in answers} == {200}
    assert pool((await client.get("/metrics")).text) == before
    assert before["dorsi_db_pool_waiting"] == 0


async def test_metrics_count_requests_by_route_template(client: AsyncClient) -> None:
    before = await requests_counted(client, "/v1/exercises", 200)
    assert (await client.get("/v1/exercises")).status_code == 200
    assert await requests_counted(client, "/v1/exercises", 200) == before + 1

    slug_before = await requests_counted(client, "/v1/exercises/{exercise}", 200)
    assert (await client.get("/v1/exercises/ankle-eversion")).status_code == 200
    assert await requests_counted(client, "/v1/exercises/{exercise}", 200) == slug_before + 1
    assert "ankle-eversion" not in (await client.get("/metrics")).text


async def test_metrics_count_unmatched_paths_under_one_label(client: AsyncClient) -> None:
    path = f"/no-such-route-{uuid.uuid4().hex}"
    before = await requests_counted(client, "unmatched", 404)
    assert (await client.get(path)).status_code == 404
    assert await requests_counted(client, "unmatched", 404) == before + 1
    assert path not in (await client.get("/metrics")).text


async def test_metrics_count_served_assets_under_their_mount(client: AsyncClient) -> None:
    unmatched = await requests_counted(client, "unmatched", 200)
    mounted = await requests_counted(client, "/docs-assets", 200)
    assert (await client.get("/docs-assets/favicon.png")).status_code == 200
    assert await requests_counted(client, "/docs-assets", 200) == mounted + 1
    assert await requests_counted(client, "unmatched", 200) == unmatched


# Request ids


async def test_request_id_is_echoed_when_the_client_sends_a_valid_one(
    client: AsyncClient,
) -> None:
    sent = f"client-{uuid.uuid4().hex}.1:a_b"
    response = await client.get("/healthz", headers={"X-Request-ID": sent})
    assert response.headers.get_list("x-request-id") == [sent]


async def test_request_id_is_generated_when_absent(client: AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(VALID_REQUEST_ID.match(i) for i in ids)
    assert ids[0] != ids[1]


@pytest.mark.parametrize("sent", ["has spaces", "x" * 129, "semi;colon", 'quote"d', "", "ünïcode"])
async def test_invalid_request_id_is_replaced(client: AsyncClient, sent: str) -> None:
    response = await client.get("/healthz", headers=[(b"X-Request-ID", sent.encode())])
    assert response.status_code == 200
    (given,) = response.headers.get_list("x-request-id")
    assert given != sent
    assert VALID_REQUEST_ID.match(given)


async def test_cached_answers_carry_their_own_request_id(client: AsyncClient) -> None:
    """The shared response cache must not replay the id of the request that filled it."""
    for n in range(3):
        sent = f"cached-{n}-{uuid.uuid4().hex}"
        response = await client.get("/v1/exercises?limit=1", headers={"X-Request-ID": sent})
        assert response.status_code == 200
        assert response.headers.get_list("x-request-id") == [sent]


# Access log


def json_lines(output: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = [
        orjson.loads(line) for line in output.splitlines() if line.startswith("{")
    ]
    return lines


async def test_each_request_writes_one_json_access_line_to_stdout(
    client: AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    ids = {path: f"log-{uuid.uuid4().hex}" for path in ("/v1/exercises", "/nowhere")}
    capfd.readouterr()
    for path, request_id in ids.items():
        await client.get(path, params={"limit": 2}, headers={"X-Request-ID": request_id})
    lines = json_lines(capfd.readouterr().out)

    by_id = {rid: [line for line in lines if line.get("request_id") == rid] for rid in ids.values()}
    assert all(len(found) == 1 for found in by_id.values()), lines
    (listed,) = by_id[ids["/v1/exercises"]]
    assert {k: listed[k] for k in ("method", "path", "route", "status")} == {
        "method": "GET",
        "path": "/v1/exercises",
        "route": "/v1/exercises",
        "status": 200,
    }
    assert isinstance(listed["duration_ms"], float)
    assert listed["duration_ms"] >= 0
    (missing,) = by_id[ids["/nowhere"]]
    assert (missing["path"], missing["route"], missing["status"]) == ("/nowhere", "unmatched", 404)


async def test_access_log_follows_stdout_redirection(
    client: AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    request_id = f"redirected-{uuid.uuid4().hex}"
    capfd.readouterr()
    await client.get("/healthz", headers={"X-Request-ID": request_id})
    assert request_id in capfd.readouterr().out
