"""FHIR Bulk Data `$export`: jobs kept in the database, each run from one snapshot.

A kick-off queues a job; `run_job` (or `run_next`, what a worker calls) claims it, opens
the export snapshot (`app.core.db.snapshot`: REPEATABLE READ on PostgreSQL), and writes
NDJSON files of up to `FILE_LINES` resources, a chunk (a batch) at a time, each in a
transaction of its own; a file's last write records the audit events of the patients it
holds. A cancelled job is deleted; the runner notices at its next write and stops.

`transactionTime` hands over to the next export's `_since` with no gap and no duplicate:
it is the time of the newest change the snapshot sees, and `_since` selects the resources
with a change after it. A clinic's changes take their time while holding the clinic's
change lock (`app.sync.outbox`), so their times rise with their ids, which follow commit
order: the changes after `transactionTime` are exactly those the snapshot did not see.
(A resource's own `meta.lastUpdated` is set before that lock, so it cannot do this.)
"""

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col
from sqlmodel import select as select_models
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import QueryParams

from app.adherence import records
from app.audit import service as audit
from app.auth.models import ActorKind
from app.auth.principal import Caller, Principal
from app.core.columns import utcnow
from app.core.db import execute, snapshot, table_of, transaction
from app.core.errors import BadRequest, Forbidden, NotFound
from app.core.timestamps import instant_in_range
from app.exercises import service as exercises
from app.exercises.models import Exercise
from app.feed.export import cursor_of
from app.fhir import resources, service
from app.fhir.capability import SCOPES
from app.fhir.models import ExportStatus, FhirExportChunk, FhirExportFile, FhirExportJob
from app.fhir.resources import Resource
from app.patients.models import Patient
from app.plans import service as plans
from app.plans.models import PlanTemplate
from app.plans.schemas import PlanPublic
from app.sync.models import Change

FILE_LINES = 5000
BATCH = 2000
# Plan versions an export keeps what their Procedures say of them for, between batches.
VERSIONS_KEPT = 4096
# Lines rendered between two turns of the event loop given to the write in flight.
YIELD_EVERY = 250
# A running job writes a file (and so touches `updated_at`) every `FILE_LINES` resources;
# one silent this long lost its runner.
ABANDONED = timedelta(minutes=15)
SYSTEM_TYPES = (
    "Patient",
    "CarePlan",
    "Procedure",
    "Observation",
    "ActivityDefinition",
    "PlanDefinition",
)
PATIENT_TYPES = ("Patient", "CarePlan", "Procedure", "Observation")
# The change feed's name of what each type is made from.
CHANGE_TYPE = {
    "Patient": "patient",
    "CarePlan": "plan",
    "Procedure": "adherence_record",
    "Observation": "adherence_record",
    "ActivityDefinition": "exercise",
    "PlanDefinition": "plan_template",
}
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
# What a snapshot that sees no change hands over: every later change is after it.
BEFORE_ANY_CHANGE = datetime(1970, 1, 1, tzinfo=UTC)

# Resources, each with the patient it belongs to (if any).
Rendered = Iterable[tuple[Resource, uuid.UUID | None]]

JOBS = table_of(FhirExportJob)
FILES = table_of(FhirExportFile)
CHUNKS = table_of(FhirExportChunk)
CHANGES = table_of(Change)
PATIENTS = service.PATIENTS
PLANS = service.PLANS
RECORDS = service.RECORDS
EXERCISES = table_of(Exercise)
TEMPLATES = table_of(PlanTemplate)


# ---------------------------------------------------------------------- the requests


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not instant_in_range(moment):
        raise BadRequest(f"_since must be an instant with its offset; {value!r} is not.")
    return moment


