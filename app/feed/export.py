"""Exports: every live resource of one type in the clinic, as NDJSON, read from one
consistent snapshot, with the change-feed cursor of that snapshot.

The snapshot's first statement reads the clinic's newest change id. Changes are written in
the same transaction as what they record, and a clinic's visible changes are always a
prefix of its ids (`app.sync.outbox`), so the resources the snapshot sees are exactly the
effect of the changes up to that id: following the feed from it gives every later change
once, and none that the export already holds.

Rows are read through a server-side cursor, `BATCH` at a time, each batch rendered (as the
feed renders: each resource as its own GET does) and sent before the next is read, so
memory does not grow with the export.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncResult
from sqlmodel import col
from sqlmodel import select as select_models
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence import records
from app.adherence.models import AdherenceRecord
from app.audit import service as audit
from app.auth.models import Clinic
from app.auth.principal import Caller
from app.clinics.schemas import ClinicPublic
from app.core.db import snapshot, table_of, transaction
from app.core.http import rendered_json
from app.core.pagination import encode_cursor
from app.exercises import service as exercises
from app.exercises.models import Exercise
from app.feed.schemas import ChangeType
from app.patients.models import Patient
from app.patients.schemas import PatientPublic
from app.plans import service as plans
from app.plans.models import Plan, PlanTemplate
from app.sync import retention
from app.sync.models import Change

BATCH = 500
CHANGES = table_of(Change)
PATIENTS = table_of(Patient)
EXERCISES = table_of(Exercise)
TEMPLATES = table_of(PlanTemplate)
PLANS = table_of(Plan)
RECORDS = table_of(AdherenceRecord)
CLINICS = table_of(Clinic)

Renderer = Callable[[AsyncSession, uuid.UUID, Sequence[Any]], Awaitable[list[Any]]]


async def _patients(_session: AsyncSession, _clinic: uuid.UUID, rows: Sequence[Any]) -> list[Any]:
    # As `patients.public` renders a patient, from the row's columns.
    return [PatientPublic.model_validate(row).model_dump(mode="json") for row in rows]


async def _exercises(session: AsyncSession, _clinic: uuid.UUID, rows: Sequence[Any]) -> list[Any]:
    found = list(
        await session.exec(
            select_models(Exercise).where(col(Exercise.id).in_([r.id for r in rows]))
        )
    )
    refs = await exercises.variants(session, found)
    return [exercises.to_public(row, refs).model_dump(mode="json") for row in found]


async def _templates(session: AsyncSession, _clinic: uuid.UUID, rows: Sequence[Any]) -> list[Any]:
    found = await session.exec(
        select_models(PlanTemplate).where(col(PlanTemplate.id).in_([r.id for r in rows]))
    )
    return [(await plans.template_public(session, row)).model_dump(mode="json") for row in found]


async def _plans(session: AsyncSession, clinic: uuid.UUID, rows: Sequence[Any]) -> list[Any]:
    rendered = await plans.plans_at(session, clinic, {(row.id, row.version) for row in rows})
    return [rendered[(row.id, row.version)] for row in rows]


async def _records(_session: AsyncSession, _clinic: uuid.UUID, rows: Sequence[Any]) -> list[Any]:
    return [records.render(row._mapping) for row in rows]


async def _clinics(_session: AsyncSession, _clinic: uuid.UUID, rows: Sequence[Any]) -> list[Any]:
    return [ClinicPublic.model_validate(row).model_dump(mode="json") for row in rows]


def _live_patient() -> Any:
    return col(Patient.deleted_at).is_(None)


def _same_patient(rows: Table) -> Any:
    """The join to the rows' patient, by its key: (clinic, id)."""
    return and_(PATIENTS.c.clinic_id == rows.c.clinic_id, PATIENTS.c.id == rows.c.patient_id)


