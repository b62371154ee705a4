"""The adherence summary: what the plan expected of each day and week, against what was done.

Expectations follow the plan version that governs each day of the patient's calendar, by
the one rule of `app.plans.in_force` (the first active version from the plan's start date,
later ones from the day they were made, a day following the version in force at its end),
and a day expects something only if that version is active.
Weekday items expect `times_per_day` on their weekdays. Sessions-per-week items expect
`sessions_per_week * times_per_day` in each ISO week, in proportion to the days of the week
they were in force (rounded half up). The database counts what was done, by local date,
item and status; a completed session earns 1 and a partial one half, never more than was
expected of that day (or of that week, for sessions-per-week items).

A request reads the patient with their plans' versions, then the period's records counted
by the database, on the request's session; the read leaves an audit event beside it.
"""

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    CompoundSelect,
    DateTime,
    Integer,
    Row,
    Select,
    String,
    and_,
    bindparam,
    func,
    null,
    select,
    union_all,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence.models import AdherenceRecord, SessionStatus
from app.adherence.schemas import MAX_SUMMARY_DAYS, Counts, SummaryQuery
from app.audit import service as audit
from app.auth.models import Clinic
from app.auth.principal import Caller
from app.core.columns import as_utc
from app.core.db import execute, table_of
from app.core.errors import FieldError, InvalidInput, NotFound
from app.core.http import rendered_json
from app.patients.models import Patient
from app.plans import in_force
from app.plans.models import Plan, PlanVersion

# A weekly mean moving this much a week or more is a trend.
PAIN_TREND_PER_WEEK = 0.5
MAX_ALERTS = 50


@dataclass(slots=True)
class Tally:
    expected: float = 0.0
    earned: float = 0.0
    completed: int = 0
    partial: int = 0
    skipped: int = 0

    def add(self, other: "Tally") -> None:
        self.expected += other.expected
        self.earned += other.earned
        self.completed += other.completed
        self.partial += other.partial
        self.skipped += other.skipped

    def fields(self) -> dict[str, Any]:
        """The `Counts` fields, in their order."""
        return {
            "expected": self.expected,
            "credited": self.earned,
            "adherence_percent": round(100 * self.earned / self.expected, 1)
            if self.expected
            else None,
            "completed": self.completed,
            "partial": self.partial,
            "skipped": self.skipped,
        }

    def counts(self) -> Counts:
        return Counts(**self.fields())


@lru_cache(maxsize=4096)
def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


class Version(NamedTuple):
    """What the expectations read of a plan version."""

    plan_id: uuid.UUID
    created_at: datetime
    status: str
    start_date: date
    end_date: date | None
    items: list[dict[str, Any]]


@dataclass
class Span:
    """Local days ``low`` to ``high`` under one active version: its weekday items by ISO
    weekday (1 to 7) with their times per day, and each weekday's total."""

    low: date
    high: date
    on: list[dict[str, int]]
    per_day: list[int]


@dataclass
class Due:
    """What the plans expected: weekday items as spans of days, sessions-per-week items by
    (ISO week, item), already prorated."""

    spans: list[Span] = field(default_factory=list)
    by_week: dict[tuple[str, str], float] = field(default_factory=dict)
    exercise_of: dict[str, uuid.UUID] = field(default_factory=dict)


ONE_DAY = timedelta(days=1)


