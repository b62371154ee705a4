"""Reading stored adherence records back, correcting them (a new version each time) and
deleting them. Every read and write leaves an audit event, every write an outbox change
and a stale overview figure, in the request's transaction."""

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta, timezone
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError
from sqlalchemy import bindparam, tuple_
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence import rollups
from app.adherence.models import AdherenceRecord, AdherenceRecordVersion
from app.adherence.schemas import (
    RecordIn,
    RecordPublic,
    RecordQuery,
    RecordUpdate,
    RecordVersionPublic,
)
from app.audit import service as audit
from app.auth.models import ActorKind
from app.auth.principal import Caller
from app.core.columns import utcnow
from app.core.db import execute, flush_or, table_of
from app.core.errors import (
    FieldError,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from app.core.http import check_if_match, etag_matches_strongly, rendered_json
from app.core.pagination import PageQuery, number_position, split_page, time_position
from app.core.sql import uuid_from_text
from app.patients import service as patients
from app.patients.models import Patient
from app.plans import in_force
from app.plans import service as plans
from app.plans.models import Plan
from app.sync.models import Change
from app.sync.outbox import record_change

RECORDS = table_of(AdherenceRecord)
CHANGES = table_of(Change)
# RecordPublic's fields, in its order: every one is a column of the record.
PUBLIC_FIELDS = list(RecordPublic.model_fields)
# What rendering a record reads, for statements that read records in bulk: named columns,
# not ORM objects, so that a row costs no more than its values.
COLUMNS = (*(RECORDS.c[field] for field in PUBLIC_FIELDS), RECORDS.c.utc_offset_minutes)
# A phone's clock may run a little ahead of ours.
CLOCK_SKEW = timedelta(minutes=5)


@cache  # bounded: offsets are whole minutes under a day either way
def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


def render(values: Mapping[Any, Any]) -> dict[str, Any]:
    """A record's stored values (a row of `COLUMNS` or more) as `GET /v1/adherence/{id}`
    renders it: RecordPublic's fields, in its order, with performed_at back in the offset
    it was given in. The one rendering of a record, for the API, the feed, the
    exports and FHIR: what the database holds was validated when it was written, and the
    test suite checks the rendering against the contract, so no row is validated again.
    `app.core.http.rendered_json` writes it as RecordPublic's JSON."""
    rendered = {field: values[field] for field in PUBLIC_FIELDS}
    rendered["performed_at"] = rendered["performed_at"].astimezone(
        _offset(values["utc_offset_minutes"])
    )
    return rendered


def public(record: AdherenceRecord) -> dict[str, Any]:
    """A record read as an object, rendered (`render`)."""
    return render({column.name: getattr(record, column.name) for column in COLUMNS})


def etag(record: AdherenceRecord) -> str:
    return f'"{record.id}-{record.version}"'


async def list_records(
    session: AsyncSession, caller: Caller, patient_id: uuid.UUID, query: RecordQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the patient's live records, newest first, rendered (`render`)."""
    patient = await patients.load(session, caller, patient_id)
    # clinic_id leads the index on (clinic, patient, local date).
    statement = sa_select(*COLUMNS).where(
        RECORDS.c.clinic_id == patient.clinic_id,
        RECORDS.c.patient_id == patient.id,
        RECORDS.c.deleted_at.is_(None),
    )
    if query.since is not None:
        statement = statement.where(RECORDS.c.performed_on >= query.since)
    if query.until is not None:
        statement = statement.where(RECORDS.c.performed_on <= query.until)
    if query.item_id is not None:
        statement = statement.where(RECORDS.c.item_id == query.item_id)
    if query.status is not None:
        statement = statement.where(RECORDS.c.status == query.status)
    if query.cursor is not None:
        position = time_position(query.cursor)
        statement = statement.where(tuple_(RECORDS.c.performed_at, RECORDS.c.id) < position)
    statement = statement.order_by(RECORDS.c.performed_at.desc(), RECORDS.c.id.desc()).limit(
        query.limit + 1
    )
    rows, cursor = split_page(
        list((await execute(session, statement)).mappings()),
        query.limit,
        lambda row: [row["performed_at"].isoformat(), str(row["id"])],
    )
    await audit.record(session, caller, "list", "adherence_record", None, patient.id)
    return [render(row) for row in rows], cursor


async def load(session: AsyncSession, caller: Caller, record_id: uuid.UUID) -> AdherenceRecord:
    """The record if the caller may see it: the patient's own, or in the staff's clinic."""
    principal = caller.principal
    statement = select(AdherenceRecord).where(
        AdherenceRecord.id == record_id,
        AdherenceRecord.clinic_id == principal.clinic_id,
        col(AdherenceRecord.deleted_at).is_(None),
    )
    if principal.kind == ActorKind.patient:
        statement = statement.where(AdherenceRecord.patient_id == principal.patient_id)
    record = (await session.exec(statement)).first()
    if record is None:
        raise NotFound(f"No adherence record {record_id}.")
    return record


async def read(session: AsyncSession, caller: Caller, record_id: uuid.UUID) -> AdherenceRecord:
    record = await load(session, caller, record_id)
    await audit.record(session, caller, "read", "adherence_record", record.id, record.patient_id)
    return record


async def correct(
    session: AsyncSession,
    caller: Caller,
    record_id: uuid.UUID,
    data: RecordUpdate,
    if_match: str | None,
) -> AdherenceRecord:
    """A new version of the record; the one it replaces stays readable."""
    record = await load(session, caller, record_id)
    if if_match is None:
        raise PreconditionRequired("Send If-Match with the record's ETag.")
    if not etag_matches_strongly(if_match, etag(record)):
        raise PreconditionFailed("The record changed since you read it; read it again.")
    changes = data.model_dump(exclude_unset=True)
    merged = {**public(record), **changes}
    try:
        RecordIn.model_validate(
            {k: merged[k] for k in RecordIn.model_fields if k in merged} | {"id": record.id}
        )
    except ValidationError as error:
        raise InvalidInput(
            [
                FieldError(
                    location="body",
                    pointer="#" + "".join(f"/{part}" for part in e["loc"]),
                    detail=e["msg"],
                )
                for e in error.errors()
            ]
        ) from None
    if "performed_at" in changes:
        performed = data.performed_at
        assert performed is not None
        if performed > utcnow() + CLOCK_SKEW:
            raise InvalidInput(
                [FieldError(location="body", pointer="#/performed_at", detail="In the future.")]
            )
        patient = await session.get(Patient, (record.clinic_id, record.patient_id))
        assert patient is not None
        offset = performed.utcoffset() or timedelta(0)
        changes["utc_offset_minutes"] = int(offset.total_seconds() // 60)
        changes["performed_on"] = performed.astimezone(ZoneInfo(patient.time_zone)).date()
        # A correction may not move a session off the days its plan version was in force,
        # any more than an upload may put it there.
        plan = await session.get(Plan, (record.clinic_id, record.plan_id))
        assert plan is not None
        terms = await plans.version_terms(session, plan)
        why = in_force.outside(terms, record.plan_version, changes["performed_on"])
        if why is not None:
            raise InvalidInput(
                [FieldError(location="body", pointer="#/performed_at", detail=why[1])]
            )
    if all(getattr(record, k) == v for k, v in changes.items()):
        return record
    session.add(
        AdherenceRecordVersion(
            clinic_id=record.clinic_id,
            record_id=record.id,
            version=record.version,
            content=orjson.loads(rendered_json(public(record))),
            replaced_by=caller.principal.id,
        )
    )
    for field, value in changes.items():
        setattr(record, field, value)
    record.version += 1
    record.updated_at = utcnow()
    session.add(record)
    # If the version row exists, a concurrent correction from the same read won.
    await flush_or(
        session, PreconditionFailed("The record changed since you read it; read it again.")
    )
    await _changed(session, caller, record, "update")
    return record


async def delete(
    session: AsyncSession, caller: Caller, record_id: uuid.UUID, if_match: str | None
) -> None:
    """Soft: the record leaves every list and summary; sync consumers get a tombstone."""
    record = await load(session, caller, record_id)
    check_if_match(if_match, etag(record), "record", required=True)
    record.deleted_at = utcnow()
    session.add(record)
    await _changed(session, caller, record, "delete")


async def _changed(
    session: AsyncSession, caller: Caller, record: AdherenceRecord, operation: str
) -> None:
    """What a correction or a delete leaves beside the record: its change for sync, the
    patient's stale overview figures, and the audit event."""
    await record_change(
        session, record.clinic_id, "adherence_record", record.id, operation, version=record.version
    )
    await rollups.mark_stale(session, record.clinic_id, [record.patient_id])
    await audit.record(session, caller, operation, "adherence_record", record.id, record.patient_id)


async def records_at(
    session: AsyncSession, clinic_id: uuid.UUID, wanted: set[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], dict[str, Any]]:
    """Each (record, version) of the clinic as `GET /v1/adherence/{id}` rendered it while
    that version was current: the newest rendered from the record (`render`), earlier ones
    as the versions a correction keeps hold them (JSON values, which `rendered_json`
    writes alike). Two queries, however many are wanted."""
    if not wanted:
        return {}
    ids = sorted({record_id for record_id, _ in wanted})
    rendered: dict[tuple[uuid.UUID, int], dict[str, Any]] = {}
    # Rows, not ORM objects: a feed page renders up to a thousand records.
    current = await execute(
        session,
        sa_select(*COLUMNS).where(RECORDS.c.id.in_(ids), RECORDS.c.clinic_id == clinic_id),
    )
    mine = set()
    for record in current.mappings():
        key = (record["id"], record["version"])
        mine.add(key[0])
        if key in wanted:
            rendered[key] = render(record)
    # Earlier versions of the clinic's own records only: another clinic may use the same ids.
    earlier = sorted(key for key in wanted if key not in rendered and key[0] in mine)
    if earlier:
        found = await session.exec(
            select(AdherenceRecordVersion).where(
                AdherenceRecordVersion.clinic_id == clinic_id,
                tuple_(
                    col(AdherenceRecordVersion.record_id), col(AdherenceRecordVersion.version)
                ).in_(earlier),
            )
        )
        for row in found:
            rendered[(row.record_id, row.version)] = row.content
    return rendered


# Each record change, with the record at the version it names: the record itself while
# that version is current, else the version a correction kept. By the whole key, so that
# another clinic's use of an id never shows.
_KEPT = table_of(AdherenceRecordVersion)
_CHANGED = (
    sa_select(CHANGES.c.id.label("change_id"), *COLUMNS, _KEPT.c.content)
    .select_from(
        CHANGES.outerjoin(
            RECORDS,
            (RECORDS.c.clinic_id == CHANGES.c.clinic_id)
            & (RECORDS.c.id == uuid_from_text(CHANGES.c.resource_id))
            & (RECORDS.c.version == CHANGES.c.version),
        ).outerjoin(
            _KEPT,
            (_KEPT.c.clinic_id == CHANGES.c.clinic_id)
            & (_KEPT.c.record_id == uuid_from_text(CHANGES.c.resource_id))
            & (_KEPT.c.version == CHANGES.c.version),
        )
    )
    .where(
        CHANGES.c.clinic_id == bindparam("clinic_id"),
        CHANGES.c.id.in_(bindparam("change_ids", expanding=True)),
        CHANGES.c.resource_type == "adherence_record",
    )
)


async def records_changed(
    session: AsyncSession, clinic_id: uuid.UUID, change_ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """What `records_at` gives, for the clinic's record changes ``change_ids`` (the feed's
    page, a webhook's events), by change id, in one query that finds each record from its
    change: none of the ids is parsed or sent back."""
    if not change_ids:
        return {}
    found = await execute(session, _CHANGED, {"clinic_id": clinic_id, "change_ids": change_ids})
    rendered: dict[int, dict[str, Any]] = {}
    for row in found.mappings():
        if row["id"] is not None:
            rendered[row["change_id"]] = render(row)
        elif row["content"] is not None:
            rendered[row["change_id"]] = row["content"]
    return rendered


async def versions(
    session: AsyncSession, caller: Caller, record_id: uuid.UUID, query: PageQuery
) -> tuple[list[RecordVersionPublic], str | None]:
    """A page of the record's versions, oldest first: the replaced ones as they were kept,
    then the record as it is."""
    record = await read(session, caller, record_id)
    after = 0 if query.cursor is None else number_position(query.cursor)
    earlier = (
        await session.exec(
            select(AdherenceRecordVersion)
            .where(
                AdherenceRecordVersion.clinic_id == record.clinic_id,
                AdherenceRecordVersion.record_id == record.id,
                col(AdherenceRecordVersion.version) > after,
            )
            .order_by(col(AdherenceRecordVersion.version))
            .limit(query.limit + 1)
        )
    ).all()
    found = [
        RecordVersionPublic(
            version=row.version,
            record=RecordPublic.model_validate(row.content),
            replaced_at=row.replaced_at,
            replaced_by=row.replaced_by,
        )
        for row in earlier
    ]
    if record.version > after:
        found.append(
            RecordVersionPublic(
                version=record.version, record=public(record), replaced_at=None, replaced_by=None
            )
        )
    return split_page(found, query.limit, lambda version: [version.version])
