"""Gauges read from the database when /metrics is scraped: facts of the whole deployment
(queues, failures, lag), the same whichever process answers. Each package that owns such
facts gives a probe; `app.main` hands them to one `DatabaseGauges`."""

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.columns import utcnow
from app.core.db import snapshot

log = structlog.get_logger(__name__)

# Well inside Prometheus's default scrape timeout (10 s), and shorter than the connect
# (5 s) and pool (10 s) timeouts: a database that is away, or a pool with none to spare,
# costs the scrape this long at most, and the process's own figures are still served.
READ_TIMEOUT_SECONDS = 2.0

UP = "dorsi_metrics_database_up"
UP_HELP = (
    "1 when this scrape read the deployment's figures from the database, 0 when it could "
    "not (they are then left out)."
)


@dataclass(frozen=True, slots=True)
class Reading:
    """One gauge's value (a sample of the family ``name``), as a probe read it."""

    name: str
    documentation: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


# What a probe is given: a read-only snapshot, shared by every probe of the scrape, and
# the time of the scrape (ages are measured to it).
Probe = Callable[[AsyncConnection, datetime], Awaitable[Iterable[Reading]]]


def seconds_since(moment: datetime | None, now: datetime) -> float:
    """An age for a gauge: 0 when there is nothing (or it is not yet past)."""
    return 0.0 if moment is None else max((now - moment).total_seconds(), 0.0)


QUEUE_DEPTH = "dorsi_worker_queue_depth"
QUEUE_OLDEST = "dorsi_worker_queue_oldest_age_seconds"


def worker_queue(
    queue: str, depth: int, oldest_due: datetime | None, now: datetime
) -> list[Reading]:
    """A queue of background work: how many items are due and wait for a worker, and how
    long the one due first has waited (one family each, whichever package owns the queue)."""
    labels = {"queue": queue}
    return [
        Reading(QUEUE_DEPTH, "Items due and waiting for a worker, by queue.", depth, labels),
        Reading(
            QUEUE_OLDEST,
            "How long the item due first has waited for a worker, by queue (0 when none).",
            seconds_since(oldest_due, now),
            labels,
        ),
    ]


class DatabaseGauges:
    """The probes' readings in the Prometheus text format, read afresh at each scrape."""

    def __init__(
        self,
        engine: AsyncEngine,
        probes: Sequence[Probe],
        *,
        timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        self.engine, self.probes, self.timeout = engine, tuple(probes), timeout
        self._reading: asyncio.Task[list[Reading] | None] | None = None

    async def exposition(self) -> bytes:
        readings = await self._shared_read()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Readings(readings))
        return generate_latest(registry)

    async def _shared_read(self) -> list[Reading] | None:
        # Scrapes that arrive while a read runs share it: /metrics is unauthenticated, and
        # a burst of it then holds one pooled connection, not one each. Shielded, so one
        # scrape given up on does not cancel the read for the others.
        if self._reading is None:
            self._reading = asyncio.create_task(self._read(), name="dorsi-metrics-read")
            self._reading.add_done_callback(self._forget)
        return await asyncio.shield(self._reading)

    def _forget(self, _done: "asyncio.Task[list[Reading] | None]") -> None:
        self._reading = None

    async def _read(self) -> list[Reading] | None:
        now = utcnow()
        try:
            async with asyncio.timeout(self.timeout), snapshot(self.engine) as connection:
                return [r for probe in self.probes for r in await probe(connection, now)]
        except (SQLAlchemyError, OSError, TimeoutError) as error:
            log.warning("metrics_database_unavailable", error=str(error) or type(error).__name__)
            return None


class _Readings(Collector):
    """The readings as gauge families (one per name, whichever probes gave its samples),
    and whether the database answered."""

    def __init__(self, readings: list[Reading] | None) -> None:
        self.readings = readings

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(UP, UP_HELP, value=0 if self.readings is None else 1)
        families: dict[str, tuple[GaugeMetricFamily, list[str]]] = {}
        for reading in self.readings or ():
            if reading.name not in families:
                names = list(reading.labels)
                family = GaugeMetricFamily(reading.name, reading.documentation, labels=names)
                families[reading.name] = family, names
            family, names = families[reading.name]
            family.add_metric([reading.labels[name] for name in names], reading.value)
        for family, _names in families.values():
            yield family