def due(versions: list[Version], start: date, end: date, zone: ZoneInfo) -> Due:
    """What the versions expect of the days ``start`` to ``end``: each active version on
    the days it governs (`app.plans.in_force`)."""
    result = Due()
    days_in_force: dict[tuple[str, str], int] = defaultdict(int)
    weekly: dict[tuple[str, str], int] = {}
    for term in in_force.terms(versions, zone):
        if not term.expects:
            continue
        version = term.version
        low = max(start, term.first)
        high = min(end, term.last or end)
        if low > high:
            continue
        on: list[dict[str, int]] = [{} for _ in range(8)]
        per_week: list[tuple[str, int]] = []
        for item in version.items:
            result.exercise_of[item["id"]] = _uuid(item["exercise_id"])
            schedule = item["schedule"]
            times = schedule.get("times_per_day", 1)
            weekdays = schedule.get("days_of_week")
            if weekdays is None:
                per_week.append((item["id"], schedule["sessions_per_week"] * times))
            else:
                for weekday in weekdays:
                    on[weekday][item["id"]] = on[weekday].get(item["id"], 0) + times
        result.spans.append(Span(low, high, on, [sum(d.values()) for d in on]))
        day = low
        while per_week and day <= high:  # a week (or the part of it in the span) at a time
            last = min(day + timedelta(days=7 - day.isoweekday()), high)
            week = iso_week(day)
            for item_id, sessions in per_week:
                days_in_force[(week, item_id)] += (last - day).days + 1
                weekly[(week, item_id)] = sessions
            day = last + ONE_DAY
    for week_item, days in days_in_force.items():
        result.by_week[week_item] = float(math.floor(weekly[week_item] * days / 7 + 0.5))
    return result


@lru_cache(maxsize=4096)
def _uuid(text: str) -> uuid.UUID:
    """The catalog's few exercise ids, parsed once."""
    return uuid.UUID(text)


def _versions_of_patients() -> Select[Any]:
    version, plan = table_of(PlanVersion).c, table_of(Plan).c
    return (
        select(
            plan.patient_id,
            version.plan_id,
            version.created_at,
            version.status,
            version.start_date,
            version.end_date,
            version["items"],
        )
        .join_from(
            table_of(PlanVersion),
            table_of(Plan),
            and_(plan.clinic_id == version.clinic_id, plan.id == version.plan_id),
        )
        .where(plan.patient_id.in_(bindparam("patient_ids")))
        .order_by(version.created_at, version.number)
    )


VERSIONS_OF_PATIENTS = _versions_of_patients()


def version_of(row: Row[Any]) -> Version:
    """A plan version, from a row holding `Version`'s columns by name."""
    return Version(
        plan_id=row.plan_id,
        created_at=row.created_at,
        status=row.status,
        start_date=row.start_date,
        end_date=row.end_date,
        items=row._mapping["items"],
    )


async def plan_versions(
    session: AsyncSession, patient_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Version]]:
    """Every plan version of these patients, in the order they were made."""
    found: dict[uuid.UUID, list[Version]] = defaultdict(list)
    for row in await execute(session, VERSIONS_OF_PATIENTS, {"patient_ids": patient_ids}):
        found[row.patient_id].append(version_of(row))
    return found


Done = dict[tuple[date, str], dict[str, int]]
# Sessions of an item on a local date: how many were completed, partial and skipped, and
# the sum and count of the pain they reported.
DayCounts = tuple[date, str, int, int, int, int, int]
_day = itemgetter(0)


@dataclass
class Credit:
    """What was expected and credited: in total, per ISO week and per item; per week, the
    sum and count of pain reported; and, for streaks, whether each day with
    weekday-scheduled sessions had them all done."""

    total: Tally = field(default_factory=Tally)
    weeks: defaultdict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    items: defaultdict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    pain: dict[str, tuple[int, int]] = field(default_factory=dict)
    day_state: dict[date, bool] = field(default_factory=dict)
    # Days with weekday-scheduled sessions, in no order.
    scheduled: list[date] = field(default_factory=list)


def credit(expected: Due, done: Done) -> Credit:
    """`credit_days` of what was done, by local date, item and status."""
    return credit_days(
        expected,
        [
            (
                day,
                item_id,
                by_status.get(SessionStatus.completed, 0),
                by_status.get(SessionStatus.partial, 0),
                by_status.get(SessionStatus.skipped, 0),
                0,
                0,
            )
            for (day, item_id), by_status in done.items()
        ],
    )


