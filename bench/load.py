"""Load test: Locust (headless) against ``dorsi serve --workers 4`` and ``dorsi worker`` on
PostgreSQL, with the day's mix of patient apps, clinicians and clinic systems; optionally
with the database restarted in the middle.

    python -m bench.load [--seconds 60] [--users 64] [--patients 2000] [--records 200000]
                         [--restart-postgres-at SECONDS] [--down-seconds 3]
                         [--api-processes 4]

Makes a fresh database through DORSI_BENCH_POSTGRES_URL (as bench.adherence does), or,
with ``--restart-postgres-at``, on a throwaway cluster it starts itself (initdb, pg_ctl
on a port of its own; never the shared one). Migrates it, fills it with
bench.adherence_data (a clinic, ``--patients`` with an active plan each, ``--records``
over the last year), then serves it with ``dorsi serve --workers 4`` (4 API processes,
one /metrics). When ``dorsi worker`` exists (``dorsi --help`` lists it), it runs too, and
a local receiver takes the webhooks of an endpoint subscribed to plans, records and
alerts; otherwise the test runs without them.

The users (bench/load_users.py) each send their next request as soon as the last is
answered (no think time), so the figures are what the machine can do:

- patient apps (12 of every 15 users, one patient each): today, the plan (revalidated by
  ETag), batch uploads of 1 to 5 sessions with an Idempotency-Key, and replays of the last
  batch, with the same key (the first answer again) or a new one (each record
  ``unchanged``). An upload that met a 503 is sent again, same key, same records;
- clinicians (3 of 15): the patient list, a patient's 4-week summary, the overview, and
  plan edits (GET, then PATCH with If-Match) of patients no app uploads for;
- clinic systems (2 users): the change feed from its newest cursor, long-polling with
  ``wait``.

It prints requests per second, p50/p95/p99 per operation, the answers by status, the
CPU time the API processes and PostgreSQL's backends spent per request, and the error
count. Afterwards every record id an upload saw answered ``created`` or ``unchanged`` is
looked up in the database: each must be stored exactly once. It exits 1 on any 5xx, any
other unexpected answer, any record lost or duplicated.

With ``--restart-postgres-at``, the cluster is stopped (fast shutdown) that many seconds
into the run and started again ``--down-seconds`` later; 503s are then allowed from the
stop until 5 s after the database is back, and the recovery (the last 503 after its
return) is printed. Nothing else changes.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.core.db import libpq_url
from app.core.pagination import encode_cursor
from bench.adherence_data import Dataset, load
from bench.harness import (
    PYTHON,
    ROOT,
    free_port,
    migrate,
    postgres_database,
    throwaway_cluster,
)
from bench.sync import SECRET, api_client, token_for

POOL_SIZE = 4  # each API process holds at most twice this many connections
RECOVERY_TARGET = 5.0  # seconds after the database is back
WEBHOOK_EVENTS = (
    "plan.*",
    "adherence_record.*",
    "adherence.below_threshold",
    "adherence.recovered",
    "pain.reported_high",
)
DORSI = [PYTHON, "-m", "app.cli"]


# ------------------------------------------------------------------------------- processes


def has_worker() -> bool:
    """Whether this Dorsi has ``dorsi worker``."""
    listed = subprocess.run(
        [*DORSI, "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return any(line.strip("│ ").startswith("worker ") for line in listed.splitlines())


@contextmanager
def process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A Dorsi process, its output in ``log``; stopped with SIGTERM (as an orchestrator
    would) when done."""
    with log.open("wb") as out:
        started = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield started
        finally:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(40)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait()


