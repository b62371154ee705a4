"""Each patient's overview figures (``adherence_rollup``): made when first needed, marked
stale by writes to the patient's records or plans, recomputed before they are read, and
computed ahead of each patient's midnight by the worker.

Adherence windows are complete local days (the 7 or 30 days before the patient's today),
computed by the same rules as the summary, so a patient's overview figure equals their
summary over that window. A window of past days only changes when a record does (or a
plan version: the first active one governs from the plan's start date), so a row holds
until the patient's next midnight, until a write marks it stale, or until the patient's
time zone or the clinic's pain alert level is no longer the one it was computed with.
Nothing outside this package needs to tell it anything: `refresh` finds those rows
itself, with the patients who have no row yet, and recomputes them (in chunks of
patients, three queries each, the records one by index); new plan versions are noticed
as their writer's session flushes them (`_plans_changed`).

At a midnight every figure of the patient expires at once, and for a clinic whose
patients share a time zone that is every row: recomputing them all then would make the
first reader wait seconds, and even copying them into place would cost the reader a
write per row. So the worker computes each patient's next day's figures within `AHEAD`
of their midnight (`compute_ahead`), beside the current ones; past the midnight they are
in force as they lie (a reader takes them with `in_force`), until the worker's next
round moves them into place (`take_over`). The next day's windows end with the patient's
today, which is not over: a write to today's records or a plan version made today marks
the row stale as any write does, which spends the next day's figures too (the worker
computes them again in its next round, or a reader recomputes that patient).
"""

import gc
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    Update,
    and_,
    bindparam,
    case,
    event,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, UOWTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence.models import STALE, AdherenceRecord, AdherenceRollup
from app.adherence.summary import Done, credit, due, plan_versions
from app.core.columns import UTCDateTime
from app.core.db import execute, table_of
from app.core.driver import insert_many
from app.patients.models import Patient
from app.plans.models import Plan, PlanVersion

CHUNK = 1000
WEEK, MONTH = 7, 30
# How long before a patient's midnight the worker computes their next day's figures. A
# round runs every 10 s and computes 10,000 patients in about 5 s, so a quarter of an hour
# leaves room for a large clinic, a slow round or a restarted worker; longer would only
# widen the time in which an upload for today spends the figures and costs a second
# computation.
AHEAD = timedelta(minutes=15)

ROLLUPS = table_of(AdherenceRollup)
PATIENTS = table_of(Patient)
RECORDS = table_of(AdherenceRecord)
PLANS = table_of(Plan)