async def kick_off(
    session: AsyncSession, caller: Caller, level: str, params: QueryParams, request_url: str
) -> FhirExportJob:
    """Queues an export of the caller's clinic (`level`: system or patient)."""
    allowed = SYSTEM_TYPES if level == "system" else PATIENT_TYPES
    unknown = sorted(set(params) - {"_type", "_since", "_outputFormat"})
    if unknown:
        raise BadRequest(f"$export does not support {', '.join(unknown)}.")
    output_format = params.get("_outputFormat")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise BadRequest(f"_outputFormat {output_format!r} is not served: only NDJSON.")
    types = list(allowed)
    if "_type" in params:
        types = [t for value in params.getlist("_type") for t in value.split(",")]
        wrong = sorted(set(types) - set(allowed))
        if wrong:
            raise BadRequest(f"_type takes {', '.join(allowed)}; not {', '.join(wrong)}.")
        types = list(dict.fromkeys(types))
    missing = sorted({SCOPES[t] for t in types} - caller.principal.scopes)
    if missing:
        raise Forbidden(f"This token lacks {', '.join(missing)} for the types asked.")
    since = params.get("_since")
    job = FhirExportJob(
        clinic_id=caller.clinic_id,
        actor_kind=caller.principal.kind,
        actor_id=caller.principal.id,
        level=level,
        types=types,
        since=_since(since) if since else None,
        request_url=request_url,
    )
    session.add(job)
    await session.flush()
    return job


async def own_job(session: AsyncSession, caller: Caller, job_id: uuid.UUID) -> FhirExportJob:
    """The caller's own job; anyone else's (and a cancelled one) is a missing one."""
    job = await session.get(FhirExportJob, job_id)
    if job is None or job.clinic_id != caller.clinic_id or job.actor_id != caller.principal.id:
        raise NotFound(f"No export {job_id}.")
    return job


async def files_of(session: AsyncSession, job_id: uuid.UUID) -> list[Any]:
    found = await execute(
        session,
        select(FILES.c.id, FILES.c.resource_type, FILES.c.count, FILES.c.deleted)
        .where(FILES.c.job_id == job_id)
        .order_by(FILES.c.number),
    )
    return list(found)


async def own_file(session: AsyncSession, caller: Caller, file_id: uuid.UUID) -> FhirExportFile:
    found = await session.get(FhirExportFile, file_id)
    if found is None:
        raise NotFound(f"No export file {file_id}.")
    await own_job(session, caller, found.job_id)
    return found


async def cancel(session: AsyncSession, caller: Caller, job_id: uuid.UUID) -> None:
    """Deletes the job and its files. The job's row is locked first (PostgreSQL), so a
    runner writing a chunk waits, then finds the job gone."""
    await own_job(session, caller, job_id)
    await execute(session, select(JOBS.c.id).where(JOBS.c.id == job_id).with_for_update())
    await _drop_files(session, job_id)
    await execute(session, delete(JOBS).where(JOBS.c.id == job_id))


async def _drop_files(session: AsyncSession, job_id: uuid.UUID) -> None:
    files = select(FILES.c.id).where(FILES.c.job_id == job_id).scalar_subquery()
    await execute(session, delete(CHUNKS).where(CHUNKS.c.file_id.in_(files)))
    await execute(session, delete(FILES).where(FILES.c.job_id == job_id))


async def file_content(engine: AsyncEngine, file_id: uuid.UUID) -> AsyncIterator[bytes]:
    """A file's NDJSON, a chunk at a time, each read in a short read-only transaction of
    its own: no connection is held between chunks, however slowly the client reads."""
    after = 0
    while True:
        async with snapshot(engine) as connection:
            found = (
                await connection.execute(
                    select(CHUNKS.c.number, CHUNKS.c.content)
                    .where(CHUNKS.c.file_id == file_id, CHUNKS.c.number > after)
                    .order_by(CHUNKS.c.number)
                    .limit(1)
                )
            ).first()
        if found is None:
            return
        after = found.number
        yield found.content.encode()


# ------------------------------------------------------------------------- the runner


