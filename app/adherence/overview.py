"""The clinic overview: every patient's adherence over the last 7 and 30 days, pain alerts
and last upload, sorted and paged by the database.

Adherence windows are complete local days (the 7 or 30 days before the patient's today),
computed by the same rules as the summary, so a patient's overview figure equals their
summary over that window. The figures are kept per patient in ``adherence_rollup``: a
window of past days only changes when a record does, so a row holds until the patient's
next midnight or until a write marks it stale. A request first recomputes the clinic's
stale rows (in chunks of patients, three queries each, the records one by index), then
reads one page with one query over the clinic's rollup rows, never over its records.
"""

import gc
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    text,
    tuple_,
    update,
)
from sqlalchemy import (
    select as sa_select,
)
from sqlmodel import Session, col, select

from app.adherence.models import PERCENT_7D_ORDER, STALE, AdherenceRecord, AdherenceRollup
from app.adherence.schemas import OverviewQuery
from app.adherence.summary import Done, credit, due, plan_versions
from app.core.columns import UTCDateTime
from app.core.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.patients.models import Patient

CHUNK = 1000


class ClinicSettings(Protocol):
    """What the overview reads of a clinic."""

    id: uuid.UUID
    adherence_threshold_percent: int
    pain_alert_at: int


WEEK, MONTH = 7, 30

Rollup = AdherenceRollup.__table__  # type: ignore[attr-defined]


def create(session: Session, patient: Patient) -> None:
    """Every patient has a rollup row from the start, stale until first read."""
    session.execute(
        insert(AdherenceRollup).values(patient_id=patient.id, clinic_id=patient.clinic_id)
    )


def mark_stale(
    session: Session,
    *,
    patient_ids: Iterable[uuid.UUID] | None = None,
    clinic_id: uuid.UUID | None = None,
    uploaded_at: datetime | None = None,
) -> None:
    """Recompute these patients' (or the whole clinic's) figures on the next read; an
    upload also moves the last-upload time."""
    values: dict[str, Any] = {
        "valid_until": STALE,
        "generation": Rollup.c.generation + 1,
    }
    if uploaded_at is not None:
        values["last_upload_at"] = uploaded_at
    where: list[ColumnElement[bool]] = []
    if patient_ids is not None:
        ids = sorted(patient_ids)
        if not ids:
            return
        if clinic_id is None and session.get_bind().dialect.name == "postgresql":
            # The same statement, with a text that stays the same however many patients:
            # every upload runs it.
            parameters = {"stale": STALE, "uploaded_at": uploaded_at, "patient_ids": ids}
            session.execute(MARK_PATIENTS_STALE, parameters)
            return
        where.append(Rollup.c.patient_id.in_(ids))
    if clinic_id is not None:
        where.append(Rollup.c.clinic_id == clinic_id)
    # Rows are locked in patient order, as a recomputation locks them: two writers of the
    # same rows queue rather than deadlock.
    locked = (
        select(Rollup.c.patient_id)
        .where(*where)
        .order_by(Rollup.c.patient_id)
        .with_for_update()
        .scalar_subquery()
    )
    session.connection().execute(
        update(Rollup).where(Rollup.c.patient_id.in_(locked)).values(**values)
    )


MARK_PATIENTS_STALE = text(
    "UPDATE adherence_rollup SET valid_until = :stale, generation = generation + 1,"
    " last_upload_at = coalesce(:uploaded_at, last_upload_at)"
    " WHERE patient_id IN (SELECT patient_id FROM adherence_rollup"
    " WHERE patient_id = ANY(CAST(:patient_ids AS uuid[])) ORDER BY patient_id FOR UPDATE)"
).bindparams(bindparam("stale", type_=UTCDateTime()), bindparam("uploaded_at", type_=UTCDateTime()))


# Built once: every overview request runs it, and mostly finds nothing.
STALE_ROWS = (
    sa_select(
        col(AdherenceRollup.patient_id), col(AdherenceRollup.generation), col(Patient.time_zone)
    )
    .join(Patient, col(Patient.id) == AdherenceRollup.patient_id)
    .where(
        col(AdherenceRollup.clinic_id) == bindparam("clinic_id"),
        col(AdherenceRollup.valid_until) <= bindparam("now"),
        col(Patient.deleted_at).is_(None),
    )
    .order_by(col(AdherenceRollup.patient_id))
)


