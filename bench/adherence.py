"""Load benchmark: the adherence API on PostgreSQL holding a year of records, against plain
psycopg doing the same database work, in one run.

    python -m bench.adherence [--patients 10000] [--records 1000000] [--rounds 3]

Makes a fresh database through DORSI_BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres, an admin connection that may create
databases), migrates it, fills it with bench.adherence_data, serves Dorsi under uvicorn
with one worker and signs in as the clinic's clinician. One httpx client sends every
request, one after the other (keep-alive); the reference uses one psycopg connection.
Each case runs ``--rounds`` times, alternating Dorsi and the reference; medians are shown.

- Batch upload: 20 requests ``POST /v1/adherence/batch`` of 100 new records each (10
  records for each of 10 patients picked at random; source ``clinician``), in records per
  second, against 20 transactions of one psycopg ``executemany`` INSERT of 100 such rows.
  Target: at least 0.3 of the reference.
- Summary: ``GET /v1/patients/{id}/adherence/summary`` over the 365 local days up to today
  for ``Dataset.patient`` (1,000 records in that year), median time of 20 requests,
  against one SQL aggregate over the same rows (sessions by local date, item and status,
  with pain figures). Target: at most 3 times the reference's time.
- Overview: ``GET /v1/adherence/overview`` (the first 50 patients, lowest 7-day adherence
  first), median time of 20 requests, against one SQL query for the same page; its plan is
  printed. Target: at most 2 times the reference's time. The first request, which
  recomputes every patient's figures (all rows start stale, as after midnight), is shown
  for information.
"""

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

from app.adherence.models import Source
from bench.adherence_data import RECORD_COLUMNS, Dataset, PatientPlan, load, session_fields
from bench.harness import libpq_url, migrate, postgres_database, server

SECRET = "bench-secret-" + "x" * 32
REQUESTS, BATCH, PATIENTS_PER_BATCH = 20, 100, 10
SUMMARY_REQUESTS = 20


@dataclass
class Context:
    """What every case gets: the signed-in client, the reference connection, the data."""

    http: httpx.Client
    sql: psycopg.Connection[tuple[Any, ...]]
    data: Dataset
    rounds: int
    rng: random.Random


@dataclass(frozen=True)
class Result:
    case: str
    dorsi: float
    reference: float
    target: float | None  # None: shown for information
    at_least: bool  # the ratio must be at least the target (throughputs), or at most (times)

    @property
    def ratio(self) -> float:
        return self.dorsi / self.reference

    @property
    def ok(self) -> bool:
        if self.target is None:
            return True
        return self.ratio >= self.target if self.at_least else self.ratio <= self.target


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------- batch upload


