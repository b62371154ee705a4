"""Recording adherence: batch uploads that a replay never duplicates, and reading back.

Records are patient data: uploads and reads leave audit events, and every stored record
writes its change to the outbox, all in the request's transaction.
"""

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from pydantic import ValidationError
from sqlalchemy import Engine, and_, bindparam, text, tuple_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app.adherence import overview as rollups
from app.adherence import summary as summaries
from app.adherence.models import AdherenceRecord, AdherenceRecordVersion, Source
from app.adherence.schemas import (
    MAX_SUMMARY_DAYS,
    BatchIn,
    OverviewQuery,
    RecordIn,
    RecordPublic,
    RecordQuery,
    RecordUpdate,
    RecordVersionPublic,
    SummaryQuery,
)
from app.audit import service as audit
from app.auth.deps import as_staff, principal_of, staff_session
from app.auth.models import ActorKind, Clinic
from app.auth.principal import Caller, Principal, Scope
from app.auth.security import Secrets
from app.core.columns import utcnow
from app.core.db import AsyncConnections, flush_or, insert_many, pipelined
from app.core.errors import (
    FieldError,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from app.core.http import etag_matches_strongly
from app.core.pagination import split_page, time_position
from app.patients import service as patients
from app.patients.models import Patient
from app.plans.models import Plan, PlanVersion
from app.sync.outbox import record_change, record_changes

RECORDS = AdherenceRecord.__table__  # type: ignore[attr-defined]
PLANS = Plan.__table__  # type: ignore[attr-defined]
PATIENTS = Patient.__table__  # type: ignore[attr-defined]
PLAN_VERSIONS = PlanVersion.__table__  # type: ignore[attr-defined]
PUBLIC_FIELDS = [field for field in RecordPublic.model_fields if field in RECORDS.c]
# A phone's clock may run a little ahead of ours.
CLOCK_SKEW = timedelta(minutes=5)
CONTENT = (
    "plan_id",
    "plan_version",
    "item_id",
    "performed_at",
    "utc_offset_minutes",
    "status",
    "sets_done",
    "reps_done",
    "hold_seconds",
    "pain",
    "effort",
    "skip_reason",
    "note",
    "assistive_device",
)
SOURCES = {
    ActorKind.patient: Source.patient_app,
    ActorKind.clinician: Source.clinician,
    ActorKind.api_client: Source.clinic_system,
}


def _problem(index: int, field: str, detail: str) -> list[FieldError]:
    return [FieldError(location="body", pointer=f"#/records/{index}/{field}", detail=detail)]


def _parse(index: int, raw: dict[str, Any]) -> RecordIn | list[FieldError]:
    try:
        return RecordIn.model_validate(raw)
    except ValidationError as error:
        return [
            FieldError(
                location="body",
                pointer="#/records/" + "/".join(str(p) for p in (index, *e["loc"])),
                detail="Unknown field." if e["type"] == "extra_forbidden" else e["msg"],
            )
            for e in error.errors()
        ]


def public(record: AdherenceRecord | dict[str, Any]) -> RecordPublic:
    """The record as stored, with performed_at back in the offset it was given in."""
    values = record if isinstance(record, dict) else record.model_dump()
    offset = timezone(timedelta(minutes=values["utc_offset_minutes"]))
    return RecordPublic.model_validate(
        {
            **{field: values[field] for field in PUBLIC_FIELDS},
            "performed_at": values["performed_at"].astimezone(offset),
        }
    )


def upload(session: Session, caller: Caller, batch: BatchIn) -> list[dict[str, Any]]:
    """Store what is new, recognise what is already stored, and say which is which.

    The answer is BatchResult's ``results`` as plain values (dicts, with models only for
    errors and stored records): every value already has its field's type, so it renders
    as JSON without a model to build per record.
    """
    principal = caller.principal
    now = utcnow()
    parsed = [_parse(index, raw) for index, raw in enumerate(batch.records)]
    good = [r for r in parsed if isinstance(r, RecordIn)]
    plans, versions = _named_plans(session, caller, {(r.plan_id, r.plan_version) for r in good})

    # What every record of this upload shares.
    common = {
        "clinic_id": principal.clinic_id,
        "source": SOURCES[principal.kind],
        "recorded_by": principal.id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    results: list[dict[str, Any]] = []
    candidates: dict[int, dict[str, Any]] = {}  # by index: the row each accepted record makes
    for index, record in enumerate(parsed):
        if not isinstance(record, RecordIn):
            results.append(_rejected(index, batch.records[index].get("id"), record))
            continue
        found = plans.get(record.plan_id)
        problem = None
        if found is None:
            problem = _problem(index, "plan_id", "No such plan for this caller.")
        elif (record.plan_id, record.plan_version) not in versions:
            problem = _problem(index, "plan_version", "The plan has no such version.")
        elif str(record.item_id) not in versions[(record.plan_id, record.plan_version)]:
            problem = _problem(index, "item_id", "Not an item of that plan version.")
        elif record.performed_at > now + CLOCK_SKEW:
            problem = _problem(index, "performed_at", "In the future.")
        if problem or found is None:
            results.append(_rejected(index, record.id, problem or []))
            continue
        patient_id, zone = found
        offset = record.performed_at.utcoffset() or timedelta(0)
        candidates[index] = {
            **record.__dict__,  # its fields, as validated
            **common,
            "patient_id": patient_id,
            "utc_offset_minutes": int(offset.total_seconds() // 60),
            "performed_on": record.performed_at.astimezone(ZoneInfo(zone)).date(),
        }
        results.append(_result(index, record.id, "created"))

    # The first of several records with one id is the one inserted; the rest compare to it.
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for row in candidates.values():
        rows.setdefault(row["id"], row)

    created = _insert_new(session, list(rows.values()), common)
    # Only ids stored before this upload need reading back; new rows are as we wrote them.
    earlier = set(rows) - created
    stored: dict[uuid.UUID, Any] = dict(rows) | (
        {
            r.id: r
            for r in session.exec(
                select(AdherenceRecord).where(col(AdherenceRecord.id).in_(earlier))
            )
        }
        if earlier
        else {}
    )
    touched: set[uuid.UUID] = set()
    shown: set[uuid.UUID] = set()  # patients whose stored records a replay answer shows
    new_rows: list[tuple[uuid.UUID | str, str, int | None]] = []
    for result in results:
        index, record_id = result["index"], result["id"]
        if result["result"] != "created":
            continue
        mine, existing = candidates[index], _content(stored[record_id])
        if existing["clinic_id"] != principal.clinic_id or (
            existing["patient_id"] != mine["patient_id"]
        ):
            # Someone else's record: say nothing about it.
            result["result"] = "rejected"
            result["errors"] = _problem(index, "id", "This id is taken; use a new one.")
            continue
        if existing.get("deleted_at") is not None:
            # Deleted since it was uploaded: a late replay does not bring it back.
            result["result"] = "rejected"
            result["errors"] = _problem(index, "id", "This record was deleted.")
            continue
        if record_id in created:
            # The record as just stored, in RecordPublic's field order.
            result["record"] = {field: mine[field] for field in PUBLIC_FIELDS}
            created.discard(record_id)
            touched.add(existing["patient_id"])
            new_rows.append((record_id, "create", 1))
        else:
            result["record"] = public(existing)
            result["result"] = "unchanged" if _same(existing, mine) else "conflict"
            shown.add(existing["patient_id"])
    # Four writes, none read back: one round trip.
    with pipelined(session):
        record_changes(session, principal.clinic_id, "adherence_record", new_rows)
        rollups.mark_stale(session, patient_ids=touched, uploaded_at=now)
        audit.record_many(
            session, caller, "create", "adherence_record", [(None, p) for p in sorted(touched)]
        )
        audit.record_many(
            session, caller, "read", "adherence_record", [(None, p) for p in sorted(shown)]
        )
    return results


def _result(
    index: int,
    record_id: uuid.UUID | None,
    result: str,
    errors: list[FieldError] | None = None,
) -> dict[str, Any]:
    """A RecordResult's fields, in its order."""
    return {"index": index, "id": record_id, "result": result, "record": None, "errors": errors}


def _named_plans(
    session: Session, caller: Caller, named: set[tuple[uuid.UUID, int]]
) -> tuple[dict[uuid.UUID, tuple[uuid.UUID, str]], dict[tuple[uuid.UUID, int], set[str]]]:
    """Each named plan of the caller's clinic (the patient's own, for a patient's app) whose
    patient is not deleted, as (patient, time zone), and the item ids of each named version
    of it: one query."""
    plans: dict[uuid.UUID, tuple[uuid.UUID, str]] = {}
    versions: dict[tuple[uuid.UUID, int], set[str]] = {}
    if not named:
        return plans, versions
    principal = caller.principal
    patient_id = principal.patient_id if principal.kind == ActorKind.patient else None
    rows: Any
    if session.get_bind().dialect.name == "postgresql":
        # Arrays keep the statement's text the same for any batch, and only the item ids
        # come back, not whole versions: a fraction of the query below, on the hot path.
        rows = session.execute(
            NAMED_PLANS,
            {
                "plan_ids": [plan_id for plan_id, _ in named],
                "numbers": [number for _, number in named],
                "clinic_id": principal.clinic_id,
                "patient_id": patient_id,
            },
        )
    else:
        plan, patient, version = PLANS, PATIENTS, PLAN_VERSIONS
        statement = (
            sa_select(
                plan.c.id,
                plan.c.patient_id,
                patient.c.time_zone,
                version.c.number,
                version.c["items"],
            )
            .join(patient, patient.c.id == plan.c.patient_id)
            .outerjoin(
                version,
                and_(
                    version.c.plan_id == plan.c.id,
                    tuple_(version.c.plan_id, version.c.number).in_(named),
                ),
            )
            .where(
                plan.c.id.in_({plan_id for plan_id, _ in named}),
                plan.c.clinic_id == principal.clinic_id,
                patient.c.deleted_at.is_(None),
            )
        )
        if patient_id is not None:
            statement = statement.where(plan.c.patient_id == patient_id)
        rows = (
            (plan_id, owner, zone, number, [item["id"] for item in items or ()])
            for plan_id, owner, zone, number, items in session.execute(statement)
        )
    for plan_id, owner, zone, number, item_ids in rows:
        plans[plan_id] = (owner, zone)
        if number is not None:
            versions[(plan_id, number)] = set(item_ids)
    return plans, versions


NAMED_PLANS = text(
    "SELECT plan.id, plan.patient_id, patient.time_zone, version.number,"
    " ARRAY(SELECT jsonb_array_elements(version.items) ->> 'id')"
    " FROM plan JOIN patient ON patient.id = plan.patient_id"
    " LEFT JOIN plan_version AS version ON version.plan_id = plan.id"
    " AND (version.plan_id, version.number) IN"
    " (SELECT * FROM unnest(CAST(:plan_ids AS uuid[]), CAST(:numbers AS integer[])))"
    " WHERE plan.id = ANY(CAST(:plan_ids AS uuid[])) AND plan.clinic_id = :clinic_id"
    " AND patient.deleted_at IS NULL"
    " AND (CAST(:patient_id AS uuid) IS NULL OR plan.patient_id = :patient_id)"
)


def _rejected(index: int, record_id: Any, errors: list[FieldError]) -> dict[str, Any]:
    try:
        parsed_id = uuid.UUID(str(record_id)) if record_id is not None else None
    except ValueError:
        parsed_id = None
    return _result(index, parsed_id, "rejected", errors)


def _content(record: AdherenceRecord | dict[str, Any]) -> dict[str, Any]:
    """A stored record's columns, from the row as read or as this upload inserted it."""
    return record if isinstance(record, dict) else record.model_dump()


def _same(existing: dict[str, Any], row: dict[str, Any]) -> bool:
    return all(existing[field] == row[field] for field in CONTENT)


def _insert_new(
    session: Session, rows: list[dict[str, Any]], common: dict[str, Any]
) -> set[uuid.UUID]:
    """Insert the rows whose id is not stored yet; the ids actually inserted come back.

    ON CONFLICT DO NOTHING makes two racing uploads of the same batch safe: the second
    waits for the first, then skips what it stored.
    """
    return insert_many(session, RECORDS, rows, common=common, skip_conflicts=True)


def list_records(
    session: Session, caller: Caller, patient_id: uuid.UUID, query: RecordQuery
) -> tuple[list[AdherenceRecord], str | None]:
    patient = patients.load(session, caller, patient_id)
    # clinic_id leads the index on (clinic, patient, local date).
    statement = select(AdherenceRecord).where(
        AdherenceRecord.clinic_id == patient.clinic_id,
        AdherenceRecord.patient_id == patient.id,
        col(AdherenceRecord.deleted_at).is_(None),
    )
    if query.since is not None:
        statement = statement.where(col(AdherenceRecord.performed_on) >= query.since)
    if query.until is not None:
        statement = statement.where(col(AdherenceRecord.performed_on) <= query.until)
    if query.item_id is not None:
        statement = statement.where(AdherenceRecord.item_id == query.item_id)
    if query.status is not None:
        statement = statement.where(AdherenceRecord.status == query.status)
    if query.cursor is not None:
        position = time_position(query.cursor)
        statement = statement.where(
            tuple_(col(AdherenceRecord.performed_at), col(AdherenceRecord.id)) < position
        )
    statement = statement.order_by(
        col(AdherenceRecord.performed_at).desc(), col(AdherenceRecord.id).desc()
    ).limit(query.limit + 1)
    rows, cursor = split_page(
        list(session.exec(statement).all()),
        query.limit,
        lambda row: [row.performed_at.isoformat(), str(row.id)],
    )
    audit.record(session, caller, "list", "adherence_record", None, patient.id)
    return rows, cursor


def etag(record: AdherenceRecord) -> str:
    return f'"{record.id}-{record.version}"'


def load(session: Session, caller: Caller, record_id: uuid.UUID) -> AdherenceRecord:
    """The record if the caller may see it: the patient's own, or in the staff's clinic."""
    principal = caller.principal
    statement = select(AdherenceRecord).where(
        AdherenceRecord.id == record_id,
        AdherenceRecord.clinic_id == principal.clinic_id,
        col(AdherenceRecord.deleted_at).is_(None),
    )
    if principal.kind == ActorKind.patient:
        statement = statement.where(AdherenceRecord.patient_id == principal.patient_id)
    record = session.exec(statement).first()
    if record is None:
        raise NotFound(f"No adherence record {record_id}.")
    return record


def read(session: Session, caller: Caller, record_id: uuid.UUID) -> AdherenceRecord:
    record = load(session, caller, record_id)
    audit.record(session, caller, "read", "adherence_record", record.id, record.patient_id)
    return record


def correct(
    session: Session,
    caller: Caller,
    record_id: uuid.UUID,
    data: RecordUpdate,
    if_match: str | None,
) -> AdherenceRecord:
    """A new version of the record; the one it replaces stays readable."""
    record = load(session, caller, record_id)
    if if_match is None:
        raise PreconditionRequired("Send If-Match with the record's ETag.")
    if not etag_matches_strongly(if_match, etag(record)):
        raise PreconditionFailed("The record changed since you read it; read it again.")
    changes = data.model_dump(exclude_unset=True)
    merged = {**public(record).model_dump(), **changes}
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
        patient = session.get(Patient, record.patient_id)
        assert patient is not None
        offset = performed.utcoffset() or timedelta(0)
        changes["utc_offset_minutes"] = int(offset.total_seconds() // 60)
        changes["performed_on"] = performed.astimezone(ZoneInfo(patient.time_zone)).date()
    if all(getattr(record, k) == v for k, v in changes.items()):
        return record
    session.add(
        AdherenceRecordVersion(
            record_id=record.id,
            version=record.version,
            content=public(record).model_dump(mode="json"),
            replaced_by=caller.principal.id,
        )
    )
    for field, value in changes.items():
        setattr(record, field, value)
    record.version += 1
    record.updated_at = utcnow()
    session.add(record)
    # If the version row exists, a concurrent correction from the same read won.
    flush_or(session, PreconditionFailed("The record changed since you read it; read it again."))
    record_change(
        session, record.clinic_id, "adherence_record", record.id, "update", version=record.version
    )
    rollups.mark_stale(session, patient_ids=[record.patient_id])
    audit.record(session, caller, "update", "adherence_record", record.id, record.patient_id)
    return record


def delete(session: Session, caller: Caller, record_id: uuid.UUID) -> None:
    """Soft: the record leaves every list and summary; sync consumers get a tombstone."""
    record = load(session, caller, record_id)
    record.deleted_at = utcnow()
    session.add(record)
    record_change(
        session, record.clinic_id, "adherence_record", record.id, "delete", version=record.version
    )
    rollups.mark_stale(session, patient_ids=[record.patient_id])
    audit.record(session, caller, "delete", "adherence_record", record.id, record.patient_id)


def versions(session: Session, caller: Caller, record_id: uuid.UUID) -> list[RecordVersionPublic]:
    record = read(session, caller, record_id)
    earlier = session.exec(
        select(AdherenceRecordVersion)
        .where(AdherenceRecordVersion.record_id == record.id)
        .order_by(col(AdherenceRecordVersion.version))
    ).all()
    return [
        *(
            RecordVersionPublic(
                version=row.version,
                record=RecordPublic.model_validate(row.content),
                replaced_at=row.replaced_at,
                replaced_by=row.replaced_by,
            )
            for row in earlier
        ),
        RecordVersionPublic(
            version=record.version, record=public(record), replaced_at=None, replaced_by=None
        ),
    ]


def summary(
    engine: Engine,
    secrets: Secrets,
    authorization: str | None,
    caller_of: Callable[[Principal], Caller],
    patient_id: uuid.UUID,
    query: SummaryQuery,
) -> bytes:
    """The summary as JSON, for staff holding `adherence:read`. One transaction does the
    whole request: the caller's session with the patient and their plan versions, then the
    read with its audit event. (On PostgreSQL, `summary_awaiting` answers instead.)"""
    session_id = staff_session(secrets, authorization)
    with engine.begin() as connection:
        rows = connection.execute(
            summaries.CALLER_AND_SUBJECT, {"session_id": session_id, "patient_id": patient_id}
        ).all()
        asked = _summary_asked(session_id, rows, caller_of, patient_id, query)
        found = summaries.read(connection, *asked.period, asked.audit_event)
    return summaries.summarize(summaries.outlook(*asked.period, asked.today), found)


async def summary_awaiting(
    connections: AsyncConnections,
    secrets: Secrets,
    authorization: str | None,
    caller_of: Callable[[Principal], Caller],
    patient_id: uuid.UUID,
    query: SummaryQuery,
) -> bytes:
    """`summary` on PostgreSQL, awaiting the database rather than holding a thread: the
    same two statements on one of `connections`. While the database reads the records,
    the plans' expectations are worked out."""
    session_id = staff_session(secrets, authorization)
    async with connections.connection() as connection:
        values = {"session_id": session_id, "patient_id": patient_id}
        rows = await (await connection.execute(CALLER_AND_SUBJECT_SQL, values)).fetchall()
        asked = _summary_asked(session_id, rows, caller_of, patient_id, query)
        statement = summaries.read_statement(*asked.period, asked.audit_event)
        reading = asyncio.ensure_future(_fetched(connection, statement))
        try:
            await asyncio.sleep(0)  # The statement is sent...
            outlook = summaries.outlook(*asked.period, asked.today)  # ...meanwhile, this.
        finally:
            # Whatever happened, the read ends before its connection is given back.
            found = await reading
    return summaries.summarize(outlook, found)


async def _fetched(
    connection: psycopg.AsyncConnection[Any], statement: tuple[str, dict[str, Any]]
) -> list[Any]:
    """The rows of a statement, in binary: dates and numbers load faster so."""
    return await (await connection.execute(*statement, binary=True)).fetchall()


CALLER_AND_SUBJECT_SQL = summaries.postgresql(summaries.CALLER_AND_SUBJECT)[0]


@dataclass(frozen=True)
class _Asked:
    period: tuple[summaries.Subject, date, date]  # the patient, from and to
    today: date  # the patient's
    audit_event: dict[str, Any]


def _summary_asked(
    session_id: uuid.UUID,
    rows: Sequence[Any],
    caller_of: Callable[[Principal], Caller],
    patient_id: uuid.UUID,
    query: SummaryQuery,
) -> _Asked:
    """What a summary request asks, once `CALLER_AND_SUBJECT`'s rows show the caller may
    have it."""
    principal = principal_of(session_id, rows[0] if rows else None)
    caller = caller_of(as_staff(principal, Scope.adherence_read))
    patient = summaries.subject(rows, caller.clinic_id, patient_id)
    if patient is None:
        raise NotFound(f"No patient {patient_id}.")
    today = datetime.now(ZoneInfo(patient.time_zone)).date()
    until = query.until or today
    since = query.since or until - timedelta(days=27)
    if since > until:
        raise InvalidInput([FieldError(location="query", pointer="#/from", detail="After `to`.")])
    if (until - since).days >= MAX_SUMMARY_DAYS:
        raise InvalidInput(
            [
                FieldError(
                    location="query",
                    pointer="#/from",
                    detail=f"At most {MAX_SUMMARY_DAYS} days at a time.",
                )
            ]
        )
    event = audit.event(caller, "read", "adherence_summary", None, patient.id)
    return _Asked((patient, since, until), today, event)


def overview(session: Session, caller: Caller, query: OverviewQuery) -> dict[str, Any]:
    """An Overview's fields (by alias) as plain values in its order, rows included: they
    render as JSON as they are."""
    clinic = session.execute(CLINIC_THRESHOLDS, {"clinic_id": caller.clinic_id}).one()
    rollups.refresh(session, clinic, utcnow())
    rows, cursor = rollups.page(session, clinic, query)
    # One event per patient shown, as for the patient list.
    audit.record_many(
        session,
        caller,
        "list",
        "adherence_overview",
        [(row["patient_id"], row["patient_id"]) for row in rows],
    )
    return {
        "items": rows,
        "next_cursor": cursor,
        "threshold_percent": clinic.adherence_threshold_percent,
        "pain_alert_at": clinic.pain_alert_at,
    }


# Built once: every overview request reads them.
CLINIC_THRESHOLDS = sa_select(
    col(Clinic.id), col(Clinic.adherence_threshold_percent), col(Clinic.pain_alert_at)
).where(col(Clinic.id) == bindparam("clinic_id"))
