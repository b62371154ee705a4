"""The adherence summary: what the plan expected of each day and week, against what was done.

Expectations follow the plan version in force on each day of the patient's calendar: a day
follows the version in force at its end (an edit at noon counts for the whole day), and a
day expects something only if that version is active and the day within its dates.
Weekday items expect `times_per_day` on their weekdays. Sessions-per-week items expect
`sessions_per_week * times_per_day` in each ISO week, in proportion to the days of the week
they were in force (rounded half up). The database counts what was done, by local date,
item and status; a completed session earns 1 and a partial one half, never more than was
expected of that day (or of that week, for sessions-per-week items).
"""

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.adherence.models import AdherenceRecord, SessionStatus
from app.adherence.schemas import (
    Counts,
    ItemSummary,
    PainAlert,
    PainSummary,
    Summary,
    WeekSummary,
)
from app.patients.models import Patient
from app.plans.models import Plan, PlanStatus, PlanVersion

EARNED = {SessionStatus.completed: 1.0, SessionStatus.partial: 0.5, SessionStatus.skipped: 0.0}
# A weekly mean moving this much a week or more is a trend.
PAIN_TREND_PER_WEEK = 0.5
MAX_ALERTS = 50


@dataclass
class Tally:
    expected: float = 0.0
    earned: float = 0.0
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, expected: float, earned: float, by_status: dict[str, int]) -> None:
        self.expected += expected
        self.earned += earned
        for status, n in by_status.items():
            self.by_status[status] += n

    def counts(self) -> Counts:
        return Counts(
            expected=self.expected,
            credited=self.earned,
            adherence_percent=round(100 * self.earned / self.expected, 1)
            if self.expected
            else None,
            completed=self.by_status[SessionStatus.completed],
            partial=self.by_status[SessionStatus.partial],
            skipped=self.by_status[SessionStatus.skipped],
        )


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _calendar(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def governing(
    versions: list[PlanVersion], zone: ZoneInfo
) -> list[tuple[date, date | None, PlanVersion]]:
    """Each version with the local days it governs, ``[first, until)``.

    A day follows the version in force at its end, the next local midnight (whatever the
    day's length, 23 or 25 hours across a daylight-saving change): a version governs from
    the local day it was made until the day its plan's next version was made. Of versions
    made on one day, the last governs it.
    """
    made: dict[uuid.UUID, list[tuple[date, PlanVersion]]] = defaultdict(list)
    for version in versions:  # in the order they were made
        made[version.plan_id].append((version.created_at.astimezone(zone).date(), version))
    spans = []
    for history in made.values():
        for n, (first, version) in enumerate(history):
            until = history[n + 1][0] if n + 1 < len(history) else None
            if until is None or first < until:
                spans.append((first, until, version))
    return spans


@dataclass
class Due:
    """What the plans expected: weekday items by (day, item), the rest by (week, item)."""

    by_day: dict[tuple[date, str], float] = field(default_factory=dict)
    by_week: dict[tuple[str, str], float] = field(default_factory=dict)
    exercise_of: dict[str, uuid.UUID] = field(default_factory=dict)


ONE_DAY = timedelta(days=1)


def due(versions: list[PlanVersion], start: date, end: date, zone: ZoneInfo) -> Due:
    """Only active versions expect anything, within their own start and end dates."""
    result = Due()
    days_in_force: dict[tuple[str, str], int] = defaultdict(int)
    weekly: dict[tuple[str, str], int] = {}
    for first, until, version in governing(versions, zone):
        if version.status != PlanStatus.active:
            continue
        low = max(start, first, version.start_date)
        high = min(end, until - ONE_DAY if until else end, version.end_date or end)
        if low > high:
            continue
        items = []
        for item in version.items:
            result.exercise_of[item["id"]] = uuid.UUID(item["exercise_id"])
            schedule = item["schedule"]
            times = schedule.get("times_per_day", 1)
            weekdays = schedule.get("days_of_week")
            items.append((item["id"], times, weekdays, schedule.get("sessions_per_week")))
        day = low
        while day <= high:
            week, weekday = iso_week(day), day.isoweekday()
            for item_id, times, weekdays, per_week in items:
                if weekdays is None:
                    days_in_force[(week, item_id)] += 1
                    weekly[(week, item_id)] = per_week * times
                elif weekday in weekdays:
                    key = (day, item_id)
                    result.by_day[key] = result.by_day.get(key, 0) + times
            day += ONE_DAY
    for week_item, days in days_in_force.items():
        result.by_week[week_item] = float(math.floor(weekly[week_item] * days / 7 + 0.5))
    return result


def plan_versions(
    session: Session, patient_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[PlanVersion]]:
    """Every plan version of these patients, in the order they were made."""
    found: dict[uuid.UUID, list[PlanVersion]] = defaultdict(list)
    for version, patient_id in session.exec(
        select(PlanVersion, Plan.patient_id)
        .join(Plan, col(Plan.id) == PlanVersion.plan_id)
        .where(col(Plan.patient_id).in_(patient_ids))
        .order_by(col(PlanVersion.created_at), col(PlanVersion.number))
    ).all():
        found[patient_id].append(version)
    return found


Done = dict[tuple[date, str], dict[str, int]]


def earned(by_status: dict[str, int]) -> float:
    return sum(EARNED[SessionStatus(s)] * n for s, n in by_status.items())


@dataclass
class Credit:
    """What was expected and credited: in total, per ISO week and per item; and, for
    streaks, whether each day with weekday-scheduled sessions had them all done."""

    total: Tally = field(default_factory=Tally)
    weeks: defaultdict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    items: defaultdict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    day_state: dict[date, bool] = field(default_factory=dict)


def credit(expected: Due, done: Done) -> Credit:
    """Weigh what was done (by local date, item and status) against what was due."""
    result = Credit()
    buckets = (result.total, result.weeks, result.items)

    def add(week: str, item_id: str, wanted: float, got: float, by_status: dict[str, int]) -> None:
        total, weeks, items = buckets
        for bucket in (total, weeks[week], items[item_id]):
            bucket.add(wanted, got, by_status)

    weekly_done: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (day, item_id), by_status in done.items():
        if (iso_week(day), item_id) in expected.by_week:
            for status, n in by_status.items():
                weekly_done[(iso_week(day), item_id)][status] += n
        elif (day, item_id) not in expected.by_day:
            add(iso_week(day), item_id, 0.0, 0.0, by_status)
    for (day, item_id), wanted in expected.by_day.items():
        by_status = done.get((day, item_id), {})
        got = min(earned(by_status), wanted)
        add(iso_week(day), item_id, wanted, got, by_status)
        result.day_state[day] = result.day_state.get(day, True) and got >= wanted
    for (week, item_id), wanted in expected.by_week.items():
        by_status = weekly_done.get((week, item_id), {})
        add(week, item_id, wanted, min(earned(by_status), wanted), by_status)
    return result


def summarize(
    session: Session, patient: Patient, start: date, end: date, today: date, pain_alert_at: int
) -> Summary:
    zone = ZoneInfo(patient.time_zone)
    versions = plan_versions(session, [patient.id])[patient.id]
    # Days still to come expect nothing yet.
    expected = due(versions, start, min(end, today), zone)
    records = (
        AdherenceRecord.clinic_id == patient.clinic_id,  # leads the index
        AdherenceRecord.patient_id == patient.id,
        col(AdherenceRecord.deleted_at).is_(None),
        col(AdherenceRecord.performed_on) >= start,
        col(AdherenceRecord.performed_on) <= end,
    )
    done: Done = defaultdict(lambda: defaultdict(int))
    for day, record_item, status, n in session.exec(
        select(
            col(AdherenceRecord.performed_on),
            col(AdherenceRecord.item_id),
            col(AdherenceRecord.status),
            func.count(),
        )
        .where(*records)
        .group_by(
            col(AdherenceRecord.performed_on),
            col(AdherenceRecord.item_id),
            col(AdherenceRecord.status),
        )
    ).all():
        done[(day, str(record_item))][status] += n
    tally = credit(expected, done)

    current, longest = _streaks(tally.day_state, today)
    last = session.exec(
        select(func.max(AdherenceRecord.performed_at)).where(
            AdherenceRecord.clinic_id == patient.clinic_id,
            AdherenceRecord.patient_id == patient.id,
            col(AdherenceRecord.deleted_at).is_(None),
        )
    ).one()
    return Summary(
        **{"from": start, "to": end},
        time_zone=patient.time_zone,
        totals=tally.total.counts(),
        weeks=[
            WeekSummary(week=w, **tally.weeks[w].counts().model_dump()) for w in sorted(tally.weeks)
        ],
        items=[
            ItemSummary(
                item_id=uuid.UUID(item_id),
                exercise_id=expected.exercise_of.get(item_id),
                **item.counts().model_dump(),
            )
            for item_id, item in sorted(tally.items.items())
        ],
        current_streak=current,
        longest_streak=longest,
        last_activity=last,
        pain=_pain(session, records),
        pain_alerts=[
            PainAlert(id=r.id, item_id=r.item_id, performed_on=r.performed_on, pain=r.pain)
            for r in session.exec(
                select(AdherenceRecord)
                .where(*records, col(AdherenceRecord.pain) >= pain_alert_at)
                .order_by(col(AdherenceRecord.performed_at).desc())
                .limit(MAX_ALERTS)
            )
        ],
    )


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


def _pain(session: Session, records: tuple[Any, ...]) -> PainSummary:
    rows = session.exec(
        select(
            col(AdherenceRecord.performed_on),
            func.sum(col(AdherenceRecord.pain)),
            func.count(col(AdherenceRecord.pain)),
        )
        .where(*records, col(AdherenceRecord.pain).is_not(None))
        .group_by(col(AdherenceRecord.performed_on))
    ).all()
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for day, total, n in rows:
        sums[iso_week(day)][0] += float(total or 0)
        sums[iso_week(day)][1] += n
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
    return PainSummary(
        mean=mean,
        trend=trend,
        slope_per_week=round(slope, 2) if slope is not None else None,
        weeks=[{"week": w, "mean": round(m, 2)} for w, m in weekly.items()],
    )


def _slope(values: list[float]) -> float:
    """Least-squares slope of the values against their position."""
    n = len(values)
    xs = range(n)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True)) / spread
