"""Batch uploads from a patient's app (or their clinic): each record answered on its own,
and a replay never duplicates.

Records are patient data: an upload leaves audit events, and every stored record writes
its change to the outbox, all in the request's transaction.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import and_, case, null, select, tuple_
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence import rollups
from app.adherence.models import Source
from app.adherence.records import CLOCK_SKEW, RECORDS, render
from app.adherence.schemas import BatchIn, RecordIn
from app.audit import service as audit
from app.auth.models import ActorKind
from app.auth.principal import Caller
from app.core.columns import utcnow
from app.core.db import execute, retried, table_of
from app.core.driver import insert_many
from app.core.errors import FieldError, describe
from app.patients.models import Patient
from app.plans import in_force
from app.plans.models import Plan, PlanVersion
from app.sync.outbox import record_changes

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
                detail=describe(e),
            )
            for e in error.errors()
        ]


async def upload(session: AsyncSession, caller: Caller, batch: BatchIn) -> list[dict[str, Any]]:
    """Store what is new, recognise what is already stored, and say which is which.

    The answer is BatchResult's ``results`` as plain values (dicts, with models only for
    errors and stored records): every value already has its field's type, so it renders
    as JSON without a model to build per record.
    """
    principal = caller.principal
    now = utcnow()
    parsed = [_parse(index, raw) for index, raw in enumerate(batch.records)]
    good = [r for r in parsed if isinstance(r, RecordIn)]
    plans = await _named_plans(session, caller, {(r.plan_id, r.plan_version) for r in good})

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
        performed_on = None
        if found is None:
            problem = _problem(index, "plan_id", "No such plan for this caller.")
        elif record.plan_version not in found.numbers:
            problem = _problem(index, "plan_version", "The plan has no such version.")
        elif str(record.item_id) not in found.items[record.plan_version]:
            problem = _problem(index, "item_id", "Not an item of that plan version.")
        elif record.performed_at > now + CLOCK_SKEW:
            problem = _problem(index, "performed_at", "In the future.")
        else:
            performed_on = record.performed_at.astimezone(found.zone).date()
            problem = found.outside(index, record.plan_version, performed_on)
        if problem or found is None or performed_on is None:
            results.append(_rejected(index, record.id, problem or []))
            continue
        offset = record.performed_at.utcoffset() or timedelta(0)
        candidates[index] = {
            **record.__dict__,  # its fields, as validated
            **common,
            "patient_id": found.patient_id,
            "utc_offset_minutes": int(offset.total_seconds() // 60),
            "performed_on": performed_on,
        }
        results.append(_result(index, record.id, "created"))

    # The first of several records with one id is the one inserted; the rest compare to it.
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for row in candidates.values():
        rows.setdefault(row["id"], row)

    # ON CONFLICT DO NOTHING: a replay, even one racing the first upload, skips what is
    # stored (or being stored). `insert_many` inserts the rows in key order, whatever order
    # they came in: each row locks its key until commit, so concurrent uploads of the same
    # records in different orders would each wait for a key the other holds (a deadlock,
    # issue 18); in one order, a later upload only waits for an earlier one. Should the
    # database still refuse it for now (a deadlock), the insert, this transaction's first
    # write, is tried again.
    # The key is (clinic, id): an id is taken only by a record of the caller's own clinic.
    inserted: set[tuple[uuid.UUID, uuid.UUID]] = await retried(
        session,
        lambda: insert_many(
            session, RECORDS, list(rows.values()), common=common, skip_conflicts=True
        ),
    )
    created = {record_id for _, record_id in inserted}
    # Only ids stored before this upload need reading back; new rows are as we wrote them.
    earlier = set(rows) - created
    stored: dict[uuid.UUID, Mapping[str, Any]] = dict(rows)
    if earlier:
        found_rows = await execute(
            session,
            select(RECORDS).where(
                RECORDS.c.clinic_id == principal.clinic_id, RECORDS.c.id.in_(sorted(earlier))
            ),
        )
        stored |= {row["id"]: row for row in found_rows.mappings()}
    touched: set[uuid.UUID] = set()
    shown: set[uuid.UUID] = set()  # patients whose stored records a replay answer shows
    new_rows: list[tuple[uuid.UUID | str, str, int | None]] = []
    for result in results:
        index, record_id = result["index"], result["id"]
        if result["result"] != "created":
            continue
        mine, existing = candidates[index], stored[record_id]
        if existing["patient_id"] != mine["patient_id"]:
            # Another patient's record in the clinic: say nothing about it.
            result["result"] = "rejected"
            result["errors"] = _problem(index, "id", "This id is taken; use a new one.")
            continue
        if existing.get("deleted_at") is not None:
            # Deleted since it was uploaded: a late replay does not bring it back.
            result["result"] = "rejected"
            result["errors"] = _problem(index, "id", "This record was deleted.")
            continue
        if record_id in created:
            result["record"] = render(mine)  # as just stored
            created.discard(record_id)
            touched.add(existing["patient_id"])
            new_rows.append((record_id, "create", 1))
        else:
            result["record"] = render(existing)
            result["result"] = "unchanged" if _same(existing, mine) else "conflict"
            shown.add(existing["patient_id"])
    await record_changes(session, principal.clinic_id, "adherence_record", new_rows)
    await rollups.mark_stale(session, principal.clinic_id, touched, uploaded_at=now)
    # One event per patient and action (none for an empty list).
    for action, patient_ids in (("create", touched), ("read", shown)):
        await audit.record_many(
            session, caller, action, "adherence_record", [(None, p) for p in sorted(patient_ids)]
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


def _rejected(index: int, record_id: Any, errors: list[FieldError]) -> dict[str, Any]:
    try:
        parsed_id = uuid.UUID(str(record_id)) if record_id is not None else None
    except ValueError:
        parsed_id = None
    return _result(index, parsed_id, "rejected", errors)


def _same(existing: Mapping[str, Any], row: dict[str, Any]) -> bool:
    return all(existing[field] == row[field] for field in CONTENT)


class NamedVersion(NamedTuple):
    """What an upload reads of a version of a named plan."""

    plan_id: uuid.UUID
    number: int
    created_at: datetime
    status: str
    start_date: date
    end_date: date | None


@dataclass(slots=True)
class NamedPlan:
    """A plan an upload names: its patient and their time zone, the terms of its versions
    (`app.plans.in_force`) by number, and the item ids of each version named."""

    patient_id: uuid.UUID
    zone: ZoneInfo
    terms: dict[int, in_force.Term[NamedVersion]] = field(default_factory=dict)
    numbers: set[int] = field(default_factory=set)
    items: dict[int, set[str]] = field(default_factory=dict)

    def outside(self, index: int, number: int, day: date) -> list[FieldError] | None:
        """Why a record against version ``number`` on local ``day`` is outside the plan,
        or None if that version was in force on that day."""
        why = in_force.outside(self.terms, number, day)
        return None if why is None else _problem(index, *why)


async def _named_plans(
    session: AsyncSession, caller: Caller, named: set[tuple[uuid.UUID, int]]
) -> dict[uuid.UUID, NamedPlan]:
    """Each named plan of the caller's clinic (the patient's own, for a patient's app) whose
    patient is not deleted, with the terms of all its versions and the items of those named:
    one query."""
    plans: dict[uuid.UUID, NamedPlan] = {}
    if not named:
        return plans
    principal = caller.principal
    plan, patient, version = table_of(Plan), table_of(Patient), table_of(PlanVersion)
    is_named = tuple_(version.c.plan_id, version.c.number).in_(sorted(named))
    statement = (
        select(
            plan.c.id.label("plan_id"),
            plan.c.patient_id,
            patient.c.time_zone,
            version.c.number,
            version.c.created_at,
            version.c.status,
            version.c.start_date,
            version.c.end_date,
            # Items only of the versions named: the others' are not needed.
            case((is_named, version.c["items"]), else_=null()).label("items"),
        )
        .join(
            patient,
            and_(patient.c.clinic_id == plan.c.clinic_id, patient.c.id == plan.c.patient_id),
        )
        .outerjoin(
            version,
            and_(version.c.clinic_id == plan.c.clinic_id, version.c.plan_id == plan.c.id),
        )
        .where(
            plan.c.id.in_(sorted({plan_id for plan_id, _ in named})),
            plan.c.clinic_id == principal.clinic_id,
            patient.c.deleted_at.is_(None),
        )
        .order_by(plan.c.id, version.c.number)
    )
    if principal.kind == ActorKind.patient:
        statement = statement.where(plan.c.patient_id == principal.patient_id)
    versions: dict[uuid.UUID, list[NamedVersion]] = {}
    for row in (await execute(session, statement)).mappings():
        found = plans.get(row["plan_id"])
        if found is None:
            found = plans[row["plan_id"]] = NamedPlan(row["patient_id"], ZoneInfo(row["time_zone"]))
        if row["number"] is None:
            continue
        found.numbers.add(row["number"])
        versions.setdefault(row["plan_id"], []).append(
            NamedVersion(
                row["plan_id"],
                row["number"],
                row["created_at"],
                row["status"],
                row["start_date"],
                row["end_date"],
            )
        )
        if row["items"] is not None:
            found.items[row["number"]] = {item["id"] for item in row["items"]}
    for plan_id, history in versions.items():
        found = plans[plan_id]
        found.terms = {term.version.number: term for term in in_force.terms(history, found.zone)}
    return plans
