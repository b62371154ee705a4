"""Load benchmark: the adherence API on PostgreSQL holding a year of records, against plain
psycopg doing the same database work, in one run.

    python -m bench.adherence [--patients 10000] [--records 1000000] [--rounds 3]

Makes a fresh database through DORSI_BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres, an admin connection that may create
databases), migrates it, fills it with bench.adherence_data, serves Dorsi under uvicorn
with one worker and signs in as the clinic's clinician. Requests go one after the other on
one keep-alive connection of the standard library's http.client (`Api`), which adds less
to a few milliseconds than httpx (about 1 ms a request here); the reference uses one
psycopg connection. Each case runs ``--rounds`` times; within a round the batch uploads
and the summaries take turns with the reference request by request, so that both meet the
same moments of the machine. Medians are shown.

- Batch upload: 20 requests ``POST /v1/adherence/batch`` of 100 new records each (10
  records for each of 10 patients picked at random; source ``clinician``), in records per
  second, against 20 transactions of one psycopg ``executemany`` INSERT of 100 such rows.
  Target: at least 0.3 of the reference.
- Replay storm: 16 uploaders send the same 2,000 new records of one patient at once, each
  on its own connection, in its own shuffled order, 100 a request (32,000 record answers,
  each record `created` once and `unchanged` 15 times), against one uploader sending those
  2,000 once (another 2,000 of the same kind), in record answers per second. Target: at
  least 0.5 of the single uploader's: a replayed record costs no more than a new one.
- Summary: ``GET /v1/patients/{id}/adherence/summary`` over the 365 local days up to today
  for ``Dataset.patient`` (1,000 records in that year), median time of 20 requests a round,
  against one SQL aggregate over the same rows (sessions by local date, item and status,
  with pain figures), the two taking turns request by request. Target: at most 3 times
  the reference's time. Shown for information: the same requests timed through httpx.
- Overview: ``GET /v1/adherence/overview`` (the first 50 patients, lowest 7-day adherence
  first), median time of 20 requests, against one hand-written SQL query that computes the
  same page from the adherence records, as without Dorsi's precomputed ``adherence_rollup``:
  every living patient's expected and credited sessions over the 7 and the 30 complete
  local days before their today (the summary's rules, for plans like the bench's), pain
  alerts of the last 7 days, sorted and cut; then the page's last uploads. It reads each
  patient's records of the last 30 days through ``ix_adherence_record_patient_day``, never
  the whole table; its plan is printed. Median time of 5 runs (each takes about a second)
  with JIT compilation off for the session, which would take longer than the query.
  Target: at most 2 times the reference's time. The query must show the same patients in
  the same order with the same 7- and 30-day adherence. Shown for information: the first
  request, which recomputes every patient's figures (all rows start stale, as after
  midnight), and the page read off ``adherence_rollup`` by hand, Dorsi's own table.
"""

import argparse
import http.client
import json
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import psycopg

from app.adherence.models import Source
from app.core.db import libpq_url
from bench.adherence_data import RECORD_COLUMNS, Dataset, PatientPlan, load, session_fields
from bench.harness import migrate, postgres_database, server

SECRET = "bench-secret-" + "x" * 32
REQUESTS, BATCH, PATIENTS_PER_BATCH = 20, 100, 10
SUMMARY_REQUESTS = 20


class Api:
    """Requests on one keep-alive HTTP/1.1 connection of the standard library, JSON both
    ways: a client that adds little to what it times. (httpx adds about 1 ms to every
    request here, a third of the summary's reference.)"""

    def __init__(self, base: str, token: str) -> None:
        address = urlsplit(base)
        assert address.hostname is not None
        self.base, self.token = base, token
        self.connection = http.client.HTTPConnection(address.hostname, address.port)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def get(self, path: str, query: dict[str, Any]) -> Any:
        return self._request("GET", f"{path}?{urlencode(query)}", None)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, json.dumps(body).encode())

    def _request(self, method: str, target: str, body: bytes | None) -> Any:
        try:
            self.connection.request(method, target, body, headers=self.headers)
            answer = self.connection.getresponse()
        except ConnectionError:
            # The server closes a connection left idle for seconds (between cases), before
            # reading anything sent on it: anew.
            self.connection.close()
            self.connection.request(method, target, body, headers=self.headers)
            answer = self.connection.getresponse()
        content = answer.read()
        if answer.status != 200:
            raise SystemExit(f"{method} {target} answered {answer.status}: {content[:200]!r}")
        return json.loads(content)

    def close(self) -> None:
        self.connection.close()