def statements(
    kind: ChangeType, clinic_id: uuid.UUID, since: datetime | None
) -> tuple[Select[Any], Select[Any] | None, Renderer]:
    """What an export of ``kind`` streams, which patients it shows (for the audit trail;
    None: no patient data), and how it renders each batch. Live resources only: deleted
    ones, and the plans and records of deleted patients, have left the API."""
    rows: Select[Any]
    shown: Select[Any] | None = None
    if kind == ChangeType.patient:
        rows = select(PATIENTS).where(PATIENTS.c.clinic_id == clinic_id, _live_patient())
        changed = PATIENTS.c.updated_at
        render: Renderer = _patients
    elif kind == ChangeType.exercise:
        rows = select(EXERCISES.c.id).where(
            EXERCISES.c.clinic_id == clinic_id, EXERCISES.c.deleted_at.is_(None)
        )
        changed, render = EXERCISES.c.updated_at, _exercises
    elif kind == ChangeType.plan_template:
        rows = select(TEMPLATES.c.id).where(
            TEMPLATES.c.clinic_id == clinic_id, TEMPLATES.c.deleted_at.is_(None)
        )
        changed, render = TEMPLATES.c.updated_at, _templates
    elif kind == ChangeType.plan:
        rows = (
            select(PLANS.c.id, PLANS.c.version, PLANS.c.patient_id)
            .join(PATIENTS, _same_patient(PLANS))
            .where(PLANS.c.clinic_id == clinic_id, _live_patient())
        )
        changed, render = PLANS.c.updated_at, _plans
    elif kind == ChangeType.adherence_record:
        rows = (
            select(*records.COLUMNS)
            .join(PATIENTS, _same_patient(RECORDS))
            .where(
                RECORDS.c.clinic_id == clinic_id, RECORDS.c.deleted_at.is_(None), _live_patient()
            )
        )
        changed, render = RECORDS.c.updated_at, _records
    else:  # the clinic's settings: one line, whatever `since` says (they keep no time)
        return select(CLINICS).where(CLINICS.c.id == clinic_id), None, _clinics
    if since is not None:
        rows = rows.where(changed >= since)
    if kind in (ChangeType.patient, ChangeType.plan, ChangeType.adherence_record):
        shown = rows.with_only_columns(PATIENTS.c.id).distinct()
    return rows, shown, render


async def cursor_of(connection: AsyncConnection, clinic_id: uuid.UUID) -> int:
    """The clinic's newest change id the snapshot sees (its horizon if none is kept)."""
    newest = (
        await connection.execute(
            select(func.max(CHANGES.c.id)).where(CHANGES.c.clinic_id == clinic_id)
        )
    ).scalar()
    kept_after = (await connection.execute(retention.HORIZON, {"clinic_id": clinic_id})).scalar()
    return max(int(newest or 0), int(kept_after or 0))


@dataclass
class Export:
    """An export whose snapshot is open: `cursor` for the header, `lines` for the body."""

    cursor: str
    _stack: AsyncExitStack
    _session: AsyncSession
    _clinic_id: uuid.UUID
    _result: AsyncResult[Any]
    _render: Renderer

    async def close(self) -> None:
        """Ends the snapshot (again is harmless)."""
        await self._stack.aclose()

    async def lines(self) -> AsyncIterator[bytes]:
        """Each batch as NDJSON lines. A failure propagates (the response ends unfinished,
        so the client sees the export is incomplete); the snapshot closes either way."""
        async with self._stack:
            async for batch in self._result.partitions():
                rendered = await self._render(self._session, self._clinic_id, batch)
                yield b"".join(rendered_json(item) + b"\n" for item in rendered)


async def open_export(
    engine: AsyncEngine, caller: Caller, kind: ChangeType, since: datetime | None
) -> Export:
    """Takes the snapshot, reads its cursor, records who exported which patients (in a
    transaction of its own, before any data leaves) and starts the stream. Whatever fails
    here fails the request before its first byte."""
    clinic_id = caller.clinic_id
    rows, shown, render = statements(kind, clinic_id, since)
    stack = AsyncExitStack()
    try:
        connection = await stack.enter_async_context(snapshot(engine))
        position = await cursor_of(connection, clinic_id)
        if shown is not None:
            patient_ids = (await connection.execute(shown)).scalars().all()
            async with transaction(engine) as session:
                await audit.record_many(
                    session, caller, "export", str(kind), [(None, p) for p in patient_ids]
                )
        session = await stack.enter_async_context(AsyncSession(bind=connection))
        result = await connection.stream(rows.execution_options(yield_per=BATCH))
        stack.push_async_callback(result.close)
    except BaseException:
        await stack.aclose()
        raise
    return Export(encode_cursor([position]), stack, session, clinic_id, result, render)