@dataclass(frozen=True)
class Exporter:
    """Who asked for a job, as the audit trail records the patients it exported."""

    principal: Principal
    ip: str | None = None
    request_id: str | None = None


async def run_next(engine: AsyncEngine) -> bool:
    """Runs the oldest queued job, if any (what `dorsi worker` calls); False if none. A
    job whose runner went quiet for `ABANDONED` (its process ended mid-run) is queued
    again first, its files dropped."""
    async with transaction(engine) as session:
        abandoned = (
            (
                await execute(
                    session,
                    select(JOBS.c.id).where(
                        JOBS.c.status == ExportStatus.running,
                        JOBS.c.updated_at < utcnow() - ABANDONED,
                    ),
                )
            )
            .scalars()
            .all()
        )
        for job_id in abandoned:
            await _drop_files(session, job_id)
            await execute(
                session,
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status == ExportStatus.running)
                .values(status=ExportStatus.queued, progress=None, updated_at=utcnow()),
            )
        queued = (
            await execute(
                session,
                select(JOBS.c.id)
                .where(JOBS.c.status == ExportStatus.queued)
                .order_by(JOBS.c.created_at)
                .limit(1),
            )
        ).scalar()
    if queued is None:
        return False
    await run_job(engine, queued)
    return True


async def run_job(engine: AsyncEngine, job_id: uuid.UUID) -> None:
    """Claims the job (another runner that claimed it first wins) and runs it."""
    async with transaction(engine) as session:
        claimed = await execute(
            session,
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status == ExportStatus.queued)
            .values(status=ExportStatus.running, updated_at=utcnow()),
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return
        job = await session.get(FhirExportJob, job_id)
        assert job is not None
    try:
        await _run(engine, job)
    except Exception as error:  # the client reads the failure in the job's status
        async with transaction(engine) as session:
            await execute(
                session,
                update(JOBS)
                .where(JOBS.c.id == job_id)
                .values(
                    status=ExportStatus.failed,
                    error=f"The export failed: {type(error).__name__}.",
                    updated_at=utcnow(),
                ),
            )
        raise


class Cancelled(Exception):
    """The job was deleted while it ran."""


async def _run(engine: AsyncEngine, job: FhirExportJob) -> None:
    exporter = Exporter(
        Principal(
            kind=ActorKind(job.actor_kind),
            id=job.actor_id,
            clinic_id=job.clinic_id,
            session_id=job.id,
            scopes=frozenset(),
        )
    )
    writer = FileWriter(engine, job, exporter)
    try:
        async with snapshot(engine) as connection:
            position = await cursor_of(connection, job.clinic_id)
            newest = (
                await connection.execute(
                    select(func.max(CHANGES.c.occurred_at)).where(
                        CHANGES.c.clinic_id == job.clinic_id, CHANGES.c.id <= position
                    )
                )
            ).scalar()
            async with AsyncSession(bind=connection) as session:
                seen: service.Versions = {}
                for kind in job.types:
                    async for rendered in _resources(session, connection, job, kind, seen):
                        await writer.add(kind, rendered)
                    await writer.flush(kind)
                    if job.since is not None:
                        async for gone in _deleted(connection, job, kind, position):
                            await writer.add(kind, gone, deleted=True)
                        await writer.flush(kind, deleted=True)
        await writer.settle()
    except Cancelled:
        return
    finally:
        await writer.abandon()
    async with transaction(engine) as session:
        await execute(
            session,
            update(JOBS)
            .where(JOBS.c.id == job.id, JOBS.c.status == ExportStatus.running)
            .values(
                status=ExportStatus.completed,
                transaction_time=newest or BEFORE_ANY_CHANGE,
                change_cursor=position,
                progress="done",
                updated_at=utcnow(),
            ),
        )


@dataclass
class OpenFile:
    """A file being written: its resources so far and the patients they belong to."""

    id: uuid.UUID
    number: int
    kind: str
    deleted: bool
    count: int = 0
    chunks: int = 0
    patients: set[uuid.UUID] = field(default_factory=set)


