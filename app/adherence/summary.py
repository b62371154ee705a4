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
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session

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

# Keyed by the status as stored (a str; SessionStatus members hash alike).
EARNED: dict[str, float] = {
    SessionStatus.completed: 1.0,
    SessionStatus.partial: 0.5,
    SessionStatus.skipped: 0.0,
}
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


@lru_cache(maxsize=4096)
def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _calendar(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


class Version(Protocol):
    """What the expectations read of a plan version."""

    plan_id: uuid.UUID
    created_at: datetime
    status: str
    start_date: date
    end_date: date | None
    items: list[dict[str, Any]]


def governing(versions: list[Version], zone: ZoneInfo) -> list[tuple[date, date | None, Version]]:
    """Each version with the local days it governs, ``[first, until)``.

    A day follows the version in force at its end, the next local midnight (whatever the
    day's length, 23 or 25 hours across a daylight-saving change): a version governs from
    the local day it was made until the day its plan's next version was made. Of versions
    made on one day, the last governs it.
    """
    made: dict[uuid.UUID, list[tuple[date, Version]]] = defaultdict(list)
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

    def wanted(self, day: date, item_id: str) -> int:
        """Sessions of a weekday item due on a day."""
        weekday = day.isoweekday()
        return sum(s.on[weekday].get(item_id, 0) for s in self.spans if s.low <= day <= s.high)


ONE_DAY = timedelta(days=1)


def due(versions: list[Version], start: date, end: date, zone: ZoneInfo) -> Due:
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
        on: list[dict[str, int]] = [{} for _ in range(8)]
        per_week: list[tuple[str, int]] = []
        for item in version.items:
            result.exercise_of[item["id"]] = uuid.UUID(item["exercise_id"])
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


def plan_versions(session: Session, patient_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Version]]:
    """Every plan version of these patients, in the order they were made."""
    version, plan = PlanVersion.__table__.c, Plan.__table__.c  # type: ignore[attr-defined]
    found: dict[uuid.UUID, list[Version]] = defaultdict(list)
    for row in session.execute(
        sa_select(
            plan.patient_id,
            version.plan_id,
            version.created_at,
            version.status,
            version.start_date,
            version.end_date,
            version["items"],
        )
        .join_from(PlanVersion.__table__, Plan.__table__, plan.id == version.plan_id)  # type: ignore[attr-defined]
        .where(plan.patient_id.in_(patient_ids))
        .order_by(version.created_at, version.number)
    ):
        found[row.patient_id].append(cast(Version, row))
    return found


Done = dict[tuple[date, str], dict[str, int]]


def earned(by_status: dict[str, int]) -> float:
    return sum(EARNED[status] * n for status, n in by_status.items())


@dataclass
class Credit:
    """What was expected and credited: in total, per ISO week and per item; and, for
    streaks, whether each day with weekday-scheduled sessions had them all done."""

    total: Tally = field(default_factory=Tally)
    weeks: defaultdict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    items: defaultdict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    day_state: dict[date, bool] = field(default_factory=dict)


def credit(expected: Due, done: Done) -> Credit:
    """Weigh what was done (by local date, item and status) against what was due.

    Every session counts by its status, due or not. A completed session earns 1 and a
    partial one ½: for weekday items, up to what the day expected of the item; for
    sessions-per-week items, up to what the week expected of it.
    """
    result = Credit()
    total, weeks, items, day_state = result.total, result.weeks, result.items, result.day_state
    weekly_earned: dict[tuple[str, str], float] = defaultdict(float)
    daily_earned: dict[tuple[date, str], float] = {}
    for (day, item_id), by_status in done.items():
        week = iso_week(day)
        for bucket in (total, weeks[week], items[item_id]):
            for status, n in by_status.items():
                bucket.by_status[status] += n
        if (week, item_id) in expected.by_week:
            weekly_earned[(week, item_id)] += earned(by_status)
        else:
            daily_earned[(day, item_id)] = earned(by_status)
    done_days = {day for day, _ in daily_earned}

    # Weekday items: what each day expected, and whether it was all done.
    for span in expected.spans:
        seen = [0] * 8
        day = span.low
        while day <= span.high:
            weekday = day.isoweekday()
            sessions = span.per_day[weekday]
            if sessions:
                seen[weekday] += 1
                total.expected += sessions
                weeks[iso_week(day)].expected += sessions
                all_done = day in done_days and all(
                    daily_earned.get((day, item_id), 0.0) >= times
                    for item_id, times in span.on[weekday].items()
                )
                day_state[day] = day_state.get(day, True) and all_done
            day += ONE_DAY
        for weekday, count in enumerate(seen):
            for item_id, times in span.on[weekday].items() if count else ():
                items[item_id].expected += count * times
    for (day, item_id), got in daily_earned.items():
        credited = min(got, float(expected.wanted(day, item_id)))
        if credited:
            for bucket in (total, weeks[iso_week(day)], items[item_id]):
                bucket.earned += credited

    for (week, item_id), wanted in expected.by_week.items():
        week_credit = min(weekly_earned.get((week, item_id), 0.0), wanted)
        for bucket in (total, weeks[week], items[item_id]):
            bucket.expected += wanted
            bucket.earned += week_credit
    return result


def summarize(
    session: Session, patient: Patient, start: date, end: date, today: date, pain_alert_at: int
) -> Summary:
    zone = ZoneInfo(patient.time_zone)
    versions = plan_versions(session, [patient.id])[patient.id]
    # Days still to come expect nothing yet.
    expected = due(versions, start, min(end, today), zone)
    record = AdherenceRecord.__table__.c  # type: ignore[attr-defined]
    records = (
        record.clinic_id == patient.clinic_id,  # leads the index
        record.patient_id == patient.id,
        record.deleted_at.is_(None),
        record.performed_on >= start,
        record.performed_on <= end,
    )
    # One pass over the period's records: sessions by local date, item and status, with
    # their pain figures and the latest time.
    done: Done = defaultdict(lambda: defaultdict(int))
    pain_by_week: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    last = None
    names: dict[uuid.UUID, str] = {}
    for day, record_item, status, n, pain_sum, pain_count, latest in session.execute(
        sa_select(
            record.performed_on,
            record.item_id,
            record.status,
            func.count(),
            func.sum(record.pain),
            func.count(record.pain),
            func.max(record.performed_at),
        )
        .where(*records)
        .group_by(record.performed_on, record.item_id, record.status)
    ).all():
        name = names.get(record_item) or names.setdefault(record_item, str(record_item))
        done[(day, name)][status] += n
        if pain_count:
            pain_by_week[iso_week(day)][0] += float(pain_sum)
            pain_by_week[iso_week(day)][1] += pain_count
        last = latest if last is None or latest > last else last
    tally = credit(expected, done)
    current, longest = _streaks(tally.day_state, today)
    alerts = session.execute(
        sa_select(record.id, record.item_id, record.performed_on, record.pain)
        .where(*records, record.pain >= pain_alert_at)
        .order_by(record.performed_at.desc())
        .limit(MAX_ALERTS)
    ).all()
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
        pain=_pain(pain_by_week),
        pain_alerts=[
            PainAlert(id=r.id, item_id=r.item_id, performed_on=r.performed_on, pain=r.pain)
            for r in alerts
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


def _pain(sums: dict[str, list[float]]) -> PainSummary:
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
