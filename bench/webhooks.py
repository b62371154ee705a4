"""Webhooks benchmark: one worker delivering to a local receiver, against a bare httpx
loop; the latency from a change's commit to its delivery; and the first clinic overview
after every patient's midnight with the worker running. PostgreSQL, one run.

    python -m bench.webhooks [--events 10000] [--concurrency 100] [--latencies 50]
                             [--patients 10000] [--records 200000]

Makes a fresh database through DORSI_BENCH_POSTGRES_URL (as bench.adherence does),
migrates it and fills it with bench.adherence_data. The receiver is a bare ASGI app under
uvicorn in a process of its own, answering every POST 204.

- Throughput: ``--events`` patient changes are recorded (each queues its delivery in its
  transaction) for an endpoint subscribed to ``patient.*``; one worker (`Worker.deliver`,
  batches of ``--concurrency``) sends them all, in events per second: claiming, rendering
  each change as the feed does, signing, sending, settling. The reference posts the same
  signed bodies with a bare httpx client and ``--concurrency`` tasks. Target: at least
  0.5 of the reference.
- Latency: with a worker running idle, a patient change is committed ``--latencies``
  times, one at a time; each figure runs from the commit to the moment the worker
  recorded the receiver's 2xx (``delivered_at``). Target: p99 below 1 s.
- Overview: every patient's midnight is set a second away (``valid_until``, all at
  once); the running worker's round a minute before it computes every patient's next
  day's figures (`rollups.compute_ahead`, as within ``rollups.AHEAD`` of a midnight),
  and a clinician reads the overview. Once the clock has passed midnight, the first
  ``GET /v1/adherence/overview`` (which reads those figures where they lie, sorted) is
  timed; then the worker's next round moves them into place. Five such midnights; the
  median first request is compared with the same request once all is in place (the
  page read off the rollup's index), median of 5. Target: at most 2 times. Each first
  request and the worker's rounds are printed too, for information.
"""

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select, update

from app.adherence.models import AdherenceRollup
from app.core.columns import utcnow
from app.core.config import Settings
from app.core.db import execute, make_engine, table_of, transaction
from app.main import create_app, dispose_engines
from app.sync.outbox import record_change
from app.webhooks import delivery as sending
from app.webhooks import signing
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.worker.runner import Worker
from bench.adherence_data import Dataset, load
from bench.harness import migrate, postgres_database, server

SECRET = "bench-secret-" + "x" * 32
CHUNK = 1000  # changes recorded a transaction
MIDNIGHTS = 5  # the overview's midnights, one after another
DELIVERIES = table_of(WebhookDelivery)
ROLLUPS = table_of(AdherenceRollup)


