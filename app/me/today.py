"""`/v1/me/today`, the patient app's most frequent call: what it reads and how it answers.

The route (`app.me.router`) has checked the token's session (`app.auth.deps.PatientCaller`);
here, in the request's transaction, the patient's active plan version is read, an audit
event written, and what is already recorded on the patient's local date read. The answer
is rendered by hand (`render`) for speed; its shape is the `Today` schema's.

Exercise names and steps are kept in process, per app, for a while
(DORSI_RESPONSE_CACHE_SECONDS): an edit to a clinic's own exercise shows in "today" within
that time. See `ExerciseCache`.
"""

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import Request
from sqlalchemy import and_, bindparam, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence.models import AdherenceRecord
from app.audit import service as audit
from app.auth.principal import Caller
from app.core.db import execute, table_of
from app.core.errors import Unauthorized
from app.exercises.models import Exercise
from app.patients.models import Patient
from app.plans.models import Plan, PlanStatus, PlanVersion

# id, item_id, status, performed_at, utc_offset_minutes, sets_done, reps_done, pain
RecordRow = Sequence[Any]


@dataclass(slots=True)
class State:
    """One request's view: the patient, their plan version and what they recorded today."""

    time_zone: str
    day: date
    plan_id: uuid.UUID | None
    number: int | None
    start_date: date | None
    end_date: date | None
    items: list[dict[str, Any]] | None
    recorded: Sequence[RecordRow]

    def exercise_ids(self) -> set[str]:
        if not self.due_at_all():
            return set()
        return {item["exercise_id"] for item in self.items or ()}

    def due_at_all(self) -> bool:
        return not (
            self.plan_id is None
            or self.start_date is None
            or self.day < self.start_date
            or (self.end_date is not None and self.day > self.end_date)
        )


def render(state: State, exercises: dict[str, dict[str, Any]]) -> bytes:
    """The answer's JSON (the `Today` schema), from a request's state and the details of
    its exercises."""
    body: dict[str, Any] = {
        "date": state.day.isoformat(),
        "time_zone": state.time_zone,
        "plan_id": str(state.plan_id) if state.plan_id else None,
        "plan_version": state.number,
        "items": [],
    }
    if not state.due_at_all():
        return orjson.dumps(body)
    done: dict[str, list[dict[str, Any]]] = {}
    for record_id, item_id, status, performed_at, offset, sets, reps, pain in state.recorded:
        local = performed_at.astimezone(timezone(timedelta(minutes=offset)))
        done.setdefault(str(item_id), []).append(
            {  # a `TodayRecord`
                "id": str(record_id),
                "status": status,
                # Spelled as the rest of the API spells it: UTC as "Z".
                "performed_at": local.isoformat().replace("+00:00", "Z"),
                "sets_done": sets,
                "reps_done": reps,
                "pain": pain,
            }
        )
    weekday = state.day.isoweekday()
    for order, item in enumerate(state.items or (), start=1):
        schedule = item["schedule"]
        days = schedule.get("days_of_week")
        if days is not None and weekday not in days:
            continue
        body["items"].append(
            {
                "item_id": item["id"],
                "order": order,
                "exercise": exercises[item["exercise_id"]],
                "sets": item.get("sets"),
                "reps": item.get("reps"),
                "hold_seconds": item.get("hold_seconds"),
                "rest_seconds": item.get("rest_seconds"),
                "side": item.get("side"),
                "resistance": item.get("resistance"),
                "notes": item.get("notes"),
                "times_per_day": schedule.get("times_per_day", 1),
                "due": "scheduled" if days is not None else "flexible",
                "sessions_per_week": schedule.get("sessions_per_week"),
                "recorded": done.get(item["id"], []),
            }
        )
    return orjson.dumps(body)


# --- exercise details, kept for a while -----------------------------------------------------