def refresh(session: Session, clinic: ClinicSettings, now: datetime) -> int:
    """Recompute the clinic's stale rows; returns how many there were."""
    stale = session.execute(STALE_ROWS, {"clinic_id": clinic.id, "now": now}).all()
    with _collector_paused():
        for start in range(0, len(stale), CHUNK):
            _recompute(session, clinic, list(stale[start : start + CHUNK]), now)
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


def _recompute(
    session: Session, clinic: ClinicSettings, stale: list[tuple[uuid.UUID, int, str]], now: datetime
) -> None:
    zones = {patient_id: ZoneInfo(zone) for patient_id, _, zone in stale}
    todays = {patient_id: now.astimezone(zone).date() for patient_id, zone in zones.items()}
    versions = plan_versions(session, list(zones))
    done: dict[uuid.UUID, Done] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    pain: dict[uuid.UUID, list[tuple[date, int | None, int]]] = defaultdict(list)
    record = AdherenceRecord
    names: dict[uuid.UUID, str] = {}
    for patient_id, day, item_id, status, n, worst, alerts in session.execute(
        sa_select(
            col(record.patient_id),
            col(record.performed_on),
            col(record.item_id),
            col(record.status),
            func.count(),
            func.max(record.pain),
            func.sum(case((col(record.pain) >= clinic.pain_alert_at, 1), else_=0)),
        )
        .where(
            col(record.clinic_id) == clinic.id,
            col(record.patient_id).in_(list(zones)),
            col(record.performed_on) >= min(todays.values()) - timedelta(days=MONTH),
            col(record.deleted_at).is_(None),
        )
        .group_by(
            col(record.patient_id),
            col(record.performed_on),
            col(record.item_id),
            col(record.status),
        )
    ).all():
        name = names.get(item_id) or names.setdefault(item_id, str(item_id))
        done[patient_id][(day, name)][status] += n
        pain[patient_id].append((day, worst, int(alerts or 0)))

    rows = []
    for patient_id, generation, _ in stale:
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
                "b_seen": generation,
                "b_as_of": today,
                "b_valid_until": datetime.combine(
                    today + timedelta(days=1), time(0), zone
                ).astimezone(UTC),
                "b_pain_alerts_7d": sum(alerts for _, alerts in recent),
                "b_max_pain_7d": max(worst_pains) if worst_pains else None,
            }
        )
    columns = [
        name.removeprefix("b_") for name in rows[0] if name not in ("b_patient_id", "b_seen")
    ]
    # Only where no write marked the row stale again since it was read.
    session.connection().execute(
        update(Rollup)
        .where(
            Rollup.c.patient_id == bindparam("b_patient_id"),
            Rollup.c.generation == bindparam("b_seen"),
        )
        .values({name: bindparam(f"b_{name}") for name in columns}),
        rows,
    )


SORTS: dict[str, tuple[Any, bool]] = {
    # Column, descending. Patients with nothing expected (null percent) come last either way.
    "adherence_7d": (literal_column(PERCENT_7D_ORDER, Float()), False),  # as indexed
    "-adherence_7d": (func.coalesce(col(AdherenceRollup.percent_7d), -1.0), True),
    "adherence_30d": (func.coalesce(col(AdherenceRollup.percent_30d), 1e9), False),
    "-adherence_30d": (func.coalesce(col(AdherenceRollup.percent_30d), -1.0), True),
    "-pain_alerts_7d": (col(AdherenceRollup.pain_alerts_7d), True),
    # Never uploaded counts as longest ago.
    "last_upload_at": (
        func.coalesce(col(AdherenceRollup.last_upload_at), literal(STALE, UTCDateTime())),
        False,
    ),
    "-last_upload_at": (
        func.coalesce(col(AdherenceRollup.last_upload_at), literal(STALE, UTCDateTime())),
        True,
    ),
    "reference": (col(Patient.reference), False),
}