async def receiver(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The local receiver: 204 to every request, its body read and dropped."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@dataclass(frozen=True)
class Result:
    case: str
    dorsi: float
    reference: float | None
    target: float
    at_least: bool

    @property
    def figure(self) -> float:
        return self.dorsi if self.reference is None else self.dorsi / self.reference

    @property
    def ok(self) -> bool:
        return self.figure >= self.target if self.at_least else self.figure <= self.target


def patient_data(patient_id: uuid.UUID, n: int) -> dict[str, Any]:
    return {
        "id": str(patient_id),
        "reference": f"BENCH-{n}",
        "affected_side": "left",
        "cause": "stroke",
        "time_zone": "Europe/Lisbon",
    }


async def record_patient_changes(settings: Settings, data: Dataset, count: int) -> None:
    engine = make_engine(settings)
    try:
        for start in range(0, count, CHUNK):
            async with transaction(engine) as session:
                for n in range(start, min(count, start + CHUNK)):
                    patient = data.patients[n % len(data.patients)]
                    await record_change(
                        session,
                        data.clinic_id,
                        "patient",
                        patient.id,
                        "update",
                        version=2,
                        data=patient_data(patient.id, n),
                    )
    finally:
        await engine.dispose()


async def throughput(settings: Settings, data: Dataset, url: str, args: Any) -> Result:
    engine = make_engine(settings)
    try:
        async with transaction(engine) as session:
            endpoint = WebhookEndpoint(
                clinic_id=data.clinic_id,
                url=url,
                events=["patient.*"],
                secret=signing.new_secret(),
            )
            session.add(endpoint)
        await record_patient_changes(settings, data, args.events)
        worker = Worker(engine, settings, batch=args.concurrency)
        started = time.perf_counter()
        async with sending.http_client(args.concurrency) as http:
            while await worker.deliver(http):
                pass
        ours = args.events / (time.perf_counter() - started)
        async with transaction(engine) as session:
            wanted = select(DELIVERIES.c.event_id, DELIVERIES.c.payload, DELIVERIES.c.status).where(
                DELIVERIES.c.endpoint_id == endpoint.id
            )
            rows = (await execute(session, wanted)).all()
        if len(rows) != args.events or any(row.status != "delivered" for row in rows):
            raise SystemExit(f"{len(rows)} deliveries, not all delivered")
        bodies = [(row.event_id, orjson.dumps(row.payload)) for row in rows]
        reference = await bare_loop(url, endpoint.secret, bodies, args.concurrency)
        async with transaction(engine) as session:
            endpoint.enabled = False
            session.add(endpoint)
    finally:
        await engine.dispose()
    return Result(
        f"{args.events} events, one worker, {args.concurrency} at once (events/s)",
        ours,
        reference,
        0.5,
        True,
    )


async def bare_loop(
    url: str, secret: str, bodies: list[tuple[str, bytes]], concurrency: int
) -> float:
    """The reference: the same signed bodies, posted by ``concurrency`` tasks."""
    pending = list(bodies)
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        trust_env=False,
    ) as http:

        async def post() -> None:
            while pending:
                event_id, body = pending.pop()
                headers = signing.headers([secret], event_id, int(time.time()), body)
                headers["content-type"] = "application/json"
                # As the worker sends: the answer's status, its body unread.
                async with http.stream("POST", url, content=body, headers=headers) as answer:
                    answer.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - started)


async def latency(settings: Settings, data: Dataset, url: str, args: Any) -> Result:
    engine = make_engine(settings)
    stop = asyncio.Event()
    try:
        async with transaction(engine) as session:
            endpoint = WebhookEndpoint(
                clinic_id=data.clinic_id, url=url, events=["patient.*"], secret=signing.new_secret()
            )
            session.add(endpoint)
        worker = Worker(make_engine(settings), settings)
        running = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(1)
        figures = []
        for n in range(args.latencies + 5):
            patient = data.patients[n % len(data.patients)]
            async with transaction(engine) as session:
                await record_change(
                    session,
                    data.clinic_id,
                    "patient",
                    patient.id,
                    "update",
                    version=3,
                    data=patient_data(patient.id, n),
                )
            committed = datetime.now(UTC)
            while True:
                async with transaction(engine) as session:
                    newest = (
                        select(DELIVERIES.c.delivered_at)
                        .where(DELIVERIES.c.endpoint_id == endpoint.id)
                        .order_by(DELIVERIES.c.created_at.desc())
                        .limit(1)
                    )
                    done = (await execute(session, newest)).first()
                if done is not None and done[0] is not None:
                    break
                await asyncio.sleep(0.005)
            if n >= 5:  # after a warm-up
                figures.append((done[0] - committed).total_seconds())
            await asyncio.sleep(0.2)
        stop.set()
        await running
        await worker.engine.dispose()
        async with transaction(engine) as session:
            endpoint.enabled = False
            session.add(endpoint)
    finally:
        await engine.dispose()
    p99 = statistics.quantiles(figures, n=100)[98]
    return Result(
        f"commit to delivered, idle worker, p99 of {args.latencies} (ms)",
        max(p99, 0) * 1000,
        None,
        1000,
        False,
    )


def stopped_clock(at: datetime) -> Callable[[], datetime]:
    """A worker's clock that reads ``at`` whenever it is read."""
    return lambda: at


