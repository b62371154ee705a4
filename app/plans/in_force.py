"""When a plan version is in force: the one rule that uploads, today, the summary, the
overview, the plan and version reads (and so the change feed and FHIR) follow.

Days are the patient's local dates. Of a plan's versions, in the order they were made:

- drafts govern nothing, and a version that completes or cancels the plan governs nothing:
  no day after it is governed;
- the first active version governs from the plan's ``start_date`` (a plan moved from paper
  counts from when it really began), even when it was activated later;
- each later version (an edit, a pause, a resumption) governs from the local day it was
  made, so edits never rewrite the past; a day follows the version in force at its end, so
  of versions made on one day the last governs it;
- a version governs until the day its plan's next version was made, and never outside its
  own ``start_date`` and ``end_date``.

Active versions expect sessions on the days they govern; paused ones govern without
expecting any. A record may name a version on a day it governed, or on the day an edit
replaced it (it was in force for part of that day, as on an app that had not yet heard
of the edit): the version was *in force* on that day.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from app.plans.models import PlanStatus

ONE_DAY = timedelta(days=1)
# Statuses whose versions govern days.
GOVERNING = frozenset({PlanStatus.active.value, PlanStatus.paused.value})


class Dated(Protocol):
    """What the rule reads of a plan version."""

    @property
    def plan_id(self) -> uuid.UUID: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def start_date(self) -> date: ...
    @property
    def end_date(self) -> date | None: ...


V = TypeVar("V", bound=Dated)


@dataclass(frozen=True, slots=True)
class Term(Generic[V]):
    """A version with the local days it governs, ``first`` to ``last`` (None: no end yet;
    empty when ``last`` < ``first``), and the last day it was in force for a moment at
    least (``touched``: the day the next version was made, within its own dates)."""

    version: V
    first: date
    last: date | None
    touched: date | None

    @property
    def expects(self) -> bool:
        """Whether its days expect sessions (an active version), not only are governed."""
        return self.version.status == PlanStatus.active

    def governs(self, day: date) -> bool:
        return self.first <= day and (self.last is None or day <= self.last)

    def in_force_on(self, day: date) -> bool:
        return self.first <= day and (self.touched is None or day <= self.touched)


def terms(versions: Iterable[V], zone: ZoneInfo) -> list[Term[V]]:
    """The term of every version that governs or was ever in force, from ``versions`` in
    the order they were made (of one plan or several). Drafts, and versions that end a
    plan, have none."""
    histories: dict[uuid.UUID, list[tuple[date, V]]] = {}
    for version in versions:
        made = version.created_at.astimezone(zone).date()
        histories.setdefault(version.plan_id, []).append((made, version))
    found: list[Term[V]] = []
    for history in histories.values():
        activated = False
        for n, (made, version) in enumerate(history):
            if version.status not in GOVERNING:
                continue
            # The first active version reaches back to the start date; later ones begin
            # the day they were made (never before their start date).
            first = version.start_date if not activated else max(made, version.start_date)
            activated = True
            last = touched = version.end_date
            if n + 1 < len(history):
                replaced = history[n + 1][0]
                last = _earlier(last, replaced - ONE_DAY)
                touched = _earlier(touched, replaced)
            found.append(Term(version, first, last, touched))
    return found


def span(found: Iterable[Term[V]]) -> tuple[date, date | None] | None:
    """The days a plan governs, first to last (last None: no end yet), from the terms of
    its versions; None if it governs none (a draft, or ended before its first day)."""
    governing = [term for term in found if term.last is None or term.first <= term.last]
    if not governing:
        return None
    ends = [term.last for term in governing]
    last = None if None in ends else max(end for end in ends if end is not None)
    return min(term.first for term in governing), last


def _earlier(one: date | None, other: date) -> date:
    return other if one is None else min(one, other)


def newest_governs(status: str, start_date: date, end_date: date | None, day: date) -> bool:
    """Whether a plan's newest version governs ``day``, the patient's today: `terms` for a
    version made no later than today, with no version after it. First active or not, it
    governs every day from its start date (an edit made today governs today) to its end
    date."""
    return status in GOVERNING and start_date <= day and (end_date is None or day <= end_date)


def governing_on(found: Iterable[Term[V]], day: date) -> Term[V] | None:
    """The term among ``found`` (one plan's) that governs ``day``, if any."""
    return next((term for term in found if term.governs(day)), None)


class Numbered(Dated, Protocol):
    @property
    def number(self) -> int: ...


N = TypeVar("N", bound=Numbered)


def outside(found: dict[int, Term[N]], number: int, day: date) -> tuple[str, str] | None:
    """Why a record against version ``number`` of a plan, on local ``day``, is outside the
    plan, as (the record's field at fault, a reason an app can show); None if that version
    was in force on that day. ``found`` holds the plan's terms by version number."""
    term = found.get(number)
    if term is not None and term.in_force_on(day):
        return None
    if term is None:
        return (
            "plan_version",
            f"Version {number} of the plan never governed a day (a draft, or the end of the "
            "plan); record against the version the app shows today.",
        )
    governing = governing_on(found.values(), day)
    if governing is not None:
        return (
            "plan_version",
            f"Version {number} of the plan was not in force on {day}; "
            f"version {governing.version.number} was.",
        )
    first = min(t.first for t in found.values())
    ends = [t.touched for t in found.values()]
    last = None if None in ends else max(e for e in ends if e is not None)
    days = f"from {first}" + (f" to {last}" if last is not None else " on")
    return "performed_at", f"{day} is outside the plan's days, which run {days}."
