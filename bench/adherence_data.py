"""Synthetic adherence data for PostgreSQL: one clinic, its patients with an active plan
each, and a year of adherence records, bulk-loaded with COPY.

    python -m bench.adherence_data --database-url URL [--patients 10000] [--records 1000000]

The database must be migrated (``python -m app.cli migrate``, which also loads the global
template every plan is made from) and must not hold the bench clinician yet. The rows are
the ones the API would have written:

- the clinic "Bench Clinic" and its clinician (``EMAIL``, ``PASSWORD``);
- patients in a few time zones, each given the global template as a plan ~380 days ago:
  made as a draft (version 1) by the clinician, activated a minute later (version 2);
- records uploaded by the patients' apps (source ``patient_app``) under version 2, done
  between 07:00 and 22:00 local time within the last 365 local days, so ``performed_on``
  and ``utc_offset_minutes`` follow the patient's zone on that date; ``created_at`` is
  minutes to days later (phones upload when they are online). About 75 % completed, 15 %
  partial, 10 % skipped; pain mostly low, now and then 7 or more. They are copied in upload
  order, so a patient's records are spread over the table as they would be in production;
- the outbox changes of those plans and records, and every patient's rollup row, stale and
  carrying the last upload (as uploads leave them; the overview would otherwise make the
  rows itself on its first request).

Audit events are left out. One patient, ``Dataset.patient``, has ``HEAVY`` records (a
diligent year); the others share the rest, about as many each.
"""

import argparse
import asyncio
import random
import time as clock
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from app.adherence.models import AdherenceRecord, SessionStatus, SkipReason, Source
from app.auth import accounts
from app.auth.models import Role
from app.auth.security import Secrets
from app.core.config import Settings
from app.core.db import libpq_url, make_engine, transaction
from app.exercises.catalog import catalog_id
from app.patients.models import Cause, Side
from app.plans.models import PlanStatus

ZONES = ("Europe/Lisbon", "America/New_York", "Pacific/Auckland", "Pacific/Honolulu")
EMAIL = "bench@clinic.test"
PASSWORD = "bench-password-long-enough"
TEMPLATE_ID = catalog_id("template:foot-drop-home-program")
HEAVY = 1_000
DAYS = 365
PLAN_AGE = timedelta(days=380)
CAUSES = {
    Cause.stroke: 45,
    Cause.multiple_sclerosis: 20,
    Cause.peroneal_nerve_injury: 15,
    Cause.sciatic_nerve_injury: 5,
    Cause.spinal_cord_injury: 5,
    Cause.other: 10,
}
SKIP_REASONS = {
    SkipReason.no_time: 35,
    SkipReason.forgot: 25,
    SkipReason.pain: 15,
    SkipReason.felt_unwell: 12,
    SkipReason.no_equipment: 5,
    SkipReason.other: 8,
}
NOTES = ("Felt easier today.", "Band slipped, used a towel.", "Tired after a long walk.")
# Every column of a stored record but the tombstone's, in the table's order.
RECORD_COLUMNS = tuple(
    name
    for name in AdherenceRecord.__table__.c.keys()  # type: ignore[attr-defined]  # noqa: SIM118
    if name != "deleted_at"
)


@dataclass(frozen=True)
class PatientPlan:
    """A patient of the bench clinic, their active plan and how many records they have."""

    id: uuid.UUID
    time_zone: str
    affected_side: str
    created_at: datetime
    plan_id: uuid.UUID
    plan_version: int
    item_ids: tuple[uuid.UUID, ...]  # item_ids[i] is the plan's copy of the template's item i
    records: int


@dataclass(frozen=True)
class Dataset:
    clinic_id: uuid.UUID
    clinician_id: uuid.UUID
    email: str
    password: str
    items: tuple[dict[str, Any], ...]  # the template's items, in plan order
    patients: tuple[PatientPlan, ...]
    seconds: float  # how long loading took

    @property
    def patient(self) -> PatientPlan:
        """The patient with a diligent year of records (``HEAVY`` of them)."""
        return self.patients[0]


