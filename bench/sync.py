"""Sync benchmark: a clinic system's export and change feed on PostgreSQL, against plain
psycopg doing the same reads, in one run.

    python -m bench.sync [--patients 10000] [--records 1000000] [--changes 100000]
                         [--polls 50]

Makes a fresh database through DORSI_BENCH_POSTGRES_URL (as bench.adherence does),
migrates it, fills it with bench.adherence_data (whose outbox holds a change for every
plan version and record), creates an API client holding ``changes:read`` with
``dorsi create-client`` and serves Dorsi under uvicorn with one worker. The API's answers
are read through the standard library's http.client, which adds little to what is timed.

- Export: ``GET /v1/export/adherence_record.ndjson`` of every record (``--records``), in
  rows per second, against a psycopg server-side cursor over the same rows (500 a fetch)
  writing each row with orjson to /dev/null. Target: at least 0.5 of the reference.
- Memory: the uvicorn process's resident set (VmRSS in /proc/<pid>/status), sampled every
  20 ms while the export streams, highest minus before the export. Target: below 64 MiB.
- Follower: ``GET /v1/changes?limit=1000`` from the oldest change, page after page, until
  ``--changes`` changes are read (plan versions, then records in upload order), in changes
  per second, against a hand query paging the ``change`` table by id, 1,000 at a time,
  joined to the record each change names (the feed renders it), each row written with
  orjson to /dev/null. Target: at least 0.3 of the reference. Shown for information: the
  same paging without the join.
- Long poll: a reader waits on ``GET /v1/changes?wait=30`` from the newest cursor; then a
  clinician uploads one record (``POST /v1/adherence/batch``). The latency runs from
  sending that upload (its commit is within it) to the reader's answer, ``--polls``
  times after a warm-up. Target: p99 below 250 ms.
"""

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import orjson
import psycopg
from psycopg.rows import dict_row

from app.core.db import libpq_url
from bench.adherence_data import RECORD_COLUMNS, Dataset, load, session_fields
from bench.harness import PYTHON, ROOT, migrate, postgres_database, server

SECRET = "bench-secret-" + "x" * 32
MiB = 1024 * 1024
FETCH = 500  # rows a server-side cursor fetch, as an export reads them
PAGE = 1000  # changes a page


@dataclass(frozen=True)
class Result:
    case: str
    dorsi: float
    reference: float | None  # None: an absolute figure, not a ratio
    target: float | None  # None: shown for information
    at_least: bool  # the figure must be at least the target, or below it

    @property
    def figure(self) -> float:
        return self.dorsi if self.reference is None else self.dorsi / self.reference

    @property
    def ok(self) -> bool:
        if self.target is None:
            return True
        return self.figure >= self.target if self.at_least else self.figure < self.target