class ExerciseCache:
    """Exercise details (a `TodayExercise`'s fields) by id as plan items spell it (a UUID's
    canonical text), each kept for ``ttl`` seconds, at most ``maxsize`` of them: past that,
    the least recently used go first. One per app (`exercise_cache`); ``ttl`` 0 keeps
    nothing."""

    def __init__(
        self, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ids: set[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """The details of ``ids`` still kept, and the ids that must be read again."""
        now = self._clock()
        found: dict[str, dict[str, Any]] = {}
        for exercise_id in ids:
            cached = self._entries.get(exercise_id)
            if cached is None:
                continue
            if cached[0] <= now:
                del self._entries[exercise_id]
                continue
            self._entries.move_to_end(exercise_id)
            found[exercise_id] = cached[1]
        return found, ids - found.keys()

    def keep(self, rows: Iterable[Sequence[Any]], into: dict[str, dict[str, Any]]) -> None:
        """Adds (id, slug, name, steps) rows to ``into``, and keeps them for ``ttl``."""
        expires = self._clock() + self.ttl
        for exercise_id, slug, name, steps in rows:
            key = str(exercise_id)
            entry = {"id": key, "slug": slug, "name": name, "steps": steps}
            into[key] = entry
            if self.ttl > 0 and self.maxsize > 0:
                self._entries[key] = (expires, entry)
                self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)


# Enough for the whole catalog and the clinics' own exercises in use; each entry is a few
# hundred bytes.
EXERCISE_CACHE_SIZE = 2048


async def exercise_cache(request: Request) -> ExerciseCache:
    """The app's exercise cache (``app.state.today_exercises``), made on first use with the
    app's DORSI_RESPONSE_CACHE_SECONDS as its time to live."""
    state = request.app.state
    cache: ExerciseCache | None = getattr(state, "today_exercises", None)
    if cache is None:
        cache = ExerciseCache(EXERCISE_CACHE_SIZE, state.settings.response_cache_seconds)
        state.today_exercises = cache
    return cache


# --- the statements, built once ----------------------------------------------------------

patients, plans, versions = table_of(Patient), table_of(Plan), table_of(PlanVersion)
records, exercise_table = table_of(AdherenceRecord), table_of(Exercise)

STATE = (
    select(
        patients.c.time_zone,
        plans.c.id.label("plan_id"),
        versions.c.number,
        versions.c.start_date,
        versions.c.end_date,
        versions.c["items"],
    )
    .select_from(patients)
    .outerjoin(
        plans,
        and_(plans.c.patient_id == patients.c.id, plans.c.status == PlanStatus.active.value),
    )
    .outerjoin(
        versions, and_(versions.c.plan_id == plans.c.id, versions.c.number == plans.c.version)
    )
    .where(patients.c.id == bindparam("patient_id", type_=patients.c.id.type))
)
RECORDED = (
    select(
        records.c.id,
        records.c.item_id,
        records.c.status,
        records.c.performed_at,
        records.c.utc_offset_minutes,
        records.c.sets_done,
        records.c.reps_done,
        records.c.pain,
    )
    .where(
        records.c.clinic_id == bindparam("clinic_id", type_=records.c.clinic_id.type),
        records.c.patient_id == bindparam("patient_id", type_=records.c.patient_id.type),
        records.c.performed_on == bindparam("day", type_=records.c.performed_on.type),
        records.c.deleted_at.is_(None),
    )
    .order_by(records.c.performed_at, records.c.id)
)
EXERCISES = select(
    exercise_table.c.id, exercise_table.c.slug, exercise_table.c.name, exercise_table.c.steps
).where(exercise_table.c.id.in_(bindparam("ids", expanding=True)))


async def today(session: AsyncSession, caller: Caller, exercises: ExerciseCache) -> bytes:
    """The calling patient's today as JSON bytes, its audit event written in ``session``."""
    principal = caller.principal
    patient_id = principal.patient_id
    assert patient_id is not None
    row = (await execute(session, STATE, {"patient_id": patient_id})).first()
    if row is None:  # the caller's check found the patient; only a race gets here
        raise Unauthorized("The access token has been revoked.")
    await audit.record(session, caller, "read", "today", None, patient_id)
    day = datetime.now(ZoneInfo(row.time_zone)).date()
    state = State(
        row.time_zone, day, row.plan_id, row.number, row.start_date, row.end_date, row.items, []
    )
    if state.due_at_all():
        parameters = {"clinic_id": principal.clinic_id, "patient_id": patient_id, "day": day}
        state.recorded = [tuple(r) for r in await execute(session, RECORDED, parameters)]
    return render(state, await _exercise_details(session, state.exercise_ids(), exercises))


async def _exercise_details(
    session: AsyncSession, ids: set[str], cache: ExerciseCache
) -> dict[str, dict[str, Any]]:
    found, missing = cache.get(ids)
    if missing:
        wanted = [uuid.UUID(exercise_id) for exercise_id in missing]
        cache.keep(await execute(session, EXERCISES, {"ids": wanted}), found)
    return found