def new_id(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def session_fields(
    rng: random.Random, item: dict[str, Any], pain_level: float = 2.0, device: str | None = None
) -> dict[str, Any]:
    """A session's outcome as a patient's app reports it, for one plan item."""
    draw = rng.random()
    if draw < 0.10:
        reason = rng.choices(list(SKIP_REASONS), list(SKIP_REASONS.values()))[0]
        return {
            "status": SessionStatus.skipped.value,
            "sets_done": None,
            "reps_done": None,
            "hold_seconds": None,
            "pain": _pain(rng, pain_level + 3) if reason == SkipReason.pain else None,
            "effort": None,
            "skip_reason": reason.value,
            "note": None,
            "assistive_device": None,
        }
    partial = draw < 0.25
    sets, reps = item["sets"], item["reps"]
    if partial and reps:
        reps = rng.randint(max(1, reps // 3), max(1, reps - 1))
    elif partial and sets:
        sets = max(1, sets - 1)
    return {
        "status": (SessionStatus.partial if partial else SessionStatus.completed).value,
        "sets_done": sets,
        "reps_done": reps,
        "hold_seconds": item["hold_seconds"],
        "pain": _pain(rng, pain_level) if rng.random() < 0.9 else None,
        "effort": min(10, max(0, round(rng.gauss(4, 1.5)))) if rng.random() < 0.85 else None,
        "skip_reason": None,
        "note": rng.choice(NOTES) if rng.random() < 0.03 else None,
        "assistive_device": device if rng.random() < 0.7 else None,
    }


def _pain(rng: random.Random, level: float) -> int:
    return min(10, max(0, round(rng.gauss(level, 1.6))))


def _counts(rng: random.Random, patients: int, records: int) -> list[int]:
    """Records per patient: ``HEAVY`` for the first, about the same for each other."""
    if patients == 1:
        return [records]
    heavy = min(HEAVY, records)
    weights = [rng.uniform(0.5, 1.5) for _ in range(patients - 1)]
    rest, total = records - heavy, sum(weights)
    counts = [int(rest * w / total) for w in weights]
    for i in range(rest - sum(counts)):
        counts[i % len(counts)] += 1
    return [heavy, *counts]


def _clinic(database_url: str, at: datetime) -> tuple[uuid.UUID, uuid.UUID]:
    """The clinic and its clinician, made as ``dorsi create-clinic`` does, dated ``at``.

    The services are coroutines and `load` is not (a script's and a test's helper, whose
    caller may be running an event loop already): they run on a loop of their own, in a
    thread of their own."""
    settings = Settings(database_url=database_url, secret_key="bench-secret-" + "x" * 32)

    async def make() -> tuple[uuid.UUID, uuid.UUID]:
        engine = make_engine(settings)
        try:
            async with transaction(engine) as session:
                clinic = await accounts.create_clinic(session, "Bench Clinic")
                clinician = await accounts.create_clinician(
                    session, Secrets(settings), clinic.id, EMAIL, PASSWORD, Role.clinician
                )
                clinic.created_at = clinician.created_at = at
            return clinic.id, clinician.id
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, make()).result()


def _people(
    rng: random.Random, counts: list[int], items: list[dict[str, Any]], start: datetime
) -> list[PatientPlan]:
    return [
        PatientPlan(
            id=new_id(rng),
            time_zone=rng.choice(ZONES),
            affected_side=rng.choices(list(Side), [45, 45, 10])[0].value,
            # Enrolled one after the other, two seconds apart.
            created_at=start + timedelta(seconds=2 * n),
            plan_id=new_id(rng),
            plan_version=2,
            item_ids=tuple(new_id(rng) for _ in items),
            records=count,
        )
        for n, count in enumerate(counts)
    ]


def _copy_people(
    cursor: psycopg.Cursor[Any],
    rng: random.Random,
    clinic_id: uuid.UUID,
    clinician_id: uuid.UUID,
    people: list[PatientPlan],
    title: str,
    items: list[dict[str, Any]],
) -> None:
    """Patients, then plans, then their two versions: the draft and the activation."""
    with cursor.copy(
        "COPY patient (id, clinic_id, reference, affected_side, cause, time_zone, version,"
        " created_at, updated_at) FROM STDIN"
    ) as copy:
        for n, person in enumerate(people, start=1):
            cause = rng.choices(list(CAUSES), list(CAUSES.values()))[0].value
            copy.write_row(
                (
                    person.id,
                    clinic_id,
                    f"BENCH-{n:05d}",
                    person.affected_side,
                    cause,
                    person.time_zone,
                    1,
                    person.created_at,
                    person.created_at,
                )
            )
    made = {p.id: p.created_at + timedelta(seconds=30) for p in people}
    activated = {p.id: made[p.id] + timedelta(minutes=1) for p in people}
    with cursor.copy(
        "COPY plan (id, clinic_id, patient_id, template_id, status, version, created_at,"
        " updated_at) FROM STDIN"
    ) as copy:
        for person in people:
            copy.write_row(
                (
                    person.plan_id,
                    clinic_id,
                    person.id,
                    TEMPLATE_ID,
                    PlanStatus.active.value,
                    person.plan_version,
                    made[person.id],
                    activated[person.id],
                )
            )
    with cursor.copy(
        "COPY plan_version (id, plan_id, clinic_id, number, status, title, notes, start_date,"
        " end_date, items, created_at, created_by) FROM STDIN"
    ) as copy:
        for person in people:
            own = Jsonb(
                [
                    {**item, "id": str(item_id), "side": item["side"] or person.affected_side}
                    for item, item_id in zip(items, person.item_ids, strict=True)
                ]
            )
            start = made[person.id].astimezone(ZoneInfo(person.time_zone)).date()
            for number, status, at in (
                (1, PlanStatus.draft, made[person.id]),
                (2, PlanStatus.active, activated[person.id]),
            ):
                copy.write_row(
                    (
                        new_id(rng),
                        person.plan_id,
                        clinic_id,
                        number,
                        status.value,
                        title,
                        None,
                        start,
                        None,
                        own,
                        at,
                        clinician_id,
                    )
                )


def _sessions(
    rng: random.Random, people: list[PatientPlan], now: datetime
) -> list[tuple[datetime, int, int, datetime]]:
    """(uploaded at, sequence, patient index, local time done) of every record, in upload
    order."""
    found: list[tuple[datetime, int, int, datetime]] = []
    for index, person in enumerate(people):
        zone = ZoneInfo(person.time_zone)
        today = now.astimezone(zone).date()
        for _ in range(person.records):
            day = today - timedelta(days=rng.randrange(DAYS))
            hour = time(rng.randrange(7, 22), rng.randrange(60), rng.randrange(60))
            local = datetime.combine(day, hour, zone)
            if local > now:  # later today: make it yesterday
                local -= timedelta(days=1)
            if rng.random() < 0.4:  # online: within minutes
                delay = timedelta(minutes=rng.uniform(0.5, 5))
            else:  # offline for a while
                delay = timedelta(hours=min(72.0, rng.expovariate(1 / 6)))
            uploaded = min(local.astimezone(UTC) + delay, now)
            found.append((uploaded, len(found), index, local))
    found.sort()
    return found


def _records(
    rng: random.Random,
    clinic_id: uuid.UUID,
    people: list[PatientPlan],
    items: list[dict[str, Any]],
    now: datetime,
) -> Iterator[tuple[Any, ...]]:
    # Each patient reports pain around their own level and uses one device, or none.
    profiles = [
        (rng.choice((0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.5)), rng.choice(("none", "afo", "fes")))
        for _ in people
    ]
    for uploaded, _, index, local in _sessions(rng, people, now):
        person = people[index]
        which = rng.randrange(len(items))
        offset = local.utcoffset()
        assert offset is not None
        row = {
            "id": new_id(rng),
            "clinic_id": clinic_id,
            "patient_id": person.id,
            "plan_id": person.plan_id,
            "plan_version": person.plan_version,
            "item_id": person.item_ids[which],
            "performed_at": local.astimezone(UTC),
            "utc_offset_minutes": int(offset.total_seconds() // 60),
            "performed_on": local.date(),
            **session_fields(rng, items[which], *profiles[index]),
            "source": Source.patient_app.value,
            "recorded_by": person.id,
            "version": 1,
            "created_at": uploaded,
            "updated_at": uploaded,
        }
        yield tuple(row[column] for column in RECORD_COLUMNS)


def _derived(cursor: psycopg.Cursor[Any], clinic_id: uuid.UUID) -> None:
    """What the writes leave besides their rows: outbox changes in the order they happened,
    and the rollup rows, stale, with each patient's last upload."""
    cursor.execute(
        """
        INSERT INTO change (clinic_id, resource_type, resource_id, operation, version, data,
                            occurred_at)
        SELECT clinic_id, kind, id, operation, number, 'null'::jsonb, at
        FROM (
            SELECT clinic_id, 'plan' AS kind, plan_id::text AS id,
                   CASE WHEN number = 1 THEN 'create' ELSE 'update' END AS operation,
                   number, created_at AS at
            FROM plan_version WHERE clinic_id = %(clinic)s
            UNION ALL
            SELECT clinic_id, 'adherence_record', id::text, 'create', 1, created_at
            FROM adherence_record WHERE clinic_id = %(clinic)s
        ) AS made
        ORDER BY at
        """,
        {"clinic": clinic_id},
    )
    cursor.execute(
        """
        INSERT INTO adherence_rollup (patient_id, clinic_id, generation, valid_until,
            expected_7d, credited_7d, expected_30d, credited_30d, pain_alerts_7d,
            last_upload_at)
        SELECT patient.id, patient.clinic_id, 0, '1970-01-01T00:00:00Z', 0, 0, 0, 0, 0, last.at
        FROM patient
        LEFT JOIN (
            SELECT patient_id, max(created_at) AS at FROM adherence_record
            WHERE clinic_id = %(clinic)s GROUP BY patient_id
        ) AS last ON last.patient_id = patient.id
        WHERE patient.clinic_id = %(clinic)s
        """,
        {"clinic": clinic_id},
    )


def load(
    database_url: str, *, patients: int = 10_000, records: int = 1_000_000, seed: int = 1
) -> Dataset:
    """Fill a migrated database (a Dorsi or libpq URL) and say how long it took."""
    if patients < 1 or records < 0:
        raise ValueError("At least one patient, and no negative number of records.")
    began = clock.perf_counter()
    rng = random.Random(seed)
    now = datetime.now(UTC)
    start = now - PLAN_AGE
    url = libpq_url(database_url)
    clinic_id, clinician_id = _clinic(url, start - timedelta(days=1))
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        found = cursor.execute(
            "SELECT name, items FROM plan_template WHERE id = %s", (TEMPLATE_ID,)
        ).fetchone()
        if found is None:
            raise SystemExit("No global template: migrate the database first.")
        title, items = found
        people = _people(rng, _counts(rng, patients, records), items, start)
        _copy_people(cursor, rng, clinic_id, clinician_id, people, title, items)
        with cursor.copy(f"COPY adherence_record ({', '.join(RECORD_COLUMNS)}) FROM STDIN") as copy:
            for row in _records(rng, clinic_id, people, items, now):
                copy.write_row(row)
        _derived(cursor, clinic_id)
    copied = clock.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        # Statistics for the planner, and the visibility map, before anything is measured.
        tables = "patient, plan, plan_version, adherence_record, adherence_rollup, change"
        connection.execute(f"VACUUM (ANALYZE) {tables}")
    seconds = clock.perf_counter() - began
    print(
        f"loaded {patients} patients and {records} records in {seconds:.1f} s"
        f" ({copied - began:.1f} s generating and copying, {seconds - copied + began:.1f} s"
        " VACUUM ANALYZE)"
    )
    return Dataset(
        clinic_id=clinic_id,
        clinician_id=clinician_id,
        email=EMAIL,
        password=PASSWORD,
        items=tuple(items),
        patients=tuple(people),
        seconds=seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True, help="A migrated Dorsi database.")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data = load(args.database_url, patients=args.patients, records=args.records, seed=args.seed)
    print(f"clinician {data.email} / {data.password}")
    print(f"patient {data.patient.id} has {data.patient.records} records")


if __name__ == "__main__":
    main()