async def overview(settings: Settings, data: Dataset) -> Result:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dorsi") as http:
            token = (
                await http.post(
                    "/v1/auth/token",
                    data={
                        "grant_type": "password",
                        "username": data.email,
                        "password": data.password,
                    },
                )
            ).json()["access_token"]
            staff = {"Authorization": f"Bearer {token}"}

            async def page() -> float:
                started = time.perf_counter()
                answer = await http.get("/v1/adherence/overview", headers=staff)
                answer.raise_for_status()
                return time.perf_counter() - started

            await page()  # every patient's row made
            firsts, ahead, moved = [], [], []
            for _ in range(MIDNIGHTS):
                # Every patient's midnight a moment away, all at once (the worst case: a
                # clinic in one time zone).
                midnight = utcnow() + timedelta(seconds=1)
                async with transaction(app.state.engine) as session:
                    at_midnight = (
                        update(ROLLUPS)
                        .where(ROLLUPS.c.clinic_id == data.clinic_id)
                        .values(valid_until=midnight)
                    )
                    await execute(session, at_midnight)
                # The running worker's round a minute before it, which computes every
                # patient's next day's figures (they are within rollups.AHEAD of it).
                before = stopped_clock(midnight - timedelta(minutes=1))
                started = time.perf_counter()
                await Worker(app.state.engine, settings, clock=before).clinic_round()
                ahead.append(time.perf_counter() - started)
                async with transaction(app.state.engine) as session:
                    waiting = select(func.count()).where(
                        ROLLUPS.c.clinic_id == data.clinic_id,
                        ROLLUPS.c.next_valid_until.is_(None),
                    )
                    if (await execute(session, waiting)).scalar_one():
                        raise SystemExit("the worker left patients without next days' figures")
                await page()  # a clinician reading before midnight, as all day long
                while utcnow() <= midnight:  # the clock passes midnight
                    await asyncio.sleep(0.01)
                firsts.append(await page())
                # The worker's first round after midnight moves the figures into place.
                started = time.perf_counter()
                await Worker(app.state.engine, settings).clinic_round()
                moved.append(time.perf_counter() - started)
            # The page read off the rollup, as all day long.
            warm = statistics.median([await page() for _ in range(5)])
    finally:
        await dispose_engines(app)
    print(
        f"overview, {len(data.patients)} patients: first requests after each midnight "
        f"{', '.join(f'{first * 1000:.1f}' for first in firsts)} ms; worker's round "
        f"{statistics.median(ahead):.2f} s before midnight, {statistics.median(moved):.2f} s "
        "after (medians)"
    )
    return Result(
        f"first overview after every midnight, {len(data.patients)} patients (ms)",
        statistics.median(firsts) * 1000,
        warm * 1000,
        2.0,
        False,
    )


async def run(settings: Settings, data: Dataset, url: str, args: Any) -> list[Result]:
    return [
        await throughput(settings, data, url, args),
        await latency(settings, data, url, args),
        await overview(settings, data),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latencies", type=int, default=50)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    with postgres_database() as database_url:
        migrate(database_url, SECRET)
        data = load(database_url, patients=args.patients, records=args.records)
        settings = Settings.model_validate(
            {"database_url": database_url, "environment": "test", "secret_key": SECRET}
        )
        with server("bench.webhooks:receiver", {}) as base:
            results = asyncio.run(run(settings, data, base + "/hooks", args))
    print(f"{'case':66} {'dorsi':>10} {'reference':>10} {'figure':>8} {'target':>8}")
    for r in results:
        theirs = "" if r.reference is None else f"{r.reference:10.1f}"
        target = f"{'>=' if r.at_least else '<='} {r.target:g}"
        print(
            f"{r.case:66} {r.dorsi:10.1f} {theirs:>10} {r.figure:8.2f} {target:>8}"
            f"  {'ok' if r.ok else 'MISSED'}"
        )
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
