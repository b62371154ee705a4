"""What /metrics reads about FHIR `$export`: the jobs queued for a runner, read off the
(status, created_at) index."""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.db import table_of
from app.core.gauges import Reading, worker_queue
from app.fhir.models import ExportStatus, FhirExportJob

JOBS = table_of(FhirExportJob)

_QUEUED = select(func.count().label("queued"), func.min(JOBS.c.created_at).label("oldest")).where(
    JOBS.c.status == ExportStatus.queued
)


async def probe(connection: AsyncConnection, now: datetime) -> Iterable[Reading]:
    """The export queue's gauges, as of ``now``."""
    queued = (await connection.execute(_QUEUED)).one()
    return worker_queue("fhir_exports", queued.queued, queued.oldest, now)