def get(base: str, target: str, headers: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """One GET on a connection of its own: its JSON and headers."""
    address = urlsplit(base)
    assert address.hostname is not None
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    try:
        connection.request("GET", target, headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise SystemExit(f"GET {target} answered {answer.status}: {body[:200]!r}")
        return orjson.loads(body), {k.lower(): v for k, v in answer.getheaders()}
    finally:
        connection.close()


def server_pid(base: str) -> int:
    """The uvicorn process serving ``base`` (one worker: the process itself)."""
    port = str(urlsplit(base).port)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"uvicorn" in words and b"--port" in words and port.encode() in words:
            return int(entry.name)
    raise SystemExit(f"No uvicorn process on port {port}.")


def rss(pid: int) -> int:
    """The process's resident set in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"No VmRSS for process {pid}.")


# ------------------------------------------------------------------------------------ export


def export_reference(sql_url: str, data: Dataset) -> tuple[int, float]:
    """The clinic's live records through a psycopg server-side cursor, each written with
    orjson to /dev/null: rows, seconds."""
    rows = 0
    columns = ", ".join(f"r.{c}" for c in RECORD_COLUMNS)
    query = (
        f"SELECT {columns}, r.deleted_at FROM adherence_record r"
        " JOIN patient p ON p.clinic_id = r.clinic_id AND p.id = r.patient_id"
        " WHERE r.clinic_id = %s AND r.deleted_at IS NULL AND p.deleted_at IS NULL"
    )
    with (
        psycopg.connect(sql_url) as connection,
        open(os.devnull, "wb") as sink,
        connection.cursor("export", row_factory=dict_row) as cursor,
    ):
        start = time.perf_counter()
        cursor.itersize = FETCH
        cursor.execute(query, (data.clinic_id,))
        for row in cursor:
            sink.write(orjson.dumps(row) + b"\n")
            rows += 1
        seconds = time.perf_counter() - start
    return rows, seconds


def against_export_reference(
    pid: int, dorsi: Callable[[], tuple[int, float]], sql_url: str, data: Dataset
) -> tuple[int, float, int, float, float]:
    """Dorsi's export (``dorsi``: lines, seconds), with the server's RSS sampled every
    20 ms meanwhile, then the reference, after a warm-up that puts the table in the page
    cache for both: lines, seconds, rows, seconds, and the RSS growth in MiB."""
    export_reference(sql_url, data)
    before = rss(pid)
    peak, exporting = before, True

    def sample() -> None:
        nonlocal peak
        while exporting:
            peak = max(peak, rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        lines, ours = dorsi()
    finally:
        exporting = False
        sampler.join()
    rows, theirs = export_reference(sql_url, data)
    return lines, ours, rows, theirs, (peak - before) / MiB


def export(base: str, token: str, pid: int, sql_url: str, data: Dataset) -> list[Result]:
    address = urlsplit(base)
    host, port = address.hostname, address.port
    assert host is not None
    path = "/v1/export/adherence_record.ndjson"
    auth = {"Authorization": f"Bearer {token}"}

    def dorsi() -> tuple[int, float]:
        connection = http.client.HTTPConnection(host, port, timeout=600)
        start = time.perf_counter()
        connection.request("GET", path, headers=auth)
        answer = connection.getresponse()
        if answer.status != 200:
            raise SystemExit(f"GET {path} answered {answer.status}: {answer.read()[:200]!r}")
        lines = 0
        while chunk := answer.read1(1 << 16):
            lines += chunk.count(b"\n")
        seconds = time.perf_counter() - start
        connection.close()
        return lines, seconds

    lines, ours, rows, theirs, grown = against_export_reference(pid, dorsi, sql_url, data)
    if not lines == rows == sum(p.records for p in data.patients):
        raise SystemExit(f"The export sent {lines} lines, the reference read {rows} rows.")
    return [
        Result(f"export of {rows:,} records (rows/s)", lines / ours, rows / theirs, 0.5, True),
        Result(
            "  server RSS during the export minus before (MiB)",
            grown,
            None,
            64,
            False,
        ),
    ]


# ---------------------------------------------------------------------------------- follower

CHANGE_PAGE_SQL = """
SELECT c.id, c.resource_type, c.resource_id, c.operation, c.version, c.occurred_at, c.data
FROM change c
WHERE c.clinic_id = %(clinic)s AND c.id > %(after)s
ORDER BY c.id LIMIT %(limit)s
"""
RENDERED_PAGE_SQL = """
SELECT c.id, c.resource_type, c.resource_id, c.operation, c.version, c.occurred_at,
       coalesce(to_jsonb(r), c.data) AS data
FROM change c
LEFT JOIN adherence_record r
  ON c.resource_type = 'adherence_record' AND c.operation <> 'delete'
 AND r.clinic_id = c.clinic_id AND r.id = c.resource_id::uuid AND r.version = c.version
WHERE c.clinic_id = %(clinic)s AND c.id > %(after)s
ORDER BY c.id LIMIT %(limit)s
"""


def follower(base: str, token: str, sql_url: str, data: Dataset, changes: int) -> list[Result]:
    auth = {"Authorization": f"Bearer {token}"}

    def dorsi() -> tuple[int, float]:
        address = urlsplit(base)
        assert address.hostname is not None
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        read, cursor = 0, None
        start = time.perf_counter()
        while read < changes:
            query: dict[str, Any] = {"limit": PAGE}
            if cursor is not None:
                query["cursor"] = cursor
            connection.request("GET", f"/v1/changes?{urlencode(query)}", headers=auth)
            answer = connection.getresponse()
            body = answer.read()
            if answer.status != 200:
                raise SystemExit(f"GET /v1/changes answered {answer.status}: {body[:200]!r}")
            page = orjson.loads(body)
            if not page["items"]:
                break
            read += len(page["items"])
            cursor = page["next_cursor"]
        seconds = time.perf_counter() - start
        connection.close()
        return read, seconds

    def reference(statement: str) -> tuple[int, float]:
        read, after = 0, 0
        with (
            psycopg.connect(sql_url, autocommit=True) as connection,
            open(os.devnull, "wb") as sink,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            start = time.perf_counter()
            while read < changes:
                values = {"clinic": data.clinic_id, "after": after, "limit": PAGE}
                rows = cursor.execute(statement, values).fetchall()
                if not rows:
                    break
                sink.write(orjson.dumps(rows))
                read += len(rows)
                after = rows[-1]["id"]
            seconds = time.perf_counter() - start
        return read, seconds

    reference(RENDERED_PAGE_SQL)  # warm-up
    ours_read, ours = dorsi()
    theirs_read, theirs = reference(RENDERED_PAGE_SQL)
    bare_read, bare = reference(CHANGE_PAGE_SQL)
    if not ours_read == theirs_read == bare_read:
        raise SystemExit(f"The feed read {ours_read} changes, the reference {theirs_read}.")
    return [
        Result(
            f"follower draining {ours_read:,} changes, {PAGE}/page (changes/s)",
            ours_read / ours,
            theirs_read / theirs,
            0.3,
            True,
        ),
        Result(
            "  the same, reference without the record's join",
            ours_read / ours,
            bare_read / bare,
            None,
            True,
        ),
    ]


# --------------------------------------------------------------------------------- long poll


def long_poll(base: str, token: str, staff: str, data: Dataset, polls: int) -> list[Result]:
    reader = {"Authorization": f"Bearer {token}"}
    writer = {"Authorization": f"Bearer {staff}", "Content-Type": "application/json"}
    rng = random.Random(7)
    person = data.patients[1]
    zone = ZoneInfo(person.time_zone)
    # The newest cursor: past every change there is.
    cursor: str | None = None
    while True:
        query = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
        page, _ = get(base, f"/v1/changes?{urlencode(query)}", reader)
        cursor = page["next_cursor"]
        if not page["items"]:
            break

    def once(n: int) -> float:
        nonlocal cursor
        answered: dict[str, Any] = {}

        def wait() -> None:
            target = f"/v1/changes?{urlencode({'cursor': cursor, 'wait': 30})}"
            answered["page"], _ = get(base, target, reader)
            answered["at"] = time.perf_counter()

        waiting = threading.Thread(target=wait)
        waiting.start()
        time.sleep(0.3)  # the reader has read its empty page and waits
        which = n % len(person.item_ids)
        record = {
            "id": str(uuid.uuid4()),
            "plan_id": str(person.plan_id),
            "plan_version": person.plan_version,
            "item_id": str(person.item_ids[which]),
            "performed_at": (datetime.now(UTC) - timedelta(minutes=10 + n))
            .astimezone(zone)
            .isoformat(),
            **session_fields(rng, data.items[which]),
        }
        sent = time.perf_counter()
        upload = httpx.post(
            base + "/v1/adherence/batch", content=json.dumps({"records": [record]}), headers=writer
        )
        upload.raise_for_status()
        waiting.join(40)
        page = answered.get("page")
        if page is None or [item["id"] for item in page["items"]] != [record["id"]]:
            raise SystemExit(f"The waiting reader did not answer with the upload: {page}")
        cursor = page["next_cursor"]
        return float(answered["at"] - sent)

    for n in range(3):  # warm-up: the listener starts with the first reader that waits
        once(n)
    times = sorted(once(n) for n in range(3, 3 + polls))
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return [
        Result(
            f"long poll, commit to answer, {polls} tries, p99 (ms)", 1000 * p99, None, 250, False
        ),
        Result("  the same, median (ms)", 1000 * statistics.median(times), None, None, False),
    ]


# --------------------------------------------------------------------------------------- run


def api_client(
    database_url: str, clinic_id: uuid.UUID, scopes: tuple[str, ...] = ("changes:read",)
) -> tuple[str, str]:
    """An API client of the clinic holding ``scopes``, made by ``dorsi create-client``."""
    output = subprocess.run(
        [
            PYTHON,
            "-m",
            "app.cli",
            "create-client",
            "--clinic-id",
            str(clinic_id),
            "--name",
            "Bench EHR",
            *(word for scope in scopes for word in ("--scope", scope)),
        ],
        cwd=ROOT,
        env={**os.environ, "DORSI_DATABASE_URL": database_url, "DORSI_SECRET_KEY": SECRET},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fields = dict(line.split(" ", 1) for line in output.strip().splitlines())
    return fields["client_id"], fields["client_secret"]


def token_for(base: str, form: dict[str, str]) -> str:
    token: str = (
        httpx.post(base + "/v1/auth/token", data=form).raise_for_status().json()["access_token"]
    )
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--polls", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.patients < 2:
        parser.error("--patients must be at least 2")
    if args.records + 2 * args.patients < args.changes:
        parser.error("--changes must be at most --records plus twice --patients")

    with postgres_database() as database_url:
        migrate(database_url, SECRET)
        data = load(database_url, patients=args.patients, records=args.records, seed=args.seed)
        client_id, client_secret = api_client(database_url, data.clinic_id)
        env = {
            "DORSI_DATABASE_URL": database_url,
            "DORSI_SECRET_KEY": SECRET,
            "DORSI_ENVIRONMENT": "test",
        }
        sql_url = libpq_url(database_url)
        with server("app.main:app", env) as base:
            token = token_for(
                base,
                {
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": client_secret,
                },
            )
            staff = token_for(
                base, {"grant_type": "password", "username": data.email, "password": data.password}
            )
            pid = server_pid(base)
            results = [
                *export(base, token, pid, sql_url, data),
                *follower(base, token, sql_url, data, args.changes),
                *long_poll(base, token, staff, data, args.polls),
            ]

    print(f"{'case':60} {'dorsi':>11} {'reference':>11} {'figure':>7} {'target':>7}")
    for r in results:
        theirs = "" if r.reference is None else f"{r.reference:11.1f}"
        line = f"{r.case:60} {r.dorsi:11.1f} {theirs:>11} {r.figure:7.2f}"
        if r.target is not None:
            target = f"{'>=' if r.at_least else '<'} {r.target:g}"
            line += f" {target:>7}  {'ok' if r.ok else 'MISSED'}"
        print(line)
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
