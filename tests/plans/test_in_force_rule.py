"""The rule for when a plan version is in force (`app.plans.in_force`), on plan histories
made at random: today's shortcut agrees with the whole rule."""

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.plans.in_force import newest_governs, terms
from app.plans.models import TRANSITIONS, PlanStatus

ZONE = ZoneInfo("Pacific/Tongatapu")
DAY0 = date(2026, 11, 2)


@dataclass(frozen=True)
class Version:
    plan_id: uuid.UUID
    number: int
    created_at: datetime
    status: str
    start_date: date
    end_date: date | None


def history(rng: random.Random) -> list[Version]:
    """A plan's versions: statuses by the allowed transitions, made on non-decreasing
    days, with start and end dates around them."""
    plan_id, status, made = uuid.uuid4(), PlanStatus.draft, DAY0
    start = DAY0 + timedelta(days=rng.randint(-20, 10))
    end = None if rng.random() < 0.5 else start + timedelta(days=rng.randint(0, 30))
    versions = []
    for number in range(1, rng.randint(1, 6) + 1):
        if number > 1:
            made += timedelta(days=rng.choice([0, 0, 1, 3]))
            choices = [*sorted(TRANSITIONS[status]), status]
            if not TRANSITIONS[status]:
                break
            status = rng.choice(choices)
        at = datetime.combine(made, time(rng.randint(0, 23)), ZONE).astimezone(UTC)
        versions.append(Version(plan_id, number, at, status.value, start, end))
    return versions


def test_today_follows_the_newest_version_as_the_whole_rule_says() -> None:
    rng = random.Random(19)
    for _ in range(2000):
        versions = history(rng)
        newest = versions[-1]
        made = newest.created_at.astimezone(ZONE).date()
        today = made + timedelta(days=rng.randint(0, 40))
        found = {t.version.number: t for t in terms(versions, ZONE)}
        by_rule = newest.number in found and found[newest.number].governs(today)
        assert newest_governs(newest.status, newest.start_date, newest.end_date, today) == (
            by_rule
        ), versions


def test_a_day_is_governed_by_one_version_at_most_and_never_by_a_draft() -> None:
    rng = random.Random(7)
    for _ in range(500):
        versions = history(rng)
        found = terms(versions, ZONE)
        assert all(t.version.status in ("active", "paused") for t in found)
        for offset in range(-25, 60):
            day = DAY0 + timedelta(days=offset)
            assert sum(t.governs(day) for t in found) <= 1, (versions, day)
            # A version in force on a day governs it, or was replaced on it.
            for t in found:
                if t.in_force_on(day) and not t.governs(day):
                    assert day == t.touched, (versions, day)