class ClinicSettings(Protocol):
    """What the overview reads of a clinic."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def adherence_threshold_percent(self) -> int: ...
    @property
    def pain_alert_at(self) -> int: ...


def _marking(rows: Select[Any], uploaded: bool = False) -> Update:
    """Mark these rows stale, spend their next day's figures and bump their generation
    (an upload also sets the last upload). Rows are locked in patient order, as a
    recomputation locks them: two writers of the same rows queue rather than deadlock."""
    values: dict[str, Any] = {
        "valid_until": STALE,
        "next_valid_until": null(),
        "generation": ROLLUPS.c.generation + 1,
    }
    if uploaded:
        values["last_upload_at"] = bindparam("uploaded_at", type_=UTCDateTime())
    locked = rows.order_by(ROLLUPS.c.patient_id).with_for_update(of=ROLLUPS).scalar_subquery()
    return update(ROLLUPS).where(ROLLUPS.c.patient_id.in_(locked)).values(values)


_OF_PATIENTS = select(ROLLUPS.c.patient_id).where(
    ROLLUPS.c.patient_id.in_(bindparam("patient_ids"))
)
# The rows of the patients whose plans these are (names unlike columns': an UPDATE keeps
# those for its SET clause).
_OF_PLANS = (
    select(ROLLUPS.c.patient_id)
    .join(
        PLANS,
        and_(PLANS.c.clinic_id == ROLLUPS.c.clinic_id, PLANS.c.patient_id == ROLLUPS.c.patient_id),
    )
    .where(
        PLANS.c.clinic_id == bindparam("b_clinic_id", type_=PLANS.c.clinic_id.type),
        PLANS.c.id.in_(bindparam("b_plan_ids")),
    )
)
# Built once: every upload, correction, delete and plan version runs one.
MARK_STALE, MARK_UPLOADED = _marking(_OF_PATIENTS), _marking(_OF_PATIENTS, uploaded=True)
MARK_PLANNED = _marking(_OF_PLANS)


async def _make_rows(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    patient_ids: Sequence[uuid.UUID],
    *,
    generation: int,
    uploaded_at: datetime | None = None,
) -> set[uuid.UUID]:
    """Make stale rows for those of these patients who have none; the ids of the rows made
    come back. Rows are made in patient order (`insert_many` sorts them), as they are then
    locked."""
    fresh = AdherenceRollup(
        patient_id=uuid.UUID(int=0),
        clinic_id=clinic_id,
        generation=generation,
        last_upload_at=uploaded_at,
    )
    common = fresh.model_dump(exclude={"patient_id"})
    rows = [{"patient_id": patient_id} for patient_id in patient_ids]
    return await insert_many(session, ROLLUPS, rows, common=common, skip_conflicts=True)


async def mark_stale(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    patient_ids: Iterable[uuid.UUID],
    *,
    uploaded_at: datetime | None = None,
) -> None:
    """Recompute these patients' figures on the next read; an upload also moves the last
    upload time. A patient's first upload makes their row."""
    ids = sorted(set(patient_ids))
    if not ids:
        return
    # Generation 1: a recomputation that found no row (generation 0 when it made one) and
    # read the records before this write cannot overwrite the mark.
    made = await _make_rows(session, clinic_id, ids, generation=1, uploaded_at=uploaded_at)
    rest = [patient_id for patient_id in ids if patient_id not in made]
    if rest:
        statement = MARK_STALE if uploaded_at is None else MARK_UPLOADED
        values: dict[str, Any] = {"patient_ids": rest}
        if uploaded_at is not None:
            values["uploaded_at"] = uploaded_at
        await execute(session, statement, values)


@event.listens_for(Session, "after_flush")
def _plans_changed(session: Session, _flush: UOWTransaction) -> None:
    """A new plan version may govern days the patient's figures hold (today's, in the next
    day's windows, or past ones for a plan's first active version): mark their row stale
    in the writer's transaction, as a write to their records does. (The session's ``new``
    still lists what this flush inserted.)"""
    plans = sorted(
        {(made.clinic_id, made.plan_id) for made in session.new if isinstance(made, PlanVersion)}
    )
    if not plans:
        return
    connection = session.connection()
    for clinic_id, of_clinic in groupby(plans, key=itemgetter(0)):
        ids = [plan_id for _, plan_id in of_clinic]
        connection.execute(MARK_PLANNED, {"b_clinic_id": clinic_id, "b_plan_ids": ids})


