"""The worker's loops: deliveries as soon as they are due, and every few seconds the
clinics' rollups (computed ahead of each patient's midnight), alerts and a sweep for
undelivered changes; hourly, the pruning of old changes, idempotency keys and expired
sign-in state.

Several workers may run against one database: deliveries are claimed (see
`app.webhooks.delivery`), alerts move their state by conditional writes, and the rest is
idempotent. `stop` ends the loops between rounds: a batch of deliveries that was claimed
is sent and settled first, so nothing claimed is left behind; a worker killed outright
leaves its claims to expire and be retried by another.
"""

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence import rollups
from app.auth import ratelimit
from app.auth import service as auth
from app.auth.models import Clinic
from app.core.columns import utcnow
from app.core.config import Settings
from app.core.db import execute, snapshot, table_of, transaction
from app.core.idempotency import prune_expired_keys
from app.fhir import bulk
from app.sync.retention import prune_changes
from app.webhooks import alerts, fanout
from app.webhooks import delivery as sending
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

log = structlog.get_logger("dorsi.worker")
# A step over a clinic's rollup rows: at most so many rows at a moment, how many were done.
RollupStep = Callable[[AsyncSession, rollups.ClinicSettings, datetime, int], Awaitable[int]]
CLINICS = table_of(Clinic)
DELIVERIES = table_of(WebhookDelivery)
ENDPOINTS = table_of(WebhookEndpoint)
_CLINICS = select(CLINICS.c.id, CLINICS.c.adherence_threshold_percent, CLINICS.c.pain_alert_at)
# A read that takes no write lock: an idle worker looks this way before it claims.
# (Deliveries of disabled endpoints wait, unclaimed, until the endpoint is enabled.)
_ANY_DUE = (
    select(DELIVERIES.c.id)
    .join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id)
    .where(
        DELIVERIES.c.status == "pending",
        DELIVERIES.c.next_attempt_at <= bindparam("now"),
        ENDPOINTS.c.enabled,
    )
    .limit(1)
)


def worker_name() -> str:
    """Who claims a delivery: the host, the process, and a tag for this run."""
    return f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Every piece of background work, run until `run`'s ``stop`` is set."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        clock: sending.Clock = utcnow,
        name: str | None = None,
        batch: int = 100,
        poll_seconds: float = 0.1,
        clinic_round_seconds: float = 10.0,
        hourly_seconds: float = 3600.0,
        send_timeout: float = sending.TOTAL_TIMEOUT,
    ) -> None:
        self.engine, self.settings, self.clock = engine, settings, clock
        self.name = name or worker_name()
        self.batch, self.poll_seconds = batch, poll_seconds
        self.clinic_round_seconds, self.hourly_seconds = clinic_round_seconds, hourly_seconds
        self.send_timeout = send_timeout

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker_started", worker=self.name)
        async with sending.http_client(self.batch) as client:
            await asyncio.gather(
                self._deliveries(client, stop), self._rounds(stop), self._exports(stop)
            )
        log.info("worker_stopped", worker=self.name)

    async def deliver(self, client: httpx.AsyncClient) -> int:
        """One batch of due deliveries, sent and settled; how many."""
        async with snapshot(self.engine) as connection:
            due = (await connection.execute(_ANY_DUE, {"now": self.clock()})).first()
        if due is None:
            return 0
        return await sending.deliver_due(
            self.engine,
            client,
            self.name,
            self.settings.environment,
            self.clock,
            self.batch,
            timeout=self.send_timeout,
        )

    async def clinic_round(self) -> int:
        """For each clinic: move the next day's overview figures into place where a
        patient's local midnight passed; then, in a transaction of its own, recompute the
        figures marked stale, announce the alerts they and new records raise, and queue
        any change not yet queued for the clinic's endpoints; then compute the next day's
        figures of the patients whose midnight comes within `rollups.AHEAD`, so that no
        reader recomputes them as it passes. Moving and computing go a chunk of patients
        a transaction, so that writers of those patients wait for one chunk at most.
        Answers how many alerts fired."""
        async with transaction(self.engine) as session:
            clinics = (await execute(session, _CLINICS)).all()
        fired = 0
        for clinic in clinics:
            now = self.clock()
            await self._in_chunks(rollups.take_over, clinic, now)
            async with transaction(self.engine) as session:
                await rollups.refresh(session, clinic, now)
                fired += await alerts.evaluate_adherence(session, clinic, now)
                fired += await alerts.evaluate_pain(session, clinic, now)
                await fanout.sweep(session, clinic.id)
            await self._in_chunks(rollups.compute_ahead, clinic, now)
        return fired

    async def _in_chunks(self, step: RollupStep, clinic: Row[Any], now: datetime) -> None:
        """A step over a clinic's rollup rows, `rollups.CHUNK` rows a transaction, until a
        chunk comes back short."""
        done = rollups.CHUNK
        while done == rollups.CHUNK:
            async with transaction(self.engine) as session:
                done = await step(session, clinic, now, rollups.CHUNK)

    async def hourly(self) -> None:
        """Retention of the change feed and of the delivery log (the same period), expired
        idempotency keys and sign-in state, and sign-in attempts past every limit's window."""
        now = self.clock()
        retention = timedelta(days=self.settings.change_retention_days)
        pruned = await prune_changes(self.engine, retention, now)
        settled = await sending.prune_settled(self.engine, now - retention)
        keys = await prune_expired_keys(self.engine, now)
        windows = (self.settings.sign_in_rate_limit, self.settings.sign_in_account_ceiling)
        longest = max(ratelimit.Rule.parse(rule).window for rule in windows)
        attempts = await ratelimit.prune(self.engine, longest, now)
        async with transaction(self.engine) as session:
            expired = await auth.prune_expired(session, now)
        log.info(
            "worker_pruned",
            changes=sum(pruned.values()),
            deliveries=settled,
            keys=keys,
            sign_in=expired,
            sign_in_attempts=attempts,
        )

    async def _deliveries(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.deliver(client)
            except Exception:
                log.exception("worker_delivery_failed", worker=self.name)
                sent = 0
            if not sent:
                await _wait(stop, self.poll_seconds)

    async def _rounds(self, stop: asyncio.Event) -> None:
        last_hourly: datetime | None = None
        while not stop.is_set():
            try:
                await self.clinic_round()
                now = self.clock()
                if last_hourly is None or now - last_hourly >= timedelta(
                    seconds=self.hourly_seconds
                ):
                    last_hourly = now
                    await self.hourly()
            except Exception:
                log.exception("worker_round_failed", worker=self.name)
            await _wait(stop, self.clinic_round_seconds)

    async def _exports(self, stop: asyncio.Event) -> None:
        """FHIR `$export` jobs, one at a time (the API runs them itself unless
        DORSI_FHIR_EXPORT_IN_PROCESS is off)."""
        while not stop.is_set():
            try:
                ran = await bulk.run_next(self.engine)
            except Exception:
                log.exception("worker_export_failed", worker=self.name)
                ran = False
            if not ran:
                await _wait(stop, 1.0)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