class FileWriter:
    """Writes rendered resources as files of up to `FILE_LINES`, a chunk (what one batch
    rendered) at a time, each in a transaction of its own that first checks, under the
    job's row lock, that the job still runs (a cancel deletes it under that lock). A
    file's last write records the audit events of the patients it holds.

    Each resource becomes its line as soon as it is rendered, so a batch is held as its
    NDJSON only. A write runs while the next batch is read and rendered, so that the
    database's work overlaps with this process's; one write at a time and in order, so
    memory holds two chunks at most, whatever the size of the export."""

    def __init__(self, engine: AsyncEngine, job: FhirExportJob, exporter: Exporter) -> None:
        self.engine, self.job, self.exporter = engine, job, exporter
        self.file: OpenFile | None = None
        self.files = 0
        self.written = 0
        self.pending: asyncio.Task[None] | None = None

    async def add(self, kind: str, rendered: Rendered, *, deleted: bool = False) -> None:
        """``rendered`` (each resource with its patient, rendered as it is taken) as the
        next lines of `kind`'s resources, or (``deleted``) of the Bundles that name its
        deleted resources."""
        lines, count = io.BytesIO(), 0
        for resource, patient in rendered:
            if self.file is None:
                self.files += 1
                self.file = OpenFile(uuid.uuid4(), self.files, kind, deleted)
            lines.write(orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
            if patient is not None:
                self.file.patients.add(patient)
            if self.file.count + count == FILE_LINES:
                await self._store(lines.getvalue(), count, closes=True)
                lines, count = io.BytesIO(), 0
            elif count % YIELD_EVERY == 0:
                # The write in flight takes a few round trips, each resumed only when
                # this loop lets it: without this, it would wait for the next batch's read.
                await asyncio.sleep(0)
        if count:
            await self._store(lines.getvalue(), count)

    async def flush(self, kind: str, *, deleted: bool = False) -> None:
        """Ends the file being written (`kind`'s resources, or its deleted ones), if any."""
        if self.file is not None:
            assert (self.file.kind, self.file.deleted) == (kind, deleted)
            await self._store(b"", 0, closes=True)

    async def _store(self, content: bytes, count: int, *, closes: bool = False) -> None:
        """The open file's next ``count`` lines (``content``, if any), and (``closes``)
        the file's end, in one write."""
        file = self.file
        assert file is not None
        file.count += count
        self.written += count
        if count:
            file.chunks += 1
        if closes:
            self.file = None
        await self._then(
            self._write(
                file, file.chunks if count else None, content.decode(), closes, self.written
            )
        )

    async def settle(self) -> None:
        """Waits for the write in flight, raising what it raised (`Cancelled`)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending

    async def abandon(self) -> None:
        """Stops the write in flight, if any (the run failed or was cancelled)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.cancel()
            # Waited for without raising what it raised (the run's own failure is the one
            # reported), and without swallowing a cancellation of the run itself.
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()

    async def _then(self, write: Coroutine[Any, Any, None]) -> None:
        try:
            await self.settle()
        except BaseException:
            write.close()
            raise
        self.pending = asyncio.ensure_future(write)

    async def _alive(self, session: AsyncSession) -> None:
        status = (
            await execute(
                session, select(JOBS.c.status).where(JOBS.c.id == self.job.id).with_for_update()
            )
        ).scalar()
        if status != ExportStatus.running:
            raise Cancelled

    async def _write(
        self, file: OpenFile, number: int | None, content: str, closes: bool, written: int
    ) -> None:
        """Chunk ``number`` of ``file`` (None: none), the file's row with its first, and
        (``closes``) the file's count, the audit events of its patients and the job's
        progress (``written`` resources so far)."""
        async with transaction(self.engine) as session:
            await self._alive(session)
            if number == 1:
                await execute(
                    session,
                    insert(FILES).values(
                        id=file.id,
                        job_id=self.job.id,
                        number=file.number,
                        resource_type="Bundle" if file.deleted else file.kind,
                        deleted=file.deleted,
                        count=0,  # until the file is done
                    ),
                )
            if number is not None:
                await execute(
                    session,
                    insert(CHUNKS).values(file_id=file.id, number=number, content=content),
                )
            if not closes:
                return
            await execute(
                session, update(FILES).where(FILES.c.id == file.id).values(count=file.count)
            )
            await audit.record_many(
                session,
                self.exporter,
                "export",
                CHANGE_TYPE[file.kind],
                [(None, patient) for patient in sorted(file.patients)],
            )
            await execute(
                session,
                update(JOBS)
                .where(JOBS.c.id == self.job.id)
                .values(progress=f"{written} resources written", updated_at=utcnow()),
            )


def _statement(job: FhirExportJob, kind: str) -> tuple[Select[Any], Any]:
    """The live rows `kind` is made from, in the job's clinic, and their id column."""
    clinic_id = job.clinic_id
    live = PATIENTS.c.deleted_at.is_(None)
    if kind == "Patient":
        return select(PATIENTS).where(PATIENTS.c.clinic_id == clinic_id, live), PATIENTS.c.id
    if kind == "CarePlan":
        return (
            select(PLANS.c.id, PLANS.c.version, PLANS.c.patient_id)
            .join(
                PATIENTS,
                (PATIENTS.c.clinic_id == PLANS.c.clinic_id) & (PATIENTS.c.id == PLANS.c.patient_id),
            )
            .where(PLANS.c.clinic_id == clinic_id, live)
        ), PLANS.c.id
    if kind in ("Procedure", "Observation"):
        statement = (
            select(*records.COLUMNS)
            .join(
                PATIENTS,
                (PATIENTS.c.clinic_id == RECORDS.c.clinic_id)
                & (PATIENTS.c.id == RECORDS.c.patient_id),
            )
            .where(RECORDS.c.clinic_id == clinic_id, RECORDS.c.deleted_at.is_(None), live)
            # A patient's records together (along the index of a patient's days): their
            # few plan versions are looked up once, and stay few in what is kept of them.
            .order_by(RECORDS.c.patient_id)
        )
        if kind == "Observation":
            statement = statement.where(RECORDS.c.pain.is_not(None))
        return statement, RECORDS.c.id
    if kind == "ActivityDefinition":
        return select(EXERCISES.c.id).where(exercises.visible_to(clinic_id)), EXERCISES.c.id
    return (
        select(TEMPLATES.c.id).where(
            (TEMPLATES.c.clinic_id.is_(None)) | (TEMPLATES.c.clinic_id == clinic_id),
            TEMPLATES.c.deleted_at.is_(None),
        ),
        TEMPLATES.c.id,
    )


async def _resources(
    session: AsyncSession,
    connection: AsyncConnection,
    job: FhirExportJob,
    kind: str,
    seen: service.Versions,
) -> AsyncIterator[Rendered]:
    """Each batch of `kind`'s resources (with its patient), from the snapshot. With
    `_since`: those with a change after it, looked up a batch of ids at a time."""
    statement, id_column = _statement(job, kind)
    if job.since is None:
        result = await connection.stream(statement.execution_options(yield_per=BATCH))
        async for batch in result.partitions():
            yield await _render(session, job.clinic_id, kind, batch, seen)
        return
    changed = await connection.stream(
        select(CHANGES.c.resource_id)
        .where(
            CHANGES.c.clinic_id == job.clinic_id,
            CHANGES.c.resource_type == CHANGE_TYPE[kind],
            CHANGES.c.occurred_at > job.since,
        )
        .distinct()
        .execution_options(yield_per=BATCH)
    )
    async for ids in changed.partitions():
        wanted = [uuid.UUID(row.resource_id) for row in ids]
        rows = (await connection.execute(statement.where(id_column.in_(wanted)))).all()
        if rows:
            yield await _render(session, job.clinic_id, kind, rows, seen)


async def _deleted(
    connection: AsyncConnection, job: FhirExportJob, kind: str, position: int
) -> AsyncIterator[Rendered]:
    """`kind`'s resources deleted after `_since` (and seen by the snapshot), each as a
    transaction Bundle that deletes it (Bulk Data IG, `deleted`). An Observation only for
    a deleted record that rated pain. (A patient's plans and records leave with it, and
    get no deletion of their own, as in the change feed.)"""
    gone = await connection.stream(
        select(CHANGES.c.resource_id)
        .where(
            CHANGES.c.clinic_id == job.clinic_id,
            CHANGES.c.resource_type == CHANGE_TYPE[kind],
            CHANGES.c.operation == "delete",
            CHANGES.c.occurred_at > job.since,
            CHANGES.c.id <= position,
        )
        .distinct()
        .execution_options(yield_per=BATCH)
    )
    async for batch in gone.partitions():
        found = [uuid.UUID(row.resource_id) for row in batch]
        if kind == "Observation":
            rated = await connection.execute(
                select(RECORDS.c.id).where(RECORDS.c.id.in_(found), RECORDS.c.pain.is_not(None))
            )
            found = [row.id for row in rated]
        yield [
            (
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [{"request": {"method": "DELETE", "url": f"{kind}/{resource_id}"}}],
                },
                None,
            )
            for resource_id in found
        ]


