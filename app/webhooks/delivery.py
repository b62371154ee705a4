"""Sending queued deliveries: claim a batch, POST each signed, settle each (delivered,
tried again later, or given up), and disable endpoints that are gone or keep failing.

Claiming moves a delivery's ``next_attempt_at`` one `LEASE` ahead and counts the attempt,
in a short transaction of its own. On PostgreSQL the claim skips rows another worker has
locked (``FOR UPDATE SKIP LOCKED``), so several workers never claim the same attempt; on
SQLite every write transaction takes the database's one write lock at BEGIN (see
`app.core.db`), so a plain claim is already exclusive. A worker that dies mid-send
leaves the delivery claimed until its lease ends; it is then due again, and retried.

Settling checks the claim is still the worker's (same attempt, same worker), so a
worker that outlived its lease cannot overwrite the newer attempt's outcome.
"""

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import Row, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.core.config import Environment
from app.core.db import dialect_of, execute, table_of, transaction
from app.core.http import rendered_json
from app.feed.service import render_changes
from app.sync.models import Change
from app.webhooks import signing, urls
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

DELIVERIES = table_of(WebhookDelivery)
ENDPOINTS = table_of(WebhookEndpoint)
CHANGES = table_of(Change)

CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 15.0
# Longer than a send can take, so a live worker always settles before its lease ends.
LEASE = timedelta(seconds=60)
# Retries: 10 s, then 3 times longer each time up to 12 h, each ±25 % (jitter, so that deliveries
# that failed together do not all come back together). 14 attempts span about 3 days.
FIRST_RETRY_SECONDS = 10
RETRY_FACTOR = 3
LONGEST_RETRY_SECONDS = 12 * 3600
MAX_ATTEMPTS = 14
JITTER = 0.25
# An endpoint whose every attempt has failed this long is disabled.
FAILING_LIMIT = timedelta(days=5)
ERROR_LENGTH = 500
SYSTEM_ACTOR = uuid.UUID(int=0)

Clock = Callable[[], datetime]


def backoff(attempt: int, rand: Callable[[], float] = random.random) -> timedelta:
    """How long after failed attempt ``attempt`` (from 1) the next one is made."""
    base = min(FIRST_RETRY_SECONDS * RETRY_FACTOR ** (attempt - 1), LONGEST_RETRY_SECONDS)
    return timedelta(seconds=base * (1 - JITTER + 2 * JITTER * rand()))


@dataclass(frozen=True, slots=True)
class Claimed:
    """One attempt a worker holds: what to send, where, signed with which secrets."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: str
    attempt: int
    url: str
    secrets: list[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


_DUE = (
    select(
        DELIVERIES.c.id,
        DELIVERIES.c.clinic_id,
        DELIVERIES.c.endpoint_id,
        DELIVERIES.c.event_id,
        DELIVERIES.c.event_type,
        DELIVERIES.c.change_id,
        DELIVERIES.c.payload,
        DELIVERIES.c.attempts,
        ENDPOINTS.c.url,
        ENDPOINTS.c.secret,
        ENDPOINTS.c.previous_secret,
        ENDPOINTS.c.previous_secret_expires_at,
    )
    .join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id)
    .where(
        DELIVERIES.c.status == "pending",
        DELIVERIES.c.next_attempt_at <= bindparam("now"),
        ENDPOINTS.c.enabled,
    )
    .order_by(DELIVERIES.c.next_attempt_at)
    .limit(bindparam("limit"))
)
_CLAIM = (
    update(DELIVERIES)
    .where(DELIVERIES.c.id == bindparam("delivery_id"))
    .values(
        attempts=DELIVERIES.c.attempts + 1,
        next_attempt_at=bindparam("lease_until"),
        claimed_by=bindparam("worker"),
    )
)
_SET_PAYLOAD = (
    update(DELIVERIES)
    .where(DELIVERIES.c.id == bindparam("delivery_id"))
    .values(payload=bindparam("body"))
)
_CHANGE_ROWS = select(
    CHANGES.c.id,
    CHANGES.c.resource_type,
    CHANGES.c.resource_id,
    CHANGES.c.operation,
    CHANGES.c.version,
    CHANGES.c.occurred_at,
    CHANGES.c.data,
).where(CHANGES.c.id.in_(bindparam("ids", expanding=True)))


def _due(dialect: str) -> Any:
    if dialect == "postgresql":
        return _DUE.with_for_update(of=DELIVERIES, skip_locked=True)
    return _DUE  # SQLite: the transaction already holds the write lock


async def claim(engine: AsyncEngine, worker: str, now: datetime, limit: int) -> list[Claimed]:
    """Up to ``limit`` due deliveries of enabled endpoints, now this worker's to send."""
    async with transaction(engine) as session:
        rows = (
            await execute(session, _due(dialect_of(session)), {"now": now, "limit": limit})
        ).all()
        if not rows:
            return []
        await execute(
            session,
            _CLAIM,
            [{"delivery_id": r.id, "lease_until": now + LEASE, "worker": worker} for r in rows],
        )
        payloads = await _payloads(session, rows)
    claimed = []
    for row in rows:
        secrets = [row.secret]
        expires = row.previous_secret_expires_at
        if row.previous_secret and expires is not None and expires > now:
            secrets.append(row.previous_secret)
        claimed.append(
            Claimed(
                id=row.id,
                clinic_id=row.clinic_id,
                endpoint_id=row.endpoint_id,
                event_id=row.event_id,
                attempt=row.attempts + 1,
                url=row.url,
                secrets=secrets,
                body=orjson.dumps(payloads[row.id]),
            )
        )
    return claimed