@dataclass
class Context:
    """What every case gets: the signed-in clients, the reference connection, the data."""

    http: httpx.Client
    api: Api
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


def in_ms(case: str, ours: list[float], theirs: list[float], target: float | None) -> Result:
    """Times in seconds, shown as their medians in milliseconds; at most ``target`` times
    the reference's."""
    median = statistics.median
    return Result(f"{case} (ms)", 1000 * median(ours), 1000 * median(theirs), target, False)


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
    def dorsi(body: dict[str, Any]) -> float:
        start = time.perf_counter()
        results = ctx.api.post("/v1/adherence/batch", body)["results"]
        seconds = time.perf_counter() - start
        refused = [r for r in results if r["result"] != "created"]
        if refused:
            raise SystemExit(f"The batch upload refused records: {refused[:3]}")
        return seconds

    def reference(cursor: psycopg.Cursor[Any], rows: list[dict[str, Any]]) -> float:
        start = time.perf_counter()
        with ctx.sql.transaction():
            cursor.executemany(INSERT, rows)
        return time.perf_counter() - start

    def round_() -> tuple[float, float]:
        """Records per second of each, request by request in turn."""
        bodies = [{"records": [r for _, r in new_records(ctx)]} for _ in range(REQUESTS)]
        batches = [[stored_row(ctx, *pair) for pair in new_records(ctx)] for _ in range(REQUESTS)]
        ours = theirs = 0.0
        with ctx.sql.cursor() as cursor:
            for body, rows in zip(bodies, batches, strict=True):
                ours += dorsi(body)
                theirs += reference(cursor, rows)
        return REQUESTS * BATCH / ours, REQUESTS * BATCH / theirs

    round_()  # warm-up
    ours, theirs = zip(*(round_() for _ in range(ctx.rounds)), strict=True)
    return [
        Result(
            f"POST /v1/adherence/batch, {BATCH}/request (records/s)",
            statistics.median(ours),
            statistics.median(theirs),
            0.3,
            at_least=True,
        )
    ]


# ----------------------------------------------------------------------------- replay storm

STORM_UPLOADERS, STORM_RECORDS = 16, 2_000