def _next_in_force(now: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether a row's next day's figures are in force at ``now``: its midnight has passed
    and they hold (a stale row's were spent)."""
    return and_(ROLLUPS.c.valid_until <= now, ROLLUPS.c.next_valid_until > now)


def in_force(name: str, now: ColumnElement[Any]) -> ColumnElement[Any]:
    """A figure of a row as in force at ``now``: the next day's once its midnight has
    passed, until the worker moves them into place."""
    return case((_next_in_force(now), ROLLUPS.c[f"next_{name}"]), else_=ROLLUPS.c[name])


def _stale_rows() -> Select[Any]:
    """The clinic's living patients whose figures need computing, in patient order: no row
    yet (no generation), past its local midnight with no next day's figures in force, or
    marked stale, or computed in another time zone or with another pain alert level than
    the patient's and the clinic's now."""
    patient, rollup = PATIENTS.c, ROLLUPS.c
    now = bindparam("now", type_=rollup.valid_until.type)
    return (
        select(patient.id.label("patient_id"), patient.time_zone, rollup.generation)
        .select_from(
            PATIENTS.outerjoin(
                ROLLUPS, (rollup.clinic_id == patient.clinic_id) & (rollup.patient_id == patient.id)
            )
        )
        .where(
            patient.clinic_id == bindparam("clinic_id", type_=patient.clinic_id.type),
            patient.deleted_at.is_(None),
            or_(
                rollup.patient_id.is_(None),
                and_(
                    rollup.valid_until <= now,
                    or_(rollup.next_valid_until.is_(None), rollup.next_valid_until <= now),
                ),
                rollup.time_zone.is_distinct_from(patient.time_zone),
                rollup.pain_alert_at.is_distinct_from(bindparam("pain_alert_at", type_=Integer())),
            ),
        )
        .order_by(patient.id)
    )


def _ahead_rows() -> Select[Any]:
    """Up to ``limit`` of the clinic's living patients, in patient order, whose midnight
    comes within `AHEAD` and who have no next day's figures yet. Only rows whose current
    figures hold, computed with the patient's time zone and the clinic's pain alert
    level: others are `refresh`'s to recompute first."""
    patient, rollup = PATIENTS.c, ROLLUPS.c
    return (
        select(
            patient.id.label("patient_id"), patient.time_zone, rollup.generation, rollup.valid_until
        )
        .select_from(
            PATIENTS.join(
                ROLLUPS, (rollup.clinic_id == patient.clinic_id) & (rollup.patient_id == patient.id)
            )
        )
        .where(
            patient.clinic_id == bindparam("clinic_id", type_=patient.clinic_id.type),
            patient.deleted_at.is_(None),
            rollup.valid_until > bindparam("now", type_=rollup.valid_until.type),
            rollup.valid_until <= bindparam("horizon", type_=rollup.valid_until.type),
            rollup.next_valid_until.is_(None),
            rollup.time_zone == patient.time_zone,
            rollup.pain_alert_at == bindparam("pain_alert_at", type_=Integer()),
        )
        .order_by(patient.id)
        .limit(bindparam("limit", type_=Integer()))
    )


def _any_next_in_force() -> Select[Any]:
    """Whether any row of the clinic has its next day's figures in force: after `refresh`,
    the only rows past their midnight (read off the index on clinic and ``valid_until``)."""
    rollup = ROLLUPS.c
    now = bindparam("now", type_=rollup.valid_until.type)
    return (
        select(rollup.patient_id)
        .where(rollup.clinic_id == bindparam("clinic_id"), _next_in_force(now))
        .limit(1)
    )


def _done_by_day() -> Select[Any]:
    """Sessions of some patients since a date, by patient, local date, item and status,
    with their worst pain and how many reached the alert level."""
    record = RECORDS.c
    return (
        select(
            record.patient_id,
            record.performed_on,
            record.item_id,
            record.status,
            func.count().label("sessions"),
            func.max(record.pain).label("worst_pain"),
            func.sum(
                case((record.pain >= bindparam("pain_alert_at", type_=Integer()), 1), else_=0)
            ).label("pain_alerts"),
        )
        .where(
            record.clinic_id == bindparam("clinic_id", type_=record.clinic_id.type),
            record.patient_id.in_(bindparam("patient_ids")),
            record.performed_on >= bindparam("since", type_=record.performed_on.type),
            record.deleted_at.is_(None),
        )
        .group_by(record.patient_id, record.performed_on, record.item_id, record.status)
    )


# A day's figures, by column name: the current ones, and with ``next_`` before them the
# next day's.
FIGURES = (
    "as_of",
    "valid_until",
    "expected_7d",
    "credited_7d",
    "percent_7d",
    "expected_30d",
    "credited_30d",
    "percent_30d",
    "pain_alerts_7d",
    "max_pain_7d",
)


def _recomputed() -> Update:
    """A row's new figures, from values prefixed ``b_``, only where no write marked it
    stale again since it was read (its generation is still the one seen). The next day's
    figures, computed with the old ones, are spent."""
    values: dict[str, Any] = {name: bindparam(f"b_{name}") for name in FIGURES}
    values["time_zone"] = bindparam("b_time_zone")
    values["pain_alert_at"] = bindparam("b_pain_alert_at")
    values["next_valid_until"] = null()
    return (
        update(ROLLUPS)
        .where(
            ROLLUPS.c.patient_id == bindparam("b_patient_id"),
            ROLLUPS.c.generation == bindparam("b_seen"),
        )
        .values(values)
    )


def _computed_ahead() -> Update:
    """A row's next day's figures, from values prefixed ``b_``, only where the current
    ones are still those they follow: no write marked the row stale (its generation), no
    reader recomputed it for another day, time zone or pain alert level meanwhile."""
    rollup = ROLLUPS.c
    return (
        update(ROLLUPS)
        .where(
            rollup.patient_id == bindparam("b_patient_id"),
            rollup.generation == bindparam("b_seen"),
            rollup.valid_until == bindparam("b_seen_until"),
            rollup.time_zone == bindparam("b_time_zone"),
            rollup.pain_alert_at == bindparam("b_pain_alert_at"),
        )
        .values({f"next_{name}": bindparam(f"b_{name}") for name in FIGURES})
    )


def _taking_over() -> Update:
    """Up to ``b_limit`` rows of the clinic whose next day's figures are in force get them
    in place of the current ones: columns copied, nothing recomputed. Rows are locked in
    patient order, as writers lock them."""
    rollup = ROLLUPS.c
    # Not named as columns are: an UPDATE keeps those names for its SET clause.
    due = (
        select(rollup.patient_id)
        .where(
            rollup.clinic_id == bindparam("b_clinic_id", type_=rollup.clinic_id.type),
            _next_in_force(bindparam("b_now", type_=rollup.valid_until.type)),
        )
        .order_by(rollup.patient_id)
        .limit(bindparam("b_limit", type_=Integer()))
        .with_for_update(of=ROLLUPS)
        .scalar_subquery()
    )
    values: dict[str, Any] = {name: rollup[f"next_{name}"] for name in FIGURES}
    values["next_valid_until"] = null()
    return update(ROLLUPS).where(rollup.patient_id.in_(due)).values(values)


# Built once: every overview request runs the first two, and mostly finds nothing.
STALE_ROWS, ANY_NEXT_IN_FORCE = _stale_rows(), _any_next_in_force()
AHEAD_ROWS, DONE_BY_DAY, TAKE_OVER = _ahead_rows(), _done_by_day(), _taking_over()
RECOMPUTED, COMPUTED_AHEAD = _recomputed(), _computed_ahead()


async def refresh(session: AsyncSession, clinic: ClinicSettings, now: datetime) -> int:
    """Recompute the clinic's stale rows (making those missing); returns how many. Rows
    whose next day's figures are in force are not stale."""
    values = {"clinic_id": clinic.id, "now": now, "pain_alert_at": clinic.pain_alert_at}
    stale = list((await execute(session, STALE_ROWS, values)).all())
    with _collector_paused():
        for start in range(0, len(stale), CHUNK):
            await _recompute(session, clinic, stale[start : start + CHUNK], now)
    return len(stale)


async def any_next_in_force(session: AsyncSession, clinic_id: uuid.UUID, now: datetime) -> bool:
    """Whether a page must read some of the clinic's figures with `in_force` (run after
    `refresh`)."""
    values = {"clinic_id": clinic_id, "now": now}
    return (await execute(session, ANY_NEXT_IN_FORCE, values)).first() is not None


async def take_over(
    session: AsyncSession, clinic: ClinicSettings, now: datetime, limit: int
) -> int:
    """Move up to ``limit`` rows' next day's figures, in force at ``now``, into place;
    returns how many (the worker runs it again while it moves ``limit``, a transaction
    each, so that no transaction holds many rows' locks for long)."""
    values = {"b_clinic_id": clinic.id, "b_now": now, "b_limit": limit}
    moved: Any = await execute(session, TAKE_OVER, values)
    return int(moved.rowcount)


async def compute_ahead(
    session: AsyncSession, clinic: ClinicSettings, now: datetime, limit: int
) -> int:
    """Compute the next day's figures of up to ``limit`` of the clinic's patients whose
    midnight comes within `AHEAD` of ``now`` (see `AHEAD_ROWS`); returns how many. Run
    after `refresh`, and again while it returns ``limit``, a transaction each."""
    values = {
        "clinic_id": clinic.id,
        "now": now,
        "horizon": now + AHEAD,
        "pain_alert_at": clinic.pain_alert_at,
        "limit": limit,
    }
    near = list((await execute(session, AHEAD_ROWS, values)).all())
    if not near:
        return 0
    days = {}
    for row in near:
        zone = ZoneInfo(row.time_zone)
        # The current figures end at a local midnight: the next ones are that date's.
        days[row.patient_id] = (zone, row.valid_until.astimezone(zone).date())
    with _collector_paused():
        figures = await _figures(session, clinic, days)
    rows = []
    for row in near:
        bound = {f"b_{name}": figures[row.patient_id][name] for name in FIGURES}
        bound["b_patient_id"] = row.patient_id
        bound["b_seen"] = row.generation
        bound["b_seen_until"] = row.valid_until
        bound["b_time_zone"] = row.time_zone
        bound["b_pain_alert_at"] = clinic.pain_alert_at
        rows.append(bound)
    await execute(session, COMPUTED_AHEAD, rows)
    return len(near)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A recomputation makes many objects that live a moment and no reference cycles; the
    cyclic collector would walk every live object again and again meanwhile (a third of
    the time for 10,000 patients), so it waits until the block ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _recompute(
    session: AsyncSession, clinic: ClinicSettings, stale: list[Row[Any]], now: datetime
) -> None:
    """Compute and write the figures of a chunk of `STALE_ROWS`."""
    missing = [row.patient_id for row in stale if row.generation is None]
    made = await _make_rows(session, clinic.id, missing, generation=0) if missing else set()
    # A row made meanwhile by an upload is left stale: its records may be newer than ours.
    seen = {
        row.patient_id: 0 if row.generation is None else row.generation
        for row in stale
        if row.generation is not None or row.patient_id in made
    }
    if not seen:
        return
    kept = [row for row in stale if row.patient_id in seen]
    days = {}
    for row in kept:
        zone = ZoneInfo(row.time_zone)
        days[row.patient_id] = (zone, now.astimezone(zone).date())
    figures = await _figures(session, clinic, days)
    rows = []
    for row in kept:
        bound = {f"b_{name}": figures[row.patient_id][name] for name in FIGURES}
        bound["b_patient_id"] = row.patient_id
        bound["b_seen"] = seen[row.patient_id]
        bound["b_time_zone"] = row.time_zone
        bound["b_pain_alert_at"] = clinic.pain_alert_at
        rows.append(bound)
    await execute(session, RECOMPUTED, rows)


async def _figures(
    session: AsyncSession, clinic: ClinicSettings, days: dict[uuid.UUID, tuple[ZoneInfo, date]]
) -> dict[uuid.UUID, dict[str, Any]]:
    """Each patient's `FIGURES` as of a local date, in their time zone: the windows end the
    day before it, the pain alerts' week ends with it."""
    versions = await plan_versions(session, list(days))
    done: dict[uuid.UUID, Done] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    pain: dict[uuid.UUID, list[tuple[date, int | None, int]]] = defaultdict(list)
    names: dict[uuid.UUID, str] = {}
    found = await execute(
        session,
        DONE_BY_DAY,
        {
            "clinic_id": clinic.id,
            "patient_ids": list(days),
            "since": min(today for _, today in days.values()) - timedelta(days=MONTH),
            "pain_alert_at": clinic.pain_alert_at,
        },
    )
    for row in found:
        name = names.get(row.item_id) or names.setdefault(row.item_id, str(row.item_id))
        done[row.patient_id][(row.performed_on, name)][row.status] += row.sessions
        pain[row.patient_id].append((row.performed_on, row.worst_pain, int(row.pain_alerts or 0)))

    figures: dict[uuid.UUID, dict[str, Any]] = {}
    for patient_id, (zone, today) in days.items():
        midnight = datetime.combine(today + timedelta(days=1), time(0), zone)
        day: dict[str, Any] = {"as_of": today, "valid_until": midnight.astimezone(UTC)}
        for length, suffix in ((WEEK, "7d"), (MONTH, "30d")):
            start, end = today - timedelta(days=length), today - timedelta(days=1)
            window = {k: v for k, v in done[patient_id].items() if start <= k[0] <= end}
            tally = credit(due(versions[patient_id], start, end, zone), window).total
            day[f"expected_{suffix}"] = tally.expected
            day[f"credited_{suffix}"] = tally.earned
            day[f"percent_{suffix}"] = tally.counts().adherence_percent
        recent = [
            (worst, alerts)
            for on, worst, alerts in pain[patient_id]
            if on > today - timedelta(days=WEEK)
        ]
        worst_pains = [worst for worst, _ in recent if worst is not None]
        day["pain_alerts_7d"] = sum(alerts for _, alerts in recent)
        day["max_pain_7d"] = max(worst_pains) if worst_pains else None
        figures[patient_id] = day
    return figures