async def _payloads(session: AsyncSession, rows: Sequence[Row[Any]]) -> dict[uuid.UUID, Any]:
    """Each delivery's body: kept from its first attempt, or made now from its change as
    the change feed renders it (and kept, so every attempt sends the same event)."""
    payloads: dict[uuid.UUID, Any] = {r.id: r.payload for r in rows if r.payload is not None}
    wanted = [r for r in rows if r.payload is None and r.change_id is not None]
    if not wanted:
        return payloads
    by_clinic: dict[uuid.UUID, list[Row[Any]]] = defaultdict(list)
    for row in wanted:
        by_clinic[row.clinic_id].append(row)
    rendered: dict[int, Any] = {}
    for clinic_id, deliveries in by_clinic.items():
        ids = sorted({d.change_id for d in deliveries})
        changes = (await execute(session, _CHANGE_ROWS, {"ids": ids})).all()
        for item, change in zip(
            await render_changes(session, clinic_id, changes), changes, strict=True
        ):
            rendered[change.id] = item
    stored = []
    for row in wanted:
        item = rendered.get(row.change_id)
        payload = orjson.loads(
            rendered_json(
                {
                    "id": row.event_id,
                    "type": row.event_type,
                    "timestamp": item["occurred_at"] if item else None,
                    "cursor": item["cursor"] if item else None,
                    "resource": {
                        "type": item["type"],
                        "id": item["id"],
                        "version": item["version"],
                    }
                    if item
                    else None,
                    "data": item["data"] if item else None,
                },
            )
        )
        payloads[row.id] = payload
        stored.append({"delivery_id": row.id, "body": payload})
    await execute(session, _SET_PAYLOAD, stored)
    return payloads


def http_client(max_connections: int = 100) -> httpx.AsyncClient:
    """The one client a worker sends with: 5 s to connect, no redirects, no proxies from
    the environment (the address checked is the address reached)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers={"user-agent": "Dorsi-Webhooks/1", "content-type": "application/json"},
    )


async def send(
    client: httpx.AsyncClient,
    claimed: Claimed,
    environment: Environment,
    timeout: float = TOTAL_TIMEOUT,
) -> Outcome:
    """POST one attempt, signed with every secret in use; at most `TOTAL_TIMEOUT` seconds.
    The answer's body is not read: only its status counts."""
    started = time.perf_counter()

    def outcome(status: int | None, error: str | None) -> Outcome:
        latency = round((time.perf_counter() - started) * 1000)
        return Outcome(status, latency, error[:ERROR_LENGTH] if error else None)

    try:
        address = await urls.check(claimed.url, environment)
    except urls.UnsafeURL as error:
        return outcome(None, str(error))
    target, host, server_name = urls.pinned(claimed.url, address)
    # The signed time is the wall clock's, whatever clock schedules the retries.
    headers = signing.headers(claimed.secrets, claimed.event_id, int(time.time()), claimed.body)
    headers["host"] = host
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                "POST",
                target,
                content=claimed.body,
                headers=headers,
                extensions={"sni_hostname": server_name},
            ) as response:
                status = response.status_code
    except TimeoutError:
        return outcome(None, f"No answer within {timeout:g} s.")
    except httpx.TimeoutException as error:
        return outcome(None, f"Timed out: {type(error).__name__}.")
    except httpx.HTTPError as error:
        return outcome(None, f"{type(error).__name__}: {error}")
    return outcome(status, None if 200 <= status < 300 else f"HTTP {status}")


_SETTLE = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id == bindparam("delivery_id"),
        DELIVERIES.c.claimed_by == bindparam("worker"),
        DELIVERIES.c.attempts == bindparam("attempt"),
    )
    .values(
        status=bindparam("status"),
        next_attempt_at=bindparam("next_at"),
        claimed_by=None,
        last_attempt_at=bindparam("now"),
        last_status_code=bindparam("code"),
        last_latency_ms=bindparam("latency"),
        last_error=bindparam("error"),
        delivered_at=bindparam("delivered_at"),
    )
)
_RECOVERED = (
    update(ENDPOINTS)
    .where(
        ENDPOINTS.c.id.in_(bindparam("ids", expanding=True)), ENDPOINTS.c.failing_since.is_not(None)
    )
    .values(failing_since=None)
)
_FAILING = (
    update(ENDPOINTS)
    .where(
        ENDPOINTS.c.id.in_(bindparam("ids", expanding=True)), ENDPOINTS.c.failing_since.is_(None)
    )
    .values(failing_since=bindparam("now"))
)
_TO_DISABLE = select(ENDPOINTS.c.id, ENDPOINTS.c.clinic_id).where(
    ENDPOINTS.c.enabled,
    ENDPOINTS.c.id.in_(bindparam("ids", expanding=True)),
    (ENDPOINTS.c.failing_since <= bindparam("since"))
    | ENDPOINTS.c.id.in_(bindparam("gone", expanding=True)),
)
_DISABLE = (
    update(ENDPOINTS)
    .where(ENDPOINTS.c.id == bindparam("endpoint_id"))
    .values(enabled=False, disabled_reason=bindparam("reason"), updated_at=bindparam("now"))
)