def wait_ready(base: str, serving: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if serving.poll() is not None:
            raise SystemExit(f"dorsi serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"dorsi serve did not become ready:\n{log.read_text()[-3000:]}")


class Receiver(ThreadingHTTPServer):
    """The clinic system's webhook endpoint: 204 to every POST, counted."""

    received = 0


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[Receiver]:
    found = Receiver(("127.0.0.1", free_port()), _Hook)
    thread = threading.Thread(target=found.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.shutdown()
        found.server_close()


# ------------------------------------------------------------------------------------- CPU


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    found = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in children:
        found += process_tree(int(child))
    return found


def backends(sql_url: str) -> list[int]:
    """The PostgreSQL backends serving this database (on this machine)."""
    with psycopg.connect(sql_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows if Path(f"/proc/{row[0]}").exists()]


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


# ------------------------------------------------------------------------------------ setup


def patient_plan(data: Dataset, person_index: int) -> dict[str, Any]:
    person = data.patients[person_index]
    return {
        "id": str(person.id),
        "time_zone": person.time_zone,
        "plan_id": str(person.plan_id),
        "plan_version": person.plan_version,
        "item_ids": [str(i) for i in person.item_ids],
    }


def pair(base: str, staff: str, patient: dict[str, Any]) -> str:
    """A device token for the patient: a clinician's access code, paired by the app."""
    auth = {"Authorization": f"Bearer {staff}"}
    code = httpx.post(f"{base}/v1/patients/{patient['id']}/access-codes", headers=auth)
    code.raise_for_status()
    paired = httpx.post(
        f"{base}/v1/auth/pair", json={"code": code.json()["code"], "device_name": "Bench phone"}
    )
    paired.raise_for_status()
    token: str = paired.json()["access_token"]
    return token


def newest_cursor(sql_url: str, clinic_id: Any) -> str:
    """The feed's cursor past every change there is (what a follower holds once caught up)."""
    with psycopg.connect(sql_url) as connection:
        row = connection.execute(
            "SELECT coalesce(max(id), 0) FROM change WHERE clinic_id = %s", (clinic_id,)
        ).fetchone()
    assert row is not None
    return encode_cursor([row[0]])


# ------------------------------------------------------------------------------------- run


@dataclass
class Outage:
    """When the database was stopped and when it was back (epoch seconds)."""

    down_at: float | None = None
    back_at: float | None = None


def restart_later(cluster: Any, after: float, down: float, outage: Outage) -> threading.Thread:
    def run() -> None:
        time.sleep(max(0.0, after))
        outage.down_at = time.time()
        cluster.stop()
        time.sleep(down)
        cluster.start()
        outage.back_at = time.time()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def count_stored(sql_url: str, ids: list[str]) -> tuple[int, int]:
    """(rows, distinct ids) among the adherence records with these ids."""
    with psycopg.connect(sql_url) as connection:
        row = connection.execute(
            "SELECT count(*), count(DISTINCT id) FROM adherence_record WHERE id = ANY(%s::uuid[])",
            (ids,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--restart-postgres-at", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--down-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--api-processes", type=int, default=4, help="dorsi serve --workers (4 unless testing)"
    )
    args = parser.parse_args()
    editors = max(4, args.users // 4)
    if args.patients < args.users + editors:
        parser.error(f"--patients must be at least --users plus {editors}")
    if args.restart_postgres_at is not None and not (
        0 < args.restart_postgres_at < args.seconds - args.down_seconds - RECOVERY_TARGET
    ):
        parser.error("--restart-postgres-at must leave the database back 5 s before the end")

    worker = has_worker()
    scratch = Path(tempfile.mkdtemp(prefix="dorsi-load-"))
    outage = Outage()
    with ExitStack() as stack:
        cluster = None
        if args.restart_postgres_at is not None:
            cluster = stack.enter_context(throwaway_cluster())
            database_url = stack.enter_context(postgres_database(cluster.url))
        else:
            database_url = stack.enter_context(postgres_database())
        sql_url = libpq_url(database_url)
        migrate(database_url, SECRET)
        data = load(database_url, patients=args.patients, records=args.records, seed=args.seed)
        scopes = ("changes:read", "webhooks:write") if worker else ("changes:read",)
        client_id, client_secret = api_client(database_url, data.clinic_id, scopes)
        env = {
            "DORSI_DATABASE_URL": database_url,
            "DORSI_SECRET_KEY": SECRET,
            "DORSI_ENVIRONMENT": "test",
            "DORSI_LOG_LEVEL": "WARNING",
            "DORSI_DATABASE_POOL_SIZE": str(POOL_SIZE),
            # Pairing every app from one address is setup, not an attack.
            "DORSI_SIGN_IN_RATE_LIMIT": "100000/minute",
        }
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve_log = scratch / "serve.log"
        serving = stack.enter_context(
            process(
                [*DORSI, "serve", "--port", str(port), "--workers", str(args.api_processes)],
                env,
                serve_log,
            )
        )
        wait_ready(base, serving, serve_log)
        staff = token_for(
            base, {"grant_type": "password", "username": data.email, "password": data.password}
        )
        client = token_for(
            base,
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )
        hooks = None
        if worker:
            hooks = stack.enter_context(receiver())
            made = httpx.post(
                base + "/v1/webhooks",
                json={
                    "url": f"http://127.0.0.1:{hooks.server_address[1]}/hooks",
                    "events": list(WEBHOOK_EVENTS),
                    "description": "Load test receiver",
                },
                headers={"Authorization": f"Bearer {client}"},
            )
            if made.status_code != 201:
                raise SystemExit(f"POST /v1/webhooks answered {made.status_code}: {made.text}")
            stack.enter_context(process([*DORSI, "worker"], env, scratch / "worker.log"))

        apps = [patient_plan(data, n) for n in range(args.users)]
        for app_patient in apps:
            app_patient["token"] = pair(base, staff, app_patient)
        plan = {
            "items": list(data.items),
            "apps": apps,
            "editable": [
                patient_plan(data, n)
                for n in range(len(data.patients) - editors, len(data.patients))
            ],
            "patients": [patient_plan(data, n) for n in range(len(data.patients))],
            "clinician_token": staff,
            "client_token": client,
            "cursor": newest_cursor(sql_url, data.clinic_id),
        }
        (scratch / "plan.json").write_text(json.dumps(plan))
        result_file = scratch / "result.json"

        api_pids = process_tree(serving.pid)
        before_api, before_db = cpu_of(api_pids), cpu_of(backends(sql_url))
        locust_log = scratch / "locust.log"
        command = [
            PYTHON,
            "-m",
            "locust",
            "-f",
            str(ROOT / "bench" / "load_users.py"),
            "--headless",
            "--users",
            str(args.users),
            "--spawn-rate",
            str(args.users),
            "--host",
            base,
            "--loglevel",
            "WARNING",
            "--only-summary",
        ]
        locust_env = {
            **os.environ,
            "DORSI_LOAD_PLAN": str(scratch / "plan.json"),
            "DORSI_LOAD_RESULT": str(result_file),
            "DORSI_LOAD_SECONDS": str(args.seconds),
            "PYTHONPATH": str(ROOT),
        }
        with locust_log.open("wb") as out:
            running = subprocess.Popen(
                command, cwd=ROOT, env=locust_env, stdout=out, stderr=subprocess.STDOUT
            )
            started = users_started(result_file, running, locust_log)
            restarting = None
            if cluster is not None:
                restarting = restart_later(
                    cluster,
                    started + args.restart_postgres_at - time.time(),
                    args.down_seconds,
                    outage,
                )
            # The database's backends as the load has them (pools fill as users arrive),
            # sampled again at the end; one that came and went in between is missed.
            time.sleep(min(5.0, args.seconds / 3))
            db_pids = backends_or_none(sql_url)
            running.wait(args.seconds + 120)
            if restarting is not None:
                restarting.join()
        used_api = spent(before_api, cpu_of(api_pids))
        after_db = backends_or_none(sql_url)
        used_db = spent(before_db, cpu_of(sorted(set(db_pids) | set(after_db))))
        if not result_file.exists():
            raise SystemExit(f"Locust left no result:\n{locust_log.read_text()[-3000:]}")
        result = json.loads(result_file.read_text())
        stored, distinct = count_stored(sql_url, result["seen"])
        received = hooks.received if hooks is not None else None

    ok = report(args, result, stored, distinct, outage, started, used_api, used_db, received)
    if ok:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"logs in {scratch}")  # the servers' and Locust's, kept to read
    sys.exit(0 if ok else 1)


def users_started(result_file: Path, running: subprocess.Popen[bytes], log: Path) -> float:
    """When Locust started its users (epoch seconds), as it writes beside its result."""
    marker = result_file.with_suffix(".started")
    deadline = time.monotonic() + 120
    while not marker.exists():
        if running.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"Locust did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return float(marker.read_text())


def backends_or_none(sql_url: str) -> list[int]:
    """The backends now; none while the database is away."""
    try:
        return backends(sql_url)
    except psycopg.OperationalError:
        return []


def report(
    args: argparse.Namespace,
    result: dict[str, Any],
    stored: int,
    distinct: int,
    outage: Outage,
    started: float,
    used_api: float,
    used_db: float,
    received: int | None,
) -> bool:
    seconds = result["seconds"] or args.seconds
    requests = result["requests"]
    print(
        f"\n{args.users} users, {args.seconds} s, {args.api_processes} API processes"
        f"{', 1 worker' if received is not None else ' (no dorsi worker in this Dorsi)'}:"
        f" {requests} requests, {requests / seconds:.1f} requests/s"
    )
    print(
        f"\n{'operation':20} {'requests':>9} {'failed':>7}"
        f" {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    for name, op in sorted(result["operations"].items()):
        print(
            f"{name:20} {op['requests']:9} {op['failures']:7}"
            f" {op['p50']:8.0f} {op['p95']:8.0f} {op['p99']:8.0f}"
        )
    print("\nanswers: " + ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items())))
    if requests:
        print(
            f"CPU per request: API processes {1000 * used_api / requests:.2f} ms,"
            f" PostgreSQL backends {1000 * used_db / requests:.2f} ms"
            f" ({used_api:.1f} s and {used_db:.1f} s in all)"
        )
    if received is not None:
        print(f"webhook deliveries received: {received}")

    unavailable = result["unavailable_at"]
    failures = result["failures"]
    allowed = 0
    ok = True
    if outage.down_at is not None and outage.back_at is not None:
        until = outage.back_at + RECOVERY_TARGET
        allowed = sum(1 for at in unavailable if outage.down_at <= at <= until)
        after = [at - outage.back_at for at in unavailable if at > outage.back_at]
        recovery = max([0.0, *after])
        print(
            f"database stopped at {outage.down_at - started:.1f} s, back at"
            f" {outage.back_at - started:.1f} s; {len(unavailable)} answers 503,"
            f" {allowed} of them in the outage; last 503 {recovery:.2f} s after its return"
            f" (target: within {RECOVERY_TARGET:g} s)"
        )
        if recovery > RECOVERY_TARGET:
            ok = False
    errors = failures - allowed
    seen = len(result["seen"])
    lost = seen - distinct
    duplicated = stored - distinct + len(result["created_twice"])
    print(
        f"errors: {errors}; records answered created or unchanged: {seen},"
        f" stored: {distinct}, lost: {lost}, duplicated: {duplicated}"
    )
    for line in result["errors"][:10]:
        print("  " + line)
    return ok and errors == 0 and lost == 0 and duplicated == 0 and seen > 0


if __name__ == "__main__":
    main()