def expectations(expected: Due) -> Credit:
    """What was expected, per ISO week and per item, with nothing yet done: `credit_days`
    adds what was. Needs no records, so a summary works it out while they are read."""
    result = Credit()
    weeks, items, scheduled = result.weeks, result.items, result.scheduled
    # A week at a time.
    for span in expected.spans:
        per_day, seen = span.per_day, [0] * 8
        day = span.low
        while day <= span.high:
            first = day.isoweekday()
            last = min(7, first + (span.high - day).days)
            due_in_week = sum(per_day[first : last + 1])
            if due_in_week:
                weeks[iso_week(day)].expected += due_in_week
            for weekday in range(first, last + 1):
                if per_day[weekday]:
                    seen[weekday] += 1
                    scheduled.append(day)
                day += ONE_DAY
        for weekday, count in enumerate(seen):
            for item_id, times in span.on[weekday].items() if count else ():
                items[item_id].expected += count * times
    for (week, item_id), wanted in expected.by_week.items():
        weeks[week].expected += wanted
        items[item_id].expected += wanted
    return result


def credit_days(expected: Due, days: Iterable[DayCounts], result: Credit | None = None) -> Credit:
    """Weigh what was done against what was due: ``days`` are sessions by local date and
    item (each (date, item) at most once), in any order.

    Every session counts by its status, due or not. A completed session earns 1 and a
    partial one ½: for weekday items, up to what the day expected of the item; for
    sessions-per-week items, up to what the week expected of it. The totals are the sum
    of the weeks.

    ``result`` is `expectations` of the same `Due`, when they were worked out beforehand.
    The hot loop of a summary: it goes a day at a time, adding up the day in local
    variables, so that each session costs few lookups.
    """
    if result is None:
        result = expectations(expected)
    weeks, items, pains_by_week = result.weeks, result.items, result.pain
    by_week = expected.by_week
    weekly_items = {item_id for _, item_id in by_week}
    weekly_earned: defaultdict[tuple[str, str], float] = defaultdict(float)
    # Each span's days, its weekday items by ISO weekday and how many items each weekday
    # has. An item is of one plan, whose versions govern days apart: at most one span
    # holding a day expects it.
    spans = [
        (span.low, span.high, span.on, [sum(1 for t in on.values() if t > 0) for on in span.on])
        for span in expected.spans
    ]
    # Days on which each weekday item they expected was done.
    all_done: set[date] = set()
    for day, sessions in groupby(sorted(days, key=_day), key=_day):
        week, weekday = iso_week(day), day.isoweekday()
        wants: dict[str, int] = {}
        needed = 0
        for low, high, on, needs in spans:
            if low <= day <= high:
                wants = {**wants, **on[weekday]} if wants else on[weekday]
                needed += needs[weekday]
        done = completed_on = partial_on = skipped_on = pain_on = pains_on = 0
        earned_on = 0.0
        for _, item_id, completed, partial, skipped, pain, pains in sessions:
            completed_on += completed
            partial_on += partial
            skipped_on += skipped
            of_item = items[item_id]
            of_item.completed += completed
            of_item.partial += partial
            of_item.skipped += skipped
            if pains:
                pain_on += pain
                pains_on += pains
            got = completed + 0.5 * partial if partial else completed
            if not got:
                continue
            if item_id in weekly_items and (week, item_id) in by_week:
                weekly_earned[(week, item_id)] += got
                continue
            # Up to what the day expected of the item.
            times = wants.get(item_id)
            if times:
                if got >= times:
                    done += 1
                    got = float(times)
                earned_on += got
                of_item.earned += got
        of_week = weeks[week]
        of_week.completed += completed_on
        of_week.partial += partial_on
        of_week.skipped += skipped_on
        of_week.earned += earned_on
        if pains_on:
            pain, pains = pains_by_week.get(week, (0, 0))
            pains_by_week[week] = (pain + pain_on, pains + pains_on)
        if done == needed:
            all_done.add(day)

    day_state = result.day_state
    for day in result.scheduled:
        day_state[day] = day in all_done

    for (week, item_id), wanted in by_week.items():
        week_credit = min(weekly_earned.get((week, item_id), 0.0), wanted)
        for bucket in (weeks[week], items[item_id]):
            bucket.earned += week_credit

    for tally in weeks.values():
        result.total.add(tally)
    return result