@dataclass(frozen=True, slots=True)
class _System:
    """The worker, as the audit trail records it."""

    clinic_id: uuid.UUID
    kind: str = "system"
    id: uuid.UUID = SYSTEM_ACTOR


@dataclass(frozen=True, slots=True)
class _SystemCaller:
    principal: _System
    ip: str | None = None
    request_id: str | None = None


async def settle(
    engine: AsyncEngine,
    worker: str,
    results: Sequence[tuple[Claimed, Outcome]],
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> None:
    """Record a batch of attempts' outcomes in one transaction."""
    if not results:
        return
    async with transaction(engine) as session:
        rows = []
        for claimed, outcome in results:
            if outcome.delivered:
                status, next_at = "delivered", None
            elif outcome.status_code == 410 or claimed.attempt >= MAX_ATTEMPTS:
                status, next_at = "failed", None
            else:
                status, next_at = "pending", now + backoff(claimed.attempt, rand)
            rows.append(
                {
                    "delivery_id": claimed.id,
                    "worker": worker,
                    "attempt": claimed.attempt,
                    "status": status,
                    "next_at": next_at,
                    "now": now,
                    "code": outcome.status_code,
                    "latency": outcome.latency_ms,
                    "error": outcome.error,
                    "delivered_at": now if outcome.delivered else None,
                }
            )
        await execute(session, _SETTLE, rows)
        delivered = sorted({c.endpoint_id for c, o in results if o.delivered})
        failed = sorted({c.endpoint_id for c, o in results if not o.delivered} - set(delivered))
        gone = sorted({c.endpoint_id for c, o in results if o.status_code == 410})
        if delivered:
            await execute(session, _RECOVERED, {"ids": delivered})
        if failed:
            await execute(session, _FAILING, {"ids": failed, "now": now})
        await _disable(session, failed + gone, gone, now)


async def _disable(
    session: AsyncSession, ids: list[uuid.UUID], gone: list[uuid.UUID], now: datetime
) -> None:
    """Disable the endpoints that answered 410, or have failed for `FAILING_LIMIT`; each
    with an audit event by the worker."""
    if not ids:
        return
    params = {"ids": sorted(set(ids)), "gone": gone, "since": now - FAILING_LIMIT}
    for endpoint in (await execute(session, _TO_DISABLE, params)).all():
        reason = "gone" if endpoint.id in gone else "failing"
        await execute(session, _DISABLE, {"endpoint_id": endpoint.id, "reason": reason, "now": now})
        await audit.record(
            session,
            _SystemCaller(_System(endpoint.clinic_id)),
            "disable",
            "webhook_endpoint",
            endpoint.id,
        )


# Due deliveries of enabled endpoints: those a claim would take (a disabled endpoint's
# wait until it is enabled again).
_STUCK = (
    select(func.count())
    .select_from(DELIVERIES.join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id))
    .where(
        DELIVERIES.c.status == "pending",
        DELIVERIES.c.next_attempt_at <= bindparam("now"),
        ENDPOINTS.c.enabled,
    )
)


async def due_count(engine: AsyncEngine, now: datetime) -> int:
    """Deliveries due now (for tests, metrics and the bench)."""
    async with transaction(engine) as session:
        return int((await execute(session, _STUCK, {"now": now})).scalar_one())


async def deliver_due(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    worker: str,
    environment: Environment,
    clock: Clock,
    limit: int,
    rand: Callable[[], float] = random.random,
    timeout: float = TOTAL_TIMEOUT,
) -> int:
    """One round: claim up to ``limit`` due deliveries, send them together, settle them.
    Answers how many were attempted."""
    claimed = await claim(engine, worker, clock(), limit)
    if not claimed:
        return 0
    outcomes = await asyncio.gather(*(send(client, c, environment, timeout) for c in claimed))
    await settle(engine, worker, list(zip(claimed, outcomes, strict=True)), clock(), rand)
    return len(claimed)


_PRUNE = delete(DELIVERIES).where(
    DELIVERIES.c.status.in_(("delivered", "failed")),
    DELIVERIES.c.created_at < bindparam("before"),
)


async def prune_settled(engine: AsyncEngine, before: datetime) -> int:
    """Delete the log of deliveries made before ``before`` that were delivered or given
    up on (run by the worker, with the change feed's retention); how many."""
    async with transaction(engine) as session:
        result: Any = await execute(session, _PRUNE, {"before": before})
    return int(result.rowcount)
