"""Each patient's overview figures (``adherence_rollup``): made when first needed, marked
stale by writes to the patient's records, recomputed before they are read.

Adherence windows are complete local days (the 7 or 30 days before the patient's today),
computed by the same rules as the summary, so a patient's overview figure equals their
summary over that window. A window of past days only changes when a record does, so a
row holds until the patient's next midnight, until a write marks it stale, or until the
patient's time zone or the clinic's pain alert level is no longer the one it was computed
with. Nothing outside this package needs to tell it anything: `refresh` finds those rows
itself, with the patients who have no row yet, and recomputes them (in chunks of
patients, three queries each, the records one by index).
"""

import gc
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Row, Select, Update, bindparam, case, func, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence.models import STALE, AdherenceRecord, AdherenceRollup
from app.adherence.summary import Done, credit, due, plan_versions
from app.core.columns import UTCDateTime
from app.core.db import execute, table_of
from app.core.driver import insert_many
from app.patients.models import Patient

CHUNK = 1000
WEEK, MONTH = 7, 30

ROLLUPS = table_of(AdherenceRollup)
PATIENTS = table_of(Patient)
RECORDS = table_of(AdherenceRecord)


class ClinicSettings(Protocol):
    """What the overview reads of a clinic."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def adherence_threshold_percent(self) -> int: ...
    @property
    def pain_alert_at(self) -> int: ...


def _marking(uploaded: bool) -> Update:
    """Mark rows stale and bump their generation (an upload also sets the last upload).
    Rows are locked in patient order, as a recomputation locks them: two writers of the
    same rows queue rather than deadlock."""
    values: dict[str, Any] = {"valid_until": STALE, "generation": ROLLUPS.c.generation + 1}
    if uploaded:
        values["last_upload_at"] = bindparam("uploaded_at", type_=UTCDateTime())
    locked = (
        select(ROLLUPS.c.patient_id)
        .where(ROLLUPS.c.patient_id.in_(bindparam("patient_ids")))
        .order_by(ROLLUPS.c.patient_id)
        .with_for_update()
        .scalar_subquery()
    )
    return update(ROLLUPS).where(ROLLUPS.c.patient_id.in_(locked)).values(values)


# Built once: every upload, correction and delete runs one.
MARK_STALE, MARK_UPLOADED = _marking(False), _marking(True)


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


def _stale_rows() -> Select[Any]:
    """The clinic's living patients whose figures need computing, in patient order: no row
    yet (no generation), past its local midnight or marked stale, or computed in another
    time zone or with another pain alert level than the patient's and the clinic's now."""
    patient, rollup = PATIENTS.c, ROLLUPS.c
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
                rollup.valid_until <= bindparam("now", type_=rollup.valid_until.type),
                rollup.time_zone.is_distinct_from(patient.time_zone),
                rollup.pain_alert_at.is_distinct_from(bindparam("pain_alert_at", type_=Integer())),
            ),
        )
        .order_by(patient.id)
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


# What a recomputation writes, by name, from its values prefixed ``b_``.
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
    "time_zone",
    "pain_alert_at",
)


def _recomputed() -> Update:
    """A row's new figures, only where no write marked it stale again since it was read
    (its generation is still the one seen)."""
    return (
        update(ROLLUPS)
        .where(
            ROLLUPS.c.patient_id == bindparam("b_patient_id"),
            ROLLUPS.c.generation == bindparam("b_seen"),
        )
        .values({name: bindparam(f"b_{name}") for name in FIGURES})
    )


# Built once: every overview request runs the first, and mostly finds nothing.
STALE_ROWS, DONE_BY_DAY, RECOMPUTED = _stale_rows(), _done_by_day(), _recomputed()


async def refresh(session: AsyncSession, clinic: ClinicSettings, now: datetime) -> int:
    """Recompute the clinic's stale rows (making those missing); returns how many."""
    values = {"clinic_id": clinic.id, "now": now, "pain_alert_at": clinic.pain_alert_at}
    stale = list((await execute(session, STALE_ROWS, values)).all())
    with _collector_paused():
        for start in range(0, len(stale), CHUNK):
            await _recompute(session, clinic, stale[start : start + CHUNK], now)
    return len(stale)


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
    zones = {row.patient_id: ZoneInfo(row.time_zone) for row in stale if row.patient_id in seen}
    todays = {patient_id: now.astimezone(zone).date() for patient_id, zone in zones.items()}
    versions = await plan_versions(session, list(zones))
    done: dict[uuid.UUID, Done] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    pain: dict[uuid.UUID, list[tuple[date, int | None, int]]] = defaultdict(list)
    names: dict[uuid.UUID, str] = {}
    found = await execute(
        session,
        DONE_BY_DAY,
        {
            "clinic_id": clinic.id,
            "patient_ids": list(zones),
            "since": min(todays.values()) - timedelta(days=MONTH),
            "pain_alert_at": clinic.pain_alert_at,
        },
    )
    for row in found:
        name = names.get(row.item_id) or names.setdefault(row.item_id, str(row.item_id))
        done[row.patient_id][(row.performed_on, name)][row.status] += row.sessions
        pain[row.patient_id].append((row.performed_on, row.worst_pain, int(row.pain_alerts or 0)))

    rows = []
    for row in stale:
        patient_id = row.patient_id
        if patient_id not in seen:
            continue
        today, zone = todays[patient_id], zones[patient_id]
        figures: dict[str, Any] = {}
        for days, suffix in ((WEEK, "7d"), (MONTH, "30d")):
            start, end = today - timedelta(days=days), today - timedelta(days=1)
            window = {k: v for k, v in done[patient_id].items() if start <= k[0] <= end}
            tally = credit(due(versions[patient_id], start, end, zone), window).total
            figures[f"b_expected_{suffix}"] = tally.expected
            figures[f"b_credited_{suffix}"] = tally.earned
            figures[f"b_percent_{suffix}"] = tally.counts().adherence_percent
        recent = [
            (worst, alerts)
            for day, worst, alerts in pain[patient_id]
            if day > today - timedelta(days=WEEK)
        ]
        worst_pains = [worst for worst, _ in recent if worst is not None]
        rows.append(
            {
                **figures,
                "b_patient_id": patient_id,
                "b_seen": seen[patient_id],
                "b_as_of": today,
                "b_valid_until": datetime.combine(
                    today + timedelta(days=1), time(0), zone
                ).astimezone(UTC),
                "b_pain_alerts_7d": sum(alerts for _, alerts in recent),
                "b_max_pain_7d": max(worst_pains) if worst_pains else None,
                "b_time_zone": row.time_zone,
                "b_pain_alert_at": clinic.pain_alert_at,
            }
        )
    await execute(session, RECOMPUTED, rows)