def new_records(ctx: Context) -> list[tuple[PatientPlan, dict[str, Any]]]:
    """A batch as the API takes it: sessions of the last three days, with local offsets."""
    rng, now = ctx.rng, datetime.now(UTC)
    batch = []
    # Not Dataset.patient: the summary case reads that one.
    for person in rng.sample(ctx.data.patients[1:], PATIENTS_PER_BATCH):
        zone = ZoneInfo(person.time_zone)
        for _ in range(BATCH // PATIENTS_PER_BATCH):
            which = rng.randrange(len(person.item_ids))
            performed = now - timedelta(minutes=rng.randrange(10, 3 * 24 * 60))
            record = {
                "id": str(uuid.uuid4()),
                "plan_id": str(person.plan_id),
                "plan_version": person.plan_version,
                "item_id": str(person.item_ids[which]),
                "performed_at": performed.astimezone(zone).isoformat(),
                **session_fields(rng, ctx.data.items[which]),
            }
            batch.append((person, record))
    return batch


def stored_row(ctx: Context, person: PatientPlan, record: dict[str, Any]) -> dict[str, Any]:
    """The row Dorsi stores for an uploaded record."""
    performed = datetime.fromisoformat(record["performed_at"])
    offset = performed.utcoffset()
    assert offset is not None
    now = datetime.now(UTC)
    return {
        **record,
        "clinic_id": ctx.data.clinic_id,
        "patient_id": person.id,
        "performed_at": performed,
        "utc_offset_minutes": int(offset.total_seconds() // 60),
        "performed_on": performed.astimezone(ZoneInfo(person.time_zone)).date(),
        "source": Source.clinician.value,
        "recorded_by": ctx.data.clinician_id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


INSERT = (
    f"INSERT INTO adherence_record ({', '.join(RECORD_COLUMNS)})"
    f" VALUES ({', '.join(f'%({c})s' for c in RECORD_COLUMNS)})"
)


def batch_upload(ctx: Context) -> list[Result]:
    def dorsi() -> float:
        bodies = [{"records": [r for _, r in new_records(ctx)]} for _ in range(REQUESTS)]
        start = time.perf_counter()
        answers = [ctx.http.post("/v1/adherence/batch", json=body) for body in bodies]
        seconds = time.perf_counter() - start
        for answer in answers:
            results = answer.raise_for_status().json()["results"]
            refused = [r for r in results if r["result"] != "created"]
            if refused:
                raise SystemExit(f"The batch upload refused records: {refused[:3]}")
        return REQUESTS * BATCH / seconds

    def reference() -> float:
        batches = [[stored_row(ctx, *pair) for pair in new_records(ctx)] for _ in range(REQUESTS)]
        start = time.perf_counter()
        with ctx.sql.cursor() as cursor:
            for rows in batches:
                with ctx.sql.transaction():
                    cursor.executemany(INSERT, rows)
        return REQUESTS * BATCH / (time.perf_counter() - start)

    dorsi(), reference()  # warm-up
    ours, theirs = [], []
    for _ in range(ctx.rounds):
        ours.append(dorsi())
        theirs.append(reference())
    return [
        Result(
            f"POST /v1/adherence/batch, {BATCH}/request (records/s)",
            statistics.median(ours),
            statistics.median(theirs),
            0.3,
            at_least=True,
        )
    ]


# ---------------------------------------------------------------------------------- summary

SUMMARY_SQL = """
SELECT performed_on, item_id, status, count(*), count(pain), sum(pain), max(pain),
       count(*) FILTER (WHERE pain >= 7)
FROM adherence_record
WHERE clinic_id = %s AND patient_id = %s AND performed_on BETWEEN %s AND %s
  AND deleted_at IS NULL
GROUP BY performed_on, item_id, status
"""


def summary(ctx: Context) -> list[Result]:
    person = ctx.data.patient
    until = datetime.now(ZoneInfo(person.time_zone)).date()
    since = until - timedelta(days=364)
    path = f"/v1/patients/{person.id}/adherence/summary"
    query = {"from": since.isoformat(), "to": until.isoformat()}

    def dorsi() -> Any:
        return ctx.http.get(path, params=query).raise_for_status().json()

    def reference() -> list[tuple[Any, ...]]:
        values = (ctx.data.clinic_id, person.id, since, until)
        return ctx.sql.execute(SUMMARY_SQL, values).fetchall()

    totals = dorsi()["totals"]
    sessions = sum(totals[status] for status in ("completed", "partial", "skipped"))
    if sessions != sum(row[3] for row in reference()):
        raise SystemExit("The summary and the SQL aggregate count different sessions.")
    for _ in range(3):  # warm-up; psycopg prepares a statement from its fifth run
        dorsi(), reference()
    ours, theirs = [], []
    for _ in range(ctx.rounds):
        ours.append(statistics.median(timed(dorsi) for _ in range(SUMMARY_REQUESTS)))
        theirs.append(statistics.median(timed(reference) for _ in range(SUMMARY_REQUESTS)))
    return [
        Result(
            f"GET .../adherence/summary, 365 d, {sessions} records (ms)",
            1000 * statistics.median(ours),
            1000 * statistics.median(theirs),
            3.0,
            at_least=False,
        )
    ]


# --------------------------------------------------------------------------------- overview


OVERVIEW_PAGE = 50
# The first page of the default overview (lowest 7-day adherence first), by hand.
OVERVIEW_SQL = """
SELECT r.patient_id, p.reference, p.time_zone, r.as_of, r.expected_7d, r.credited_7d,
       r.percent_7d, r.expected_30d, r.credited_30d, r.percent_30d, r.pain_alerts_7d,
       r.max_pain_7d, r.last_upload_at
FROM adherence_rollup r JOIN patient p ON p.id = r.patient_id
WHERE r.clinic_id = %s AND p.deleted_at IS NULL
ORDER BY coalesce(r.percent_7d, 1e9), r.patient_id
LIMIT %s
"""


# What recomputing a chunk of 1,000 patients reads: their last 30 days of sessions.
REFRESH_SQL = """
SELECT patient_id, performed_on, item_id, status, count(*), max(pain),
       sum(CASE WHEN pain >= 7 THEN 1 ELSE 0 END)
FROM adherence_record
WHERE clinic_id = %s AND deleted_at IS NULL AND performed_on >= %s AND patient_id IN (
    SELECT patient_id FROM adherence_rollup WHERE clinic_id = %s ORDER BY patient_id LIMIT 1000)
GROUP BY patient_id, performed_on, item_id, status
"""


def overview(ctx: Context) -> list[Result]:
    """The first request after loading recomputes every patient's figures (all rows start
    stale, as after midnight); then pages are read from the rollup."""
    path, query = "/v1/adherence/overview", {"limit": OVERVIEW_PAGE}

    def dorsi() -> Any:
        return ctx.http.get(path, params=query).raise_for_status().json()

    def reference() -> list[tuple[Any, ...]]:
        return ctx.sql.execute(OVERVIEW_SQL, (ctx.data.clinic_id, OVERVIEW_PAGE + 1)).fetchall()

    cold = timed(dorsi)
    shown = [row["patient_id"] for row in dorsi()["items"]]
    if shown != [str(row[0]) for row in reference()[:OVERVIEW_PAGE]]:
        raise SystemExit("The overview and the SQL query show different patients.")
    page = (ctx.data.clinic_id, OVERVIEW_PAGE + 1)
    plan = ctx.sql.execute("EXPLAIN (COSTS OFF) " + OVERVIEW_SQL, page)
    print("Plan of the hand-written overview query:")
    print("\n".join(f"  {line}" for (line,) in plan.fetchall()))
    since = datetime.now(UTC).date() - timedelta(days=31)
    clinic = ctx.data.clinic_id
    plan = ctx.sql.execute("EXPLAIN (COSTS OFF) " + REFRESH_SQL, (clinic, since, clinic))
    print("Plan of the records query of a recomputation (1,000 patients):")
    print("\n".join(f"  {line}" for (line,) in plan.fetchall()))
    for _ in range(3):
        dorsi(), reference()
    ours, theirs = [], []
    for _ in range(ctx.rounds):
        ours.append(statistics.median(timed(dorsi) for _ in range(SUMMARY_REQUESTS)))
        theirs.append(statistics.median(timed(reference) for _ in range(SUMMARY_REQUESTS)))
    patients = len(ctx.data.patients)
    return [
        Result(
            f"GET /v1/adherence/overview, {patients} patients, first (ms)",
            1000 * cold,
            1000 * statistics.median(theirs),
            None,
            at_least=False,
        ),
        Result(
            f"GET /v1/adherence/overview, {patients} patients (ms)",
            1000 * statistics.median(ours),
            1000 * statistics.median(theirs),
            2.0,
            at_least=False,
        ),
    ]


# ------------------------------------------------------------------------------------- run

CASES = (batch_upload, summary, overview)


def sign_in(base: str, data: Dataset) -> str:
    form = {"grant_type": "password", "username": data.email, "password": data.password}
    token: str = (
        httpx.post(base + "/v1/auth/token", data=form).raise_for_status().json()["access_token"]
    )
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.patients <= PATIENTS_PER_BATCH:
        parser.error(f"--patients must be more than {PATIENTS_PER_BATCH}")

    with postgres_database() as database_url:
        migrate(database_url, SECRET)
        data = load(database_url, patients=args.patients, records=args.records, seed=args.seed)
        env = {
            "DORSI_DATABASE_URL": database_url,
            "DORSI_SECRET_KEY": SECRET,
            "DORSI_ENVIRONMENT": "test",
        }
        with (
            server("app.main:app", env) as base,
            psycopg.connect(libpq_url(database_url), autocommit=True) as sql,
        ):
            auth = {"Authorization": f"Bearer {sign_in(base, data)}"}
            with httpx.Client(base_url=base, headers=auth, timeout=60) as http:
                ctx = Context(http, sql, data, args.rounds, random.Random(args.seed))
                results = [result for case in CASES for result in case(ctx)]

    print(f"{'case':60} {'dorsi':>9} {'reference':>9} {'ratio':>6} {'target':>7}")
    for r in results:
        if r.target is None:
            print(f"{r.case:60} {r.dorsi:9.1f} {r.reference:9.1f} {r.ratio:6.2f}")
            continue
        target = f"{'>=' if r.at_least else '<='} {r.target:g}"
        print(
            f"{r.case:60} {r.dorsi:9.1f} {r.reference:9.1f} {r.ratio:6.2f} {target:>7}"
            f"  {'ok' if r.ok else 'BELOW TARGET'}"
        )
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