async def _render(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    kind: str,
    rows: Sequence[Any],
    seen: service.Versions,
) -> Rendered:
    """Each row's resource as a read of it renders it, with the patient it belongs to."""
    if kind == "Patient":
        return [(resources.patient(Patient.model_validate(r._mapping)), r.id) for r in rows]
    if kind == "CarePlan":
        rendered = await plans.plans_at(session, clinic_id, {(r.id, r.version) for r in rows})
        return [
            (
                resources.care_plan(PlanPublic.model_validate(rendered[(r.id, r.version)])),
                r.patient_id,
            )
            for r in rows
        ]
    if kind in ("Procedure", "Observation"):
        # Rendered one by one as the writer takes them: a batch's resources are never
        # all held at once.
        public = (records.render(r._mapping) for r in rows)
        if kind == "Observation":
            return ((resources.observation(r), r["patient_id"]) for r in public)
        if len(seen) > VERSIONS_KEPT:
            seen.clear()  # memory stays bounded, however many plans the clinic has
        versions = await service.performed(session, clinic_id, [r._mapping for r in rows], seen)
        return (
            (resources.procedure(r, versions[r["plan_id"], r["plan_version"]]), r["patient_id"])
            for r in public
        )
    ids = [r.id for r in rows]
    if kind == "ActivityDefinition":
        found = list(await session.exec(select_models(Exercise).where(col(Exercise.id).in_(ids))))
        refs = await exercises.variants(session, found)
        return [(resources.activity_definition(exercises.to_public(e, refs)), None) for e in found]
    templates = await session.exec(select_models(PlanTemplate).where(col(PlanTemplate.id).in_(ids)))
    return [
        (resources.plan_definition(await plans.template_public(session, t)), None)
        for t in templates
    ]


def manifest(job: FhirExportJob, files: list[Any], base: str) -> dict[str, Any]:
    """The completed job's manifest (Bulk Data IG): its files (`deleted`: what was deleted
    after `_since`), and the time to hand over to the next export's `_since`."""
    assert job.transaction_time is not None
    return {
        "transactionTime": resources.instant(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [_entry(f, base) for f in files if not f.deleted],
        "deleted": [_entry(f, base) for f in files if f.deleted],
        "error": [],
    }


def _entry(found: Any, base: str) -> dict[str, Any]:
    return {
        "type": found.resource_type,
        "url": f"{base}/$export-file/{found.id}",
        "count": found.count,
    }