@dataclass(frozen=True)
class Subject:
    """The patient summarised, with their clinic's pain alert level and every version of
    their plans, in the order they were made."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    time_zone: str
    pain_alert_at: int
    versions: list[Version]


def _subject() -> Select[Any]:
    """A living patient of a clinic, with the clinic's pain alert level and every version
    of the patient's plans in the order they were made: a row per version (one row with
    no version for a patient without plans; none for no such patient)."""
    patient, clinic = table_of(Patient), table_of(Clinic)
    plan, version = table_of(Plan), table_of(PlanVersion)
    return (
        select(
            patient.c.time_zone,
            clinic.c.pain_alert_at,
            version.c.plan_id,
            version.c.created_at,
            version.c.status,
            version.c.start_date,
            version.c.end_date,
            version.c["items"],
        )
        .select_from(
            patient.join(clinic, clinic.c.id == patient.c.clinic_id)
            .outerjoin(
                plan,
                and_(plan.c.clinic_id == patient.c.clinic_id, plan.c.patient_id == patient.c.id),
            )
            .outerjoin(
                version,
                and_(version.c.clinic_id == plan.c.clinic_id, version.c.plan_id == plan.c.id),
            )
        )
        .where(
            patient.c.id == bindparam("patient_id", type_=patient.c.id.type),
            patient.c.clinic_id == bindparam("clinic_id", type_=patient.c.clinic_id.type),
            patient.c.deleted_at.is_(None),
        )
        .order_by(version.c.created_at, version.c.number)
    )


SUBJECT = _subject()


async def subject(
    session: AsyncSession, clinic_id: uuid.UUID, patient_id: uuid.UUID
) -> Subject | None:
    """The clinic's patient, with what a summary needs of them; None if there is no such
    patient (or it is another clinic's)."""
    values = {"clinic_id": clinic_id, "patient_id": patient_id}
    rows = (await execute(session, SUBJECT, values)).all()
    if not rows:
        return None
    return Subject(
        id=patient_id,
        clinic_id=clinic_id,
        time_zone=rows[0].time_zone,
        pain_alert_at=rows[0].pain_alert_at,
        versions=[version_of(row) for row in rows if row.plan_id is not None],
    )


class uuid_text(FunctionElement[str]):  # noqa: N801 (named as SQL functions are)
    """A UUID column as text in its canonical form (lowercase, with dashes): PostgreSQL
    writes it so; SQLite stores the 32 hex digits alone."""

    type = String()
    name = "uuid_text"
    inherit_cache = True


@compiles(uuid_text, "postgresql")
def _uuid_text_postgresql(element: uuid_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS VARCHAR)"


@compiles(uuid_text, "sqlite")
def _uuid_text_sqlite(element: uuid_text, compiler: SQLCompiler, **kw: Any) -> str:
    hex_ = compiler.process(element.clauses, **kw)
    return "lower(" + " || '-' || ".join(f"substr({hex_}, {a}, {n})" for a, n in UUID_PARTS) + ")"


# Where the groups of a UUID's 32 hex digits start, and their lengths.
UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _sessions_and_alerts() -> CompoundSelect[Any]:
    """The period's sessions by local date and item, counted by status, with their pain
    figures; the latest time of all; then, marked by their record id, the most recent
    sessions with pain at or above the clinic's alert level. The parts read the period's
    records once, from one CTE. Times come as the driver gives them (SQLite's without a
    zone: `as_utc` reads the latest); item ids come as text."""
    record = table_of(AdherenceRecord).c
    period = (
        select(
            record.id,
            record.performed_on,
            record.item_id,
            record.status,
            record.pain,
            record.performed_at,
        )
        .where(
            # The clinic leads the index.
            record.clinic_id == bindparam("clinic_id", type_=record.clinic_id.type),
            record.patient_id == bindparam("patient_id", type_=record.patient_id.type),
            record.deleted_at.is_(None),
            record.performed_on >= bindparam("start", type_=record.performed_on.type),
            record.performed_on <= bindparam("end", type_=record.performed_on.type),
        )
        .cte("period")
    ).c

    def none(type_: Any) -> Any:
        # Typed, so that each column of the union has one type on every database.
        return sql_cast(null(), type_)

    def count(status: SessionStatus) -> Any:
        return func.count().filter(period.status == status.value).label(status.value)

    # Item ids as text: strings load faster than UUIDs.
    item_text = uuid_text(period.item_id)
    sessions = select(
        period.performed_on,
        item_text.label("item_id"),
        count(SessionStatus.completed),
        count(SessionStatus.partial),
        count(SessionStatus.skipped),
        func.sum(period.pain).label("pain"),
        func.count(period.pain).label("pain_count"),
        none(DRIVER_TIME).label("performed_at"),
        none(record.id.type).label("alert_id"),
    ).group_by(period.performed_on, period.item_id)
    # One row, with no date: the latest time of all.
    latest = select(
        none(record.performed_on.type),
        none(String),
        none(Integer),
        none(Integer),
        none(Integer),
        none(Integer),
        none(Integer),
        func.max(period.performed_at),
        none(record.id.type),
    )
    alerts = (
        select(
            period.performed_on,
            item_text.label("item_id"),
            none(Integer).label("completed"),
            none(Integer).label("partial"),
            none(Integer).label("skipped"),
            period.pain,
            none(Integer).label("pain_count"),
            period.performed_at,
            period.id,
        )
        .where(period.pain >= bindparam("pain_alert_at", type_=record.pain.type))
        .order_by(period.performed_at.desc())
        .limit(MAX_ALERTS)
    )
    return union_all(sessions, latest, alerts.subquery().select())


DRIVER_TIME = DateTime(timezone=True)
SESSIONS_AND_ALERTS = _sessions_and_alerts()


async def read(
    session: AsyncSession, patient: Subject, start: date, end: date
) -> Sequence[Row[Any]]:
    """The period's rows (`SESSIONS_AND_ALERTS`), read in the session's transaction."""
    return (await execute(session, SESSIONS_AND_ALERTS, parameters(patient, start, end))).all()


def parameters(patient: Subject, start: date, end: date) -> dict[str, Any]:
    return {
        "clinic_id": patient.clinic_id,
        "patient_id": patient.id,
        "start": start,
        "end": end,
        "pain_alert_at": patient.pain_alert_at,
    }


@dataclass(frozen=True)
class Outlook:
    """What a summary knows before the records come: the patient, the period (``start`` to
    ``end``, the patient's ``today``), what the plans expected, and the `expectations`
    that `summarize` completes with what was done (once)."""

    patient: Subject
    start: date
    end: date
    today: date
    expected: Due
    credit: Credit


def outlook(patient: Subject, start: date, end: date, today: date) -> Outlook:
    # Days still to come expect nothing yet.
    expected = due(patient.versions, start, min(end, today), ZoneInfo(patient.time_zone))
    return Outlook(patient, start, end, today, expected, expectations(expected))


# The columns of a session row that `credit_days` takes, in its order.
DAY_COUNTS = ("performed_on", "item_id", "completed", "partial", "skipped", "pain", "pain_count")


def summarize(outlook: Outlook, rows: Sequence[Row[Any]]) -> bytes:
    """The summary as JSON, shaped as the `Summary` schema, from the rows `read` gave: a
    session row has a date and no alert id, the latest time's row no date, an alert row
    its record's id."""
    patient, start, end, today = outlook.patient, outlook.start, outlook.end, outlook.today
    expected = outlook.expected
    # Columns found by name once, then read by position: a year holds a thousand rows.
    sessions: list[DayCounts] = []
    latest: datetime | None = None
    alerts: list[Row[Any]] = []
    if rows:
        at = {name: n for n, name in enumerate(rows[0]._fields)}
        day, alert_id = at["performed_on"], at["alert_id"]
        day_counts = itemgetter(*(at[name] for name in DAY_COUNTS))
        for row in rows:
            if row[alert_id] is not None:
                alerts.append(row)
            elif row[day] is not None:
                sessions.append(day_counts(row))
            else:
                latest = row.performed_at
    tally = credit_days(expected, sessions, outlook.credit)
    alerts.sort(key=_performed_at, reverse=True)
    current, longest = _streaks(tally.day_state, today)
    body = {
        "from": start,
        "to": end,
        "time_zone": patient.time_zone,
        "totals": tally.total.fields(),
        "weeks": [{**tally.weeks[w].fields(), "week": w} for w in sorted(tally.weeks)],
        "items": [
            {
                **item.fields(),
                "item_id": uuid.UUID(item_id),
                "exercise_id": expected.exercise_of.get(item_id),
            }
            for item_id, item in sorted(tally.items.items())
        ],
        "current_streak": current,
        "longest_streak": longest,
        "last_activity": as_utc(latest),
        "pain": _pain(tally.pain),
        "pain_alerts": [
            {
                "id": alert.alert_id,
                "item_id": alert.item_id,
                "performed_on": alert.performed_on,
                "pain": alert.pain,
            }
            for alert in alerts
        ],
    }
    return rendered_json(body)


def _performed_at(row: Row[Any]) -> datetime:
    performed: datetime = row.performed_at
    return performed


async def summary(
    session: AsyncSession, caller: Caller, patient_id: uuid.UUID, query: SummaryQuery
) -> bytes:
    """A patient's summary as JSON, for staff of their clinic; the read leaves an audit
    event in the same transaction."""
    patient = await subject(session, caller.clinic_id, patient_id)
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
    await audit.record(session, caller, "read", "adherence_summary", None, patient.id)
    rows = await read(session, patient, since, until)
    return summarize(outlook(patient, since, until, today), rows)


def _streaks(day_state: dict[date, bool], today: date) -> tuple[int, int]:
    """Days in a row with every weekday-scheduled session done. Days with nothing
    scheduled neither count nor break a streak; today counts once done, never breaks."""
    run = longest = 0
    for day in sorted(day_state):
        if day > today or (day == today and not day_state[day]):
            break
        run = run + 1 if day_state[day] else 0
        longest = max(longest, run)
    return run, longest


def _pain(sums: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Mean pain overall and per ISO week, from each week's (sum, count)."""
    weekly = {w: s / n for w, (s, n) in sorted(sums.items())}
    count = sum(n for _, n in sums.values())
    mean = round(sum(s for s, _ in sums.values()) / count, 2) if count else None
    slope = _slope(list(weekly.values())) if len(weekly) >= 2 else None
    trend = None
    if slope is not None:
        trend = (
            "rising"
            if slope >= PAIN_TREND_PER_WEEK
            else "falling"
            if slope <= -PAIN_TREND_PER_WEEK
            else "stable"
        )
    return {
        "mean": mean,
        "trend": trend,
        "slope_per_week": round(slope, 2) if slope is not None else None,
        "weeks": [{"week": w, "mean": round(m, 2)} for w, m in weekly.items()],
    }


def _slope(values: list[float]) -> float:
    """Least-squares slope of the values against their position."""
    n = len(values)
    xs = range(n)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True)) / spread