def _position(query: OverviewQuery) -> tuple[Any, uuid.UUID]:
    assert query.cursor is not None
    sort, value, last = decode_cursor(query.cursor, 3)
    if sort != query.sort:
        raise invalid_cursor()
    try:
        patient_id = uuid.UUID(str(last))
        if query.sort.endswith("last_upload_at"):
            value = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        raise invalid_cursor() from None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, datetime)):
        raise invalid_cursor()
    return value, patient_id


@cache
def _page_statement(
    sort: str, below_threshold: bool | None, pain_alert: bool | None, after: bool
) -> Select[Any]:
    """The page query for a sort and a choice of filters, built once; the clinic, its
    threshold, the position after which the page starts and its size are parameters."""
    key, descending = SORTS[sort]
    patient = Patient.__table__.c  # type: ignore[attr-defined]
    statement = (
        sa_select(Rollup, patient.reference, patient.time_zone, key.label("sort_key"))
        .join_from(Rollup, Patient.__table__, patient.id == Rollup.c.patient_id)  # type: ignore[attr-defined]
        .where(Rollup.c.clinic_id == bindparam("clinic_id"), patient.deleted_at.is_(None))
    )
    percent = col(AdherenceRollup.percent_7d)
    below = percent < bindparam("threshold", type_=Integer())
    if below_threshold is not None:
        statement = statement.where(below if below_threshold else ~below | percent.is_(None))
    if pain_alert is not None:
        alerting = col(AdherenceRollup.pain_alerts_7d) > 0
        statement = statement.where(alerting if pain_alert else ~alerting)
    patient_id = Rollup.c.patient_id
    if after:
        position = tuple_(key, patient_id)
        start = tuple_(
            bindparam("after_key", type_=key.type), bindparam("after_id", type_=patient_id.type)
        )
        statement = statement.where(position < start if descending else position > start)
    order = (key.desc(), patient_id.desc()) if descending else (key, patient_id)
    return statement.order_by(*order).limit(bindparam("limit", type_=Integer()))


def page(
    session: Session, clinic: ClinicSettings, query: OverviewQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of OverviewRows, as plain values in their fields' order (see ``_row``), and
    the cursor of the next."""
    statement = _page_statement(
        query.sort, query.below_threshold, query.pain_alert, query.cursor is not None
    )
    values: dict[str, Any] = {"clinic_id": clinic.id, "limit": query.limit + 1}
    if query.below_threshold is not None:
        values["threshold"] = clinic.adherence_threshold_percent
    if query.cursor is not None:
        values["after_key"], values["after_id"] = _position(query)
    found = session.connection().execute(statement, values).all()
    rows = [_row(clinic, row) for row in found[: query.limit]]
    cursor = None
    if len(found) > query.limit:
        last = found[query.limit - 1]
        value = last.sort_key
        if isinstance(value, datetime):
            value = value.isoformat()
        cursor = encode_cursor([query.sort, value, str(last.patient_id)])
    return rows, cursor


def _row(clinic: ClinicSettings, rollup: Any) -> dict[str, Any]:
    """A page row: the rollup's columns with the patient's reference and time zone, as an
    OverviewRow's fields (by alias) in its order. They come from columns the database
    already constrains, so they render as JSON as they are, with no model to build."""
    today = rollup.as_of or date.min

    def window(
        days: int, expected: float, credited: float, percent: float | None
    ) -> dict[str, Any]:
        return {
            "from": today - timedelta(days=days),
            "to": today - timedelta(days=1),
            "expected": expected,
            "credited": credited,
            "adherence_percent": percent,
        }

    return {
        "patient_id": rollup.patient_id,
        "reference": rollup.reference,
        "time_zone": rollup.time_zone,
        "as_of": today,
        "last_7_days": window(WEEK, rollup.expected_7d, rollup.credited_7d, rollup.percent_7d),
        "last_30_days": window(MONTH, rollup.expected_30d, rollup.credited_30d, rollup.percent_30d),
        "below_threshold": rollup.percent_7d is not None
        and rollup.percent_7d < clinic.adherence_threshold_percent,
        "pain_alerts_7d": rollup.pain_alerts_7d,
        "max_pain_7d": rollup.max_pain_7d,
        "last_upload_at": rollup.last_upload_at,
    }
