"""`/v1/me/today`, the patient app's most frequent call: what it reads and how it answers.

Every patient app asks for today when it opens, and each answer writes an audit event.
The route (`app.me.router`) checks the token's signature and awaits the app's
`TodayBatcher`, which answers the requests waiting at a moment together, in one
transaction: one statement reads their sessions (the one rule, `principal_of`, decides
each), their patients and active plan versions; one writes the audit events of the valid
ones; one reads what their patients already recorded on their local dates. A request that
arrives alone is a batch of one. The answer is rendered by hand (`render`) for speed; its
shape is the `Today` schema's.

Exercise names and steps are kept in process, per app, for a while
(DORSI_RESPONSE_CACHE_SECONDS): an edit to a clinic's own exercise shows in "today" within
that time. See `ExerciseCache`.
"""

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import and_, bindparam, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence.models import AdherenceRecord
from app.audit import service as audit
from app.auth.deps import SESSIONS, as_patient, principal_of, session_state
from app.auth.principal import Caller
from app.core.db import execute, table_of, transaction
from app.core.errors import DorsiError, Unauthorized
from app.exercises.models import Exercise
from app.patients.models import Patient
from app.plans.in_force import newest_governs
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
    recorded: list[RecordRow]

    def exercise_ids(self) -> set[str]:
        if not self.due_at_all():
            return set()
        return {item["exercise_id"] for item in self.items or ()}

    def due_at_all(self) -> bool:
        """Whether the plan governs today (`app.plans.in_force`); its version is the newest
        of an active plan (`STATE`)."""
        return (
            self.plan_id is not None
            and self.start_date is not None
            and newest_governs(PlanStatus.active, self.start_date, self.end_date, self.day)
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
    the least recently used go first. One per app, its `TodayBatcher`'s; ``ttl`` 0 keeps
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


# --- the statements, built once -----------------------------------------------------------

patients, plans, versions = table_of(Patient), table_of(Plan), table_of(PlanVersion)
records, exercise_table = table_of(AdherenceRecord), table_of(Exercise)

# Each session's state for `principal_of`, beside its patient's time zone and active plan
# version.
STATE = (
    session_state()
    .add_columns(
        SESSIONS.c.id.label("session_id"),
        patients.c.time_zone,
        plans.c.id.label("plan_id"),
        versions.c.number,
        versions.c.start_date,
        versions.c.end_date,
        versions.c["items"],
    )
    .outerjoin(
        patients,
        and_(patients.c.clinic_id == SESSIONS.c.clinic_id, patients.c.id == SESSIONS.c.patient_id),
    )
    .outerjoin(
        plans,
        and_(
            plans.c.clinic_id == patients.c.clinic_id,
            plans.c.patient_id == patients.c.id,
            plans.c.status == PlanStatus.active.value,
        ),
    )
    .outerjoin(
        versions,
        and_(
            versions.c.clinic_id == plans.c.clinic_id,
            versions.c.plan_id == plans.c.id,
            versions.c.number == plans.c.version,
        ),
    )
    .where(SESSIONS.c.id.in_(bindparam("session_ids", expanding=True)))
)
# What is recorded on each (clinic, patient, local date), through the index on them.
DAY = (records.c.clinic_id, records.c.patient_id, records.c.performed_on)
RECORDED = (
    select(
        *DAY,
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
        tuple_(*DAY).in_(bindparam("days", expanding=True)),
        records.c.deleted_at.is_(None),
    )
    .order_by(records.c.performed_at, records.c.id)
)
EXERCISES = select(
    exercise_table.c.id, exercise_table.c.slug, exercise_table.c.name, exercise_table.c.steps
).where(exercise_table.c.id.in_(bindparam("ids", expanding=True)))


# --- requests answered together --------------------------------------------------------

# A batch starts when a request finds none in flight. Another starts beside those in
# flight (at most WORKERS in all, each in a transaction of its own) only once GATHER
# requests wait: while the database is quick, the requests arriving meanwhile gather into
# the next batch; when it is slow, further batches keep them from waiting on it in turn.
WORKERS = 4
GATHER = 8
MAX_BATCH = 100


@dataclass(slots=True)
class Waiter:
    """A request for today, waiting for its batch's answer."""

    session_id: uuid.UUID
    ip: str | None
    request_id: str | None
    future: asyncio.Future[bytes]


class TodayBatcher:
    """Answers today for the requests waiting at a moment, at most ``max_batch`` in one
    transaction on ``engine``; up to ``workers`` batches at once, a further one only when
    ``gather`` requests wait. One per app (``app.state.today``).

    Each request gets its own answer: its JSON, or its own `Unauthorized`/`Forbidden` if
    its session no longer stands (not audited). If a batch fails, each of its requests
    fails with that error (and so answers as any failing route does); nothing of it
    commits. Requests that arrive later go in later batches."""

    def __init__(
        self,
        engine: AsyncEngine,
        exercises: ExerciseCache,
        *,
        workers: int = WORKERS,
        gather: int = GATHER,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.engine = engine
        self.exercises = exercises
        self.workers = workers
        self.max_batch = max_batch
        self.gather = gather
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[Waiter] = []
        self._running: set[asyncio.Task[None]] = set()

    async def today(self, session_id: uuid.UUID, ip: str | None, request_id: str | None) -> bytes:
        """Today's JSON for the patient of session ``session_id``, its audit event (with
        ``ip`` and ``request_id``) committed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # what waited on a loop that is gone is forgotten
            self._loop, self._waiting, self._running = loop, [], set()
        future: asyncio.Future[bytes] = loop.create_future()
        self._waiting.append(Waiter(session_id, ip, request_id, future))
        if not self._running or (
            len(self._running) < self.workers and len(self._waiting) >= self.gather
        ):
            self._running.add(loop.create_task(self._work()))
        return await future

    async def _work(self) -> None:
        try:
            while self._waiting:
                batch = [w for w in self._waiting[: self.max_batch] if not w.future.done()]
                del self._waiting[: self.max_batch]
                if batch:
                    await self._run(batch)
        finally:
            # At once, not in a done callback: a request arriving after the last look at
            # the queue must find a free place and start a worker.
            task = asyncio.current_task()
            assert task is not None
            self._running.discard(task)

    async def _run(self, batch: list[Waiter]) -> None:
        try:
            answers = await answer(self.engine, self.exercises, batch)
        except Exception as error:
            for waiter in batch:
                if not waiter.future.done():
                    waiter.future.set_exception(error)
            return
        except BaseException:
            for waiter in batch:
                waiter.future.cancel()
            raise
        for waiter, outcome in zip(batch, answers, strict=True):
            if waiter.future.done():
                continue
            if isinstance(outcome, bytes):
                waiter.future.set_result(outcome)
            else:
                waiter.future.set_exception(outcome)


async def answer(
    engine: AsyncEngine, cache: ExerciseCache, batch: Sequence[Waiter]
) -> list[bytes | DorsiError]:
    """Each waiter's answer, in order: its JSON, or the error its session earns. The audit
    events of those answered with JSON commit before this returns."""
    outcomes: list[uuid.UUID | DorsiError] = []  # the session whose state answers, or why not
    states: dict[uuid.UUID, State] = {}
    async with transaction(engine) as session:
        found = await execute(session, STATE, {"session_ids": list({w.session_id for w in batch})})
        rows = {row.session_id: row for row in found}
        events = []
        for waiter in batch:
            row = rows.get(waiter.session_id)
            try:
                principal = as_patient(principal_of(waiter.session_id, row))
            except DorsiError as error:
                outcomes.append(error)
                continue
            assert row is not None
            if row.time_zone is None:  # only a race with the patient's deletion gets here
                outcomes.append(Unauthorized("The access token has been revoked."))
                continue
            caller = Caller(principal, waiter.ip, waiter.request_id)
            events.append(audit.event(caller, "read", "today", None, principal.patient_id))
            if waiter.session_id not in states:
                day = datetime.now(ZoneInfo(row.time_zone)).date()
                states[waiter.session_id] = State(
                    row.time_zone,
                    day,
                    row.plan_id,
                    row.number,
                    row.start_date,
                    row.end_date,
                    row.items,
                    [],
                )
            outcomes.append(waiter.session_id)
        await audit.record_events(session, events)
        await _recorded(session, states, rows)
        wanted: set[str] = set()
        for state in states.values():
            wanted |= state.exercise_ids()
        exercises = await _exercise_details(session, wanted, cache)
    return [render(states[o], exercises) if isinstance(o, uuid.UUID) else o for o in outcomes]


async def _recorded(
    session: AsyncSession, states: dict[uuid.UUID, State], rows: dict[uuid.UUID, Any]
) -> None:
    """Fills in what each due state's patient recorded on their local date."""
    days: dict[tuple[Any, ...], list[State]] = {}
    for session_id, state in states.items():
        if state.due_at_all():
            row = rows[session_id]
            days.setdefault((row.clinic_id, row.patient_id, state.day), []).append(state)
    if not days:
        return
    for record in await execute(session, RECORDED, {"days": list(days)}):
        for state in days[tuple(record[:3])]:
            state.recorded.append(tuple(record[3:]))


async def _exercise_details(
    session: AsyncSession, ids: set[str], cache: ExerciseCache
) -> dict[str, dict[str, Any]]:
    found, missing = cache.get(ids)
    if missing:
        wanted = [uuid.UUID(exercise_id) for exercise_id in missing]
        cache.keep(await execute(session, EXERCISES, {"ids": wanted}), found)
    return found
