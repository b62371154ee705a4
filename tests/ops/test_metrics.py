"""The deployment's background work in /metrics, read from the database at each scrape:
the worker's queues and the age of their oldest item, webhook failures, and how far the
change feed's consumers inside Dorsi are behind it. A database that cannot be read
leaves them out and says so, and never fails the scrape."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings
from app.core.db import transaction
from app.fhir import bulk
from app.main import create_app, dispose_engines
from app.sync.models import Change
from app.worker.runner import Worker
from tests.conftest import DatabaseFactory, World, build_world, make_client, migrated, settings_for
from tests.core.query_plans import explained, statements_run
from tests.fhir.test_bulk import kick_off
from tests.ops.test_ops import UNREACHABLE_DATABASE
from tests.plans import new_patient
from tests.webhooks import Clock, Receiver, new_endpoint
from tests.webhooks.test_delivery import deliver

DEPTH = "dorsi_worker_queue_depth{queue=webhook_deliveries}"
OLDEST = "dorsi_worker_queue_oldest_age_seconds{queue=webhook_deliveries}"
EXPORTS = "dorsi_worker_queue_depth{queue=fhir_exports}"
EXPORTS_OLDEST = "dorsi_worker_queue_oldest_age_seconds{queue=fhir_exports}"
WEBHOOK_LAG = "dorsi_change_feed_lag_seconds{consumer=webhooks}"
ALERT_LAG = "dorsi_change_feed_lag_seconds{consumer=pain_alerts}"
RETRYING = "dorsi_webhook_deliveries_retrying"
GIVEN_UP = "dorsi_webhook_deliveries_given_up"
FAILING = "dorsi_webhook_endpoints_failing"
FAILING_LONGEST = "dorsi_webhook_endpoints_failing_longest_seconds"


@pytest.fixture(scope="module")
async def settings(new_database: DatabaseFactory) -> Settings:
    """A database of these tests' own: the figures are the whole deployment's, so other
    tests' deliveries and exports must not be in it. Exports wait for a worker."""
    return settings_for(await migrated(new_database()), fhir_export_in_process=False)


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    yield application
    await dispose_engines(application)