def storm(ctx: Context) -> list[Result]:
    person = ctx.data.patients[2]  # not the summary's, not one the batch case picks often
    zone, now = ZoneInfo(person.time_zone), datetime.now(UTC)

    def sessions() -> list[dict[str, Any]]:
        made = []
        for n in range(STORM_RECORDS):
            which = n % len(person.item_ids)
            performed = now - timedelta(minutes=10 + 211 * n)
            made.append(
                {
                    "id": str(uuid.uuid4()),
                    "plan_id": str(person.plan_id),
                    "plan_version": person.plan_version,
                    "item_id": str(person.item_ids[which]),
                    "performed_at": performed.astimezone(zone).isoformat(),
                    **session_fields(ctx.rng, ctx.data.items[which]),
                }
            )
        return made

    def upload(api: Api, records: list[dict[str, Any]]) -> list[str]:
        answers = []
        for start in range(0, len(records), BATCH):
            body = {"records": records[start : start + BATCH]}
            answers += [r["result"] for r in api.post("/v1/adherence/batch", body)["results"]]
        return answers

    single = sessions()
    alone = timed(lambda: upload(ctx.api, single))

    records = sessions()
    orders = []
    for seed in range(STORM_UPLOADERS):
        mine = records[:]
        random.Random(seed).shuffle(mine)
        orders.append(mine)
    apis = [Api(ctx.api.base, ctx.api.token) for _ in orders]
    with ThreadPoolExecutor(STORM_UPLOADERS) as pool:
        start = time.perf_counter()
        answers = list(pool.map(upload, apis, orders))
        together = time.perf_counter() - start
    for api in apis:
        api.close()
    outcomes = Counter(result for uploader in answers for result in uploader)
    expected = {"created": STORM_RECORDS, "unchanged": STORM_RECORDS * (STORM_UPLOADERS - 1)}
    if outcomes != expected:
        raise SystemExit(f"The storm's answers were {dict(outcomes)}, not {expected}")
    return [
        Result(
            f"replay storm, {STORM_UPLOADERS} x {STORM_RECORDS} (record answers/s)",
            STORM_UPLOADERS * STORM_RECORDS / together,
            STORM_RECORDS / alone,
            0.5,
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
        return ctx.api.get(path, query)

    def through_httpx() -> Any:
        return ctx.http.get(path, params=query).raise_for_status().json()

    def reference() -> list[tuple[Any, ...]]:
        values = (ctx.data.clinic_id, person.id, since, until)
        return ctx.sql.execute(SUMMARY_SQL, values).fetchall()

    totals = dorsi()["totals"]
    sessions = sum(totals[status] for status in ("completed", "partial", "skipped"))
    if sessions != sum(row[3] for row in reference()):
        raise SystemExit("The summary and the SQL aggregate count different sessions.")
    if through_httpx() != dorsi():
        raise SystemExit("The summary differs between the two clients.")
    for _ in range(3):  # warm-up; psycopg prepares a statement from its fifth run
        dorsi(), through_httpx(), reference()
    ours: list[float] = []
    httpx_: list[float] = []
    theirs: list[float] = []
    for _ in range(ctx.rounds):
        # Request by request in turn, so that all three meet the same moments of the machine.
        times = [
            (timed(dorsi), timed(through_httpx), timed(reference)) for _ in range(SUMMARY_REQUESTS)
        ]
        for median, column in zip((ours, httpx_, theirs), zip(*times, strict=True), strict=True):
            median.append(statistics.median(column))
    return [
        in_ms(f"GET .../adherence/summary, 365 d, {sessions} records", ours, theirs, 3.0),
        in_ms("  the same, timed through httpx", httpx_, theirs, None),
    ]


# --------------------------------------------------------------------------------- overview


OVERVIEW_PAGE = 50
# Runs of the records query a round: each computes every patient's figures (about a second).
OVERVIEW_QUERIES = 5
# The first page of the default overview (lowest 7-day adherence first) computed from the
# adherence records in one hand-written query, as without Dorsi's rollup: every living
# patient's figures by the summary's rules (app/adherence/summary.py), the page sorted
# and cut, then the page's last uploads. Parameters: the clinic, the time now, the page
# size. For plans like the bench's: one active plan per patient whose current version
# (active, started before the windows, no end) governs both windows, weekday items with
# distinct weekdays. Each patient's records of the last 30 days are read through
# ix_adherence_record_patient_day (clinic_id, patient_id, performed_on).
OVERVIEW_FROM_RECORDS_SQL = """
WITH patient_day AS MATERIALIZED (
    -- The clinic's living patients, with their local today and the ISO weekday of the
    -- first day of each window (the 7 and the 30 complete days before today).
    SELECT p.id AS patient_id, p.reference, p.time_zone, c.pain_alert_at, t.today,
           extract(isodow FROM t.today - 7)::int AS first_7d,
           extract(isodow FROM t.today - 30)::int AS first_30d
    FROM patient p
    JOIN clinic c ON c.id = p.clinic_id
    CROSS JOIN LATERAL (
        SELECT (%(now)s::timestamptz AT TIME ZONE p.time_zone)::date AS today
    ) t
    WHERE p.clinic_id = %(clinic_id)s AND p.deleted_at IS NULL
),
item AS MATERIALIZED (
    -- The items of each patient's active plan, as its current version has them, and
    -- what each expects of the two windows. A weekday item: times_per_day on each of its
    -- weekdays (7 days hold every weekday once; 30 days, 4 times and the weekdays of
    -- their first 2 days once more). A sessions-per-week item: sessions_per_week *
    -- times_per_day in each ISO week, prorated by the week's days in the window and
    -- rounded half up: the first week's part (from the window's first weekday w to
    -- Sunday, 8 - w days), whole weeks, the rest. In integers, floor(n * days / 7 + 0.5)
    -- is (2 * n * days + 7) / 14.
    SELECT patient_id, item_id, weekdays, times, per_week,
           CASE WHEN weekdays IS NOT NULL THEN times * jsonb_array_length(weekdays)
                ELSE (2 * per_week * (8 - first_7d) + 7) / 14
                     + (2 * per_week * (first_7d - 1) + 7) / 14
           END AS expected_7d,
           CASE WHEN weekdays IS NOT NULL
                THEN times * (4 * jsonb_array_length(weekdays)
                              + (weekdays @> to_jsonb(first_30d))::int
                              + (weekdays @> to_jsonb(first_30d %% 7 + 1))::int)
                ELSE (2 * per_week * (8 - first_30d) + 7) / 14
                     + per_week * ((22 + first_30d) / 7)
                     + (2 * per_week * ((22 + first_30d) %% 7) + 7) / 14
           END AS expected_30d
    FROM (
        SELECT patient_id, first_7d, first_30d, (e ->> 'id')::uuid AS item_id,
               nullif(e #> '{schedule,days_of_week}', 'null') AS weekdays,
               coalesce((e #>> '{schedule,times_per_day}')::int, 1) AS times,
               coalesce((e #>> '{schedule,times_per_day}')::int, 1)
                   * (e #>> '{schedule,sessions_per_week}')::int AS per_week
        FROM (
            SELECT pd.*, jsonb_array_elements(v.items) AS e
            FROM patient_day pd
            JOIN plan pl ON pl.patient_id = pd.patient_id AND pl.status = 'active'
            JOIN plan_version v ON v.plan_id = pl.id AND v.number = pl.version
            WHERE v.status = 'active'
        ) elements
        OFFSET 0  -- each field extracted once, not once per use
    ) items
),
done AS MATERIALIZED (
    -- Sessions from 30 days before today on, read patient by patient through the index,
    -- by local date and item: what they earn in half sessions (2 for a completed one,
    -- 1 for a partial one), and their pain.
    SELECT pd.patient_id, r.performed_on AS day, r.item_id, min(pd.today) AS today,
           2 * count(*) FILTER (WHERE r.status = 'completed')
           + count(*) FILTER (WHERE r.status = 'partial') AS halves,
           max(r.pain) AS max_pain, count(*) FILTER (WHERE r.alert) AS pain_alerts
    FROM patient_day pd
    CROSS JOIN LATERAL (
        SELECT r.performed_on, r.item_id, r.status, r.pain,
               r.pain >= pd.pain_alert_at AS alert
        FROM adherence_record r
        WHERE r.clinic_id = %(clinic_id)s AND r.patient_id = pd.patient_id
          AND r.performed_on >= pd.today - 30 AND r.deleted_at IS NULL
        OFFSET 0  -- an index scan per patient
    ) r
    GROUP BY pd.patient_id, r.performed_on, r.item_id
),
earned AS MATERIALIZED (
    -- What the days before today earned, with their item's schedule (sessions of items
    -- not in the plan earn nothing).
    SELECT d.patient_id, d.item_id, d.day, d.today, d.halves, i.times, i.per_week,
           i.weekdays @> to_jsonb(extract(isodow FROM d.day)::int) AS scheduled
    FROM done d JOIN item i USING (patient_id, item_id)
    WHERE d.day < d.today
),
figure AS (
    -- The patients' figures, as rows to add up: what the items expect,
    SELECT patient_id, expected_7d, expected_30d, 0 AS halves_7d, 0 AS halves_30d,
           0 AS pain_alerts_7d, NULL::int AS max_pain_7d
    FROM item
    UNION ALL
    -- what weekday items earn on their weekdays, up to the day's times,
    SELECT patient_id, 0, 0,
           CASE WHEN day >= today - 7 THEN least(halves, 2 * times) ELSE 0 END,
           least(halves, 2 * times), 0, NULL
    FROM earned WHERE scheduled
    UNION ALL
    -- what sessions-per-week items earn, up to what each ISO week (or its part in the
    -- window) expects,
    SELECT patient_id, 0, 0,
           least(halves_7d, 2 * ((2 * per_week * greatest(0,
               least(today - 1, week + 6) - greatest(today - 7, week) + 1) + 7) / 14)),
           least(halves_30d, 2 * ((2 * per_week
               * (least(today - 1, week + 6) - greatest(today - 30, week) + 1) + 7) / 14)),
           0, NULL
    FROM (
        SELECT patient_id, item_id, day - extract(isodow FROM day)::int + 1 AS week,
               min(today) AS today, min(per_week) AS per_week,
               coalesce(sum(halves) FILTER (WHERE day >= today - 7), 0) AS halves_7d,
               sum(halves) AS halves_30d
        FROM earned WHERE per_week IS NOT NULL
        GROUP BY patient_id, item_id, week
    ) weeks
    UNION ALL
    -- and the pain of the last 7 days, today included.
    SELECT patient_id, 0, 0, 0, 0, pain_alerts, max_pain
    FROM done WHERE day > today - 7
),
patient_figures AS (
    SELECT patient_id,
           sum(expected_7d)::float8 AS expected_7d, sum(halves_7d)::float8 / 2 AS credited_7d,
           sum(expected_30d)::float8 AS expected_30d,
           sum(halves_30d)::float8 / 2 AS credited_30d,
           sum(pain_alerts_7d)::int AS pain_alerts_7d, max(max_pain_7d) AS max_pain_7d
    FROM figure
    GROUP BY patient_id
),
page AS (
    -- round(x * 10) / 10 rounds half to even as Python's round(x, 1) does (the same
    -- figure unless 1,000 sessions or a multiple were expected).
    SELECT pd.patient_id, pd.reference, pd.time_zone, pd.today AS as_of,
           coalesce(f.expected_7d, 0) AS expected_7d,
           coalesce(f.credited_7d, 0) AS credited_7d,
           CASE WHEN f.expected_7d > 0
                THEN round(100 * f.credited_7d / f.expected_7d * 10) / 10 END AS percent_7d,
           coalesce(f.expected_30d, 0) AS expected_30d,
           coalesce(f.credited_30d, 0) AS credited_30d,
           CASE WHEN f.expected_30d > 0
                THEN round(100 * f.credited_30d / f.expected_30d * 10) / 10 END AS percent_30d,
           coalesce(f.pain_alerts_7d, 0) AS pain_alerts_7d, f.max_pain_7d
    FROM patient_day pd LEFT JOIN patient_figures f USING (patient_id)
    ORDER BY coalesce(CASE WHEN f.expected_7d > 0
                      THEN round(100 * f.credited_7d / f.expected_7d * 10) / 10 END, 1e9),
             pd.patient_id
    LIMIT %(limit)s
)
SELECT page.*,
       (SELECT max(r.created_at) FROM adherence_record r
        WHERE r.clinic_id = %(clinic_id)s AND r.patient_id = page.patient_id) AS last_upload_at
FROM page
ORDER BY coalesce(page.percent_7d, 1e9), page.patient_id
"""
# For information: the same page read off Dorsi's own precomputed table, adherence_rollup.
OVERVIEW_ROLLUP_SQL = """
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
    stale, as after midnight); then pages are read from the rollup. The reference computes
    the page from the records; a read of the rollup is shown for information."""
    path, query = "/v1/adherence/overview", {"limit": OVERVIEW_PAGE}
    clinic = ctx.data.clinic_id

    def dorsi() -> Any:
        return ctx.api.get(path, query)

    def from_records() -> list[tuple[Any, ...]]:
        values = {"clinic_id": clinic, "now": datetime.now(UTC), "limit": OVERVIEW_PAGE + 1}
        return ctx.sql.execute(OVERVIEW_FROM_RECORDS_SQL, values).fetchall()

    def from_rollup() -> list[tuple[Any, ...]]:
        return ctx.sql.execute(OVERVIEW_ROLLUP_SQL, (clinic, OVERVIEW_PAGE + 1)).fetchall()

    # JIT compilation of the records query (its estimated cost is far above
    # jit_above_cost) would take longer than running it: the reference runs without.
    ctx.sql.execute("SET jit = off")
    try:
        cold = timed(dorsi)
        # The patients, in order, with their 7- and 30-day adherence.
        windows = ("last_7_days", "last_30_days")
        shown = [
            (row["patient_id"], *(row[days]["adherence_percent"] for days in windows))
            for row in dorsi()["items"]
        ]
        computed = [(str(row[0]), row[6], row[9]) for row in from_records()[:OVERVIEW_PAGE]]
        if shown != computed:
            pairs = enumerate(zip(shown, computed, strict=False))
            first = next((n for n, (a, b) in pairs if a != b), min(len(shown), len(computed)))
            raise SystemExit(
                "The overview and the query over the records show different patients or"
                f" figures, from row {first}: {shown[first : first + 1]} against"
                f" {computed[first : first + 1]}."
            )
        if [row[0] for row in shown] != [str(row[0]) for row in from_rollup()[:OVERVIEW_PAGE]]:
            raise SystemExit("The overview and the read of its rollup show different patients.")
        values = {"clinic_id": clinic, "now": datetime.now(UTC), "limit": OVERVIEW_PAGE + 1}
        plan = ctx.sql.execute("EXPLAIN (COSTS OFF) " + OVERVIEW_FROM_RECORDS_SQL, values)
        print("Plan of the hand-written overview query over the records (the reference):")
        print("\n".join(f"  {line}" for (line,) in plan.fetchall()))
        plan = ctx.sql.execute(
            "EXPLAIN (COSTS OFF) " + OVERVIEW_ROLLUP_SQL, (clinic, OVERVIEW_PAGE + 1)
        )
        print("Plan of the read of the page off adherence_rollup:")
        print("\n".join(f"  {line}" for (line,) in plan.fetchall()))
        since = datetime.now(UTC).date() - timedelta(days=31)
        plan = ctx.sql.execute("EXPLAIN (COSTS OFF) " + REFRESH_SQL, (clinic, since, clinic))
        print("Plan of the records query of a recomputation (1,000 patients):")
        print("\n".join(f"  {line}" for (line,) in plan.fetchall()))
        for _ in range(3):
            dorsi(), from_records(), from_rollup()
        ours, records, rollup = [], [], []
        for _ in range(ctx.rounds):
            ours.append(statistics.median(timed(dorsi) for _ in range(SUMMARY_REQUESTS)))
            records.append(statistics.median(timed(from_records) for _ in range(OVERVIEW_QUERIES)))
            rollup.append(statistics.median(timed(from_rollup) for _ in range(SUMMARY_REQUESTS)))
    finally:
        ctx.sql.execute("RESET jit")
    patients = len(ctx.data.patients)
    return [
        in_ms(f"GET /v1/adherence/overview, {patients} patients, first", [cold], records, None),
        in_ms(f"GET /v1/adherence/overview, {patients} patients", ours, records, 2.0),
        in_ms("  the same, reference read off Dorsi's adherence_rollup", ours, rollup, None),
    ]


# ------------------------------------------------------------------------------------- run

CASES = (batch_upload, storm, summary, overview)


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
            token = sign_in(base, data)
            auth = {"Authorization": f"Bearer {token}"}
            api = Api(base, token)
            with httpx.Client(base_url=base, headers=auth, timeout=60) as http:
                ctx = Context(http, api, sql, data, args.rounds, random.Random(args.seed))
                results = [result for case in CASES for result in case(ctx)]
            api.close()

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