@pytest.fixture(scope="module")
async def clinic(app: FastAPI) -> World:
    return await build_world(app)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def scrape(client: AsyncClient) -> dict[str, float]:
    """Every sample /metrics serves, keyed `name{label=value,...}` (labels sorted)."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{name}={value}" for name, value in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def test_the_queue_failures_and_lag_follow_the_webhook_work(
    app: FastAPI, settings: Settings, client: AsyncClient, clinic: World, receiver: Receiver
) -> None:
    admin = clinic["admin1"]
    worker = Worker(app.state.engine, settings)
    await worker.clinic_round()  # the alerts' cursors start at the feed's head
    figures = await scrape(client)
    assert figures["dorsi_metrics_database_up"] == 1
    assert figures[DEPTH] == figures[OLDEST] == 0
    assert figures[WEBHOOK_LAG] == figures[ALERT_LAG] == 0
    assert figures[RETRYING] == figures[GIVEN_UP] == figures[FAILING] == 0

    # Two changes, each queued for the endpoint by its own transaction; no worker yet.
    endpoint = await new_endpoint(client, admin, receiver.url, ["patient.*"])
    await new_patient(client, admin)
    await new_patient(client, admin)
    figures = await scrape(client)
    assert figures[DEPTH] == 2
    assert figures[OLDEST] > 0
    assert figures[WEBHOOK_LAG] == 0  # queued with the changes
    assert figures[ALERT_LAG] > 0  # not yet evaluated for pain alerts

    # A change from a writer that queued nothing: the endpoint is behind it too.
    async with transaction(app.state.engine) as session:
        session.add(
            Change(
                clinic_id=clinic.clinic1,
                resource_type="patient",
                resource_id=str(uuid.uuid4()),
                operation="update",
                version=2,
            )
        )
    assert (await scrape(client))[WEBHOOK_LAG] > 0

    # Both attempts fail: nothing is due until the retry (10 s on), both are retrying.
    receiver.plan.extend([503, 503])
    clock = Clock()
    assert await deliver(app, clock) == 2
    figures = await scrape(client)
    assert figures[DEPTH] == figures[OLDEST] == 0
    assert figures[RETRYING] == 2
    assert figures[FAILING] == 1
    assert figures[FAILING_LONGEST] > 0

    # The worker queues the third change and evaluates the alerts; the retries succeed.
    await worker.clinic_round()
    clock.advance(seconds=10)
    assert await deliver(app, clock) == 3
    figures = await scrape(client)
    assert figures[DEPTH] == figures[OLDEST] == 0
    assert figures[WEBHOOK_LAG] == figures[ALERT_LAG] == 0
    assert figures[RETRYING] == figures[FAILING] == figures[FAILING_LONGEST] == 0
    assert figures[GIVEN_UP] == 0

    # An endpoint that answers 410 is given up on and disabled; one a person disables is
    # counted apart, and its delivery waits for it, not for a worker.
    gone = await Receiver(default=410).start()
    try:
        await new_endpoint(client, admin, gone.url, ["patient.*"])
        await new_patient(client, admin)
        assert await deliver(app, clock) == 2
    finally:
        await gone.stop()
    await new_patient(client, admin)
    disabled = await client.patch(
        f"/v1/webhooks/{endpoint['id']}", json={"enabled": False}, headers=admin.headers
    )
    assert disabled.status_code == 200, disabled.text
    await worker.clinic_round()
    figures = await scrape(client)
    assert figures[GIVEN_UP] == 1
    assert figures["dorsi_webhook_endpoints_disabled{reason=gone}"] == 1
    assert figures["dorsi_webhook_endpoints_disabled{reason=manual}"] == 1
    assert figures["dorsi_webhook_endpoints_disabled{reason=failing}"] == 0
    assert figures[DEPTH] == figures[RETRYING] == 0
    assert figures[WEBHOOK_LAG] == figures[ALERT_LAG] == 0


async def test_export_jobs_waiting_for_a_runner_are_a_queue(
    app: FastAPI, client: AsyncClient, clinic: World
) -> None:
    system = clinic["client_all"]
    assert (await scrape(client))[EXPORTS] == 0
    await kick_off(client, system, _type="Patient")
    await kick_off(client, system, _type="Patient")
    figures = await scrape(client)
    assert figures[EXPORTS] == 2
    assert figures[EXPORTS_OLDEST] > 0
    while await bulk.run_next(app.state.engine):
        pass
    figures = await scrape(client)
    assert figures[EXPORTS] == figures[EXPORTS_OLDEST] == 0


async def test_a_scrape_reads_the_large_tables_off_their_indexes(
    app: FastAPI, client: AsyncClient
) -> None:
    """Scrapes come every few seconds: the change, delivery and export tables (the ones
    that grow) are searched through an index, never scanned whole."""
    large = ("change", "webhook_delivery", "fhir_export_job")

    def reads_large(statement: str) -> bool:
        return any(f"FROM {table}" in statement for table in large)

    with statements_run(app.state.engine, reads_large) as statements:
        await scrape(client)
    assert len(statements) == 5
    for plan in await explained(app.state.engine, statements):
        for table in large:
            assert f"Seq Scan on {table}" not in plan, plan
            assert f"SCAN {table}" not in plan, plan
        # Pending and given-up deliveries by status, never the whole delivery log.
        if "webhook_delivery" in plan:
            assert "ix_webhook_delivery_status_next_attempt_at" in plan, plan
        if " change " in plan:
            assert "ix_change_clinic_id_id" in plan, plan


async def test_scrapes_that_arrive_together_share_one_read(
    app: FastAPI, client: AsyncClient
) -> None:
    """/metrics needs no sign-in: a burst of it holds one pooled connection, not one each."""
    with statements_run(app.state.engine, lambda s: "FROM fhir_export_job" in s) as reads:
        answers = await asyncio.gather(*(client.get("/metrics") for _ in range(8)))
    assert {answer.status_code for answer in answers} == {200}
    assert len(reads) == 1


async def test_without_the_database_the_process_figures_are_still_served(
    settings: Settings,
) -> None:
    app = create_app(settings.model_copy(update={"database_url": UNREACHABLE_DATABASE}))
    try:
        async with make_client(app) as http:
            await http.get("/healthz")
            figures = await scrape(http)
    finally:
        await dispose_engines(app)
    assert figures["dorsi_metrics_database_up"] == 0
    assert not [name for name in figures if name.startswith("dorsi_worker_queue")]
    assert any(name.startswith("dorsi_http_requests_total") for name in figures)


async def test_a_slow_read_is_given_up_within_its_bound(app: FastAPI, client: AsyncClient) -> None:
    """A pool with no connection to spare (or a database that does not answer) costs
    the scrape the read's bound, then it answers without the database's figures."""
    gauges = app.state.database_gauges
    bound, gauges.timeout = gauges.timeout, 0.0
    try:
        figures = await scrape(client)
    finally:
        gauges.timeout = bound
    assert figures["dorsi_metrics_database_up"] == 0
    assert (await scrape(client))["dorsi_metrics_database_up"] == 1
