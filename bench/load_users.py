"""The users of the load test (bench.load), as a Locust file: patient apps, clinicians and
clinic systems, each doing what its kind does all day, as fast as answers come.

Run by bench.load as ``locust -f bench/load_users.py --headless``, never imported by it
(Locust patches the standard library with gevent on import). What to use (tokens,
patients, plans) comes as JSON from the file named by ``DORSI_LOAD_PLAN``; the users run
for ``DORSI_LOAD_SECONDS``; what was seen (statistics, every record id answered
``created`` or ``unchanged``, the times of 503s) is written as JSON to
``DORSI_LOAD_RESULT`` when the run ends.
"""

import json
import os
import random
import time
import uuid
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import gevent
from locust import FastHttpUser, constant, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment

from bench.adherence_data import session_fields

PLAN: dict[str, Any] = json.loads(Path(os.environ["DORSI_LOAD_PLAN"]).read_text())
RESULT = Path(os.environ["DORSI_LOAD_RESULT"])
SECONDS = float(os.environ["DORSI_LOAD_SECONDS"])
# Long polls answer when a change commits or after this many seconds.
FEED_WAIT = 10

# What the run saw, written out when it stops. Greenlets share one thread: no locks.
seen: set[str] = set()  # record ids answered created or unchanged
created_twice: list[str] = []  # ids answered created by two requests that were not replays
created: set[str] = set()
statuses: Counter[str] = Counter()  # "operation status" -> count
errors: list[str] = []  # what was wrong, for the unexpected answers but 503s (first few)
unavailable_at: list[float] = []  # epoch seconds of each 503
# Patients whose plans clinicians edit, each taken by one clinician at a time (so two
# edits of one plan never race; a 412 is then a fault).
editable: deque[dict[str, Any]] = deque(PLAN["editable"])
app_patients: deque[dict[str, Any]] = deque(PLAN["apps"])


def _note(name: str, response: ResponseContextManager, expected: tuple[int, ...]) -> bool:
    """Counts the answer; marks it failed unless its status is expected. A 503 (the
    database away) is counted and marked failed too: bench.load decides whether it was
    allowed."""
    status = response.status_code
    statuses[f"{name} {status}"] += 1
    if status in expected:
        response.success()  # type: ignore[no-untyped-call]
        return True
    detail = f"{name}: {status} {(response.text or '')[:200]}"
    if status == 503:
        unavailable_at.append(time.time())
    elif len(errors) < 20:
        errors.append(detail)
    response.failure(detail)  # type: ignore[no-untyped-call]
    return False


class PatientApp(FastHttpUser):
    """A patient's phone: opens the app (today, then the plan, revalidated with its ETag),
    uploads the sessions done in batches, and now and then sends a batch again: with the
    same Idempotency-Key (a retry after a lost answer) or a new one (the app forgot it)."""

    weight = 12
    wait_time = constant(0)

    def on_start(self) -> None:
        self.patient = app_patients.popleft()
        app_patients.append(self.patient)
        self.auth = {"Authorization": f"Bearer {self.patient['token']}"}
        self.zone = ZoneInfo(self.patient["time_zone"])
        self.plan_etag: str | None = None
        self.last: tuple[str, str, set[str]] | None = None  # key, body, ids
        self.pending: tuple[str, str, list[str]] | None = None  # unanswered: retry it
        self.rng = random.Random()

    @task(3)
    def today(self) -> None:
        with self.client.get(
            "/v1/me/today", headers=self.auth, name="today", catch_response=True
        ) as answer:
            _note("today", answer, (200,))

    @task(3)
    def plan(self) -> None:
        headers = dict(self.auth)
        if self.plan_etag:
            headers["If-None-Match"] = self.plan_etag
        with self.client.get(
            "/v1/me/plan", headers=headers, name="plan", catch_response=True
        ) as answer:
            if _note("plan", answer, (200, 304)) and answer.status_code == 200:
                self.plan_etag = answer.headers.get("etag")

    @task(2)
    def upload(self) -> None:
        if self.pending is not None:  # the last try met an outage: the app tries again
            key, body, ids = self.pending
        else:
            records = [self._session() for _ in range(self.rng.randint(1, 5))]
            key, body = str(uuid.uuid4()), json.dumps({"records": records})
            ids = [r["id"] for r in records]
        if self._send("upload", key, body, ids):
            self.pending = None
            self.last = (key, body, set(ids))
        else:
            self.pending = (key, body, ids)

    @task(1)
    def replay(self) -> None:
        if self.last is None or self.pending is not None:
            return
        key, body, ids = self.last
        if self.rng.random() < 0.5:
            self._send("replay same key", key, body, list(ids))
        else:
            self._send("replay new key", str(uuid.uuid4()), body, list(ids))

    def _send(self, name: str, key: str, body: str, ids: list[str]) -> bool:
        """True once answered (whatever the records' results); False on a 503."""
        headers = {**self.auth, "Idempotency-Key": key, "Content-Type": "application/json"}
        with self.client.post(
            "/v1/adherence/batch",
            data=body,
            headers=headers,
            name=name,
            catch_response=True,
        ) as answer:
            if not _note(name, answer, (200,)):
                return False
            replayed = answer.headers.get("idempotent-replayed") == "true"
            results = answer.json()["results"]
            expect = {"created", "unchanged"} if name == "upload" or replayed else {"unchanged"}
            for result in results:
                rid = result["id"]
                if result["result"] not in expect or rid not in ids:
                    wrong = f"{name}: record {rid} answered {result['result']}"
                    answer.failure(wrong)
                    if len(errors) < 20:
                        errors.append(f"{name}: record {rid} answered {result}")
                    continue
                seen.add(rid)
                if result["result"] == "created" and not replayed:
                    if rid in created:
                        created_twice.append(rid)
                    created.add(rid)
            return True

    def _session(self) -> dict[str, Any]:
        which = self.rng.randrange(len(PLAN["items"]))
        done = datetime.now(UTC) - timedelta(minutes=self.rng.uniform(1, 120))
        return {
            "id": str(uuid.uuid4()),
            "plan_id": self.patient["plan_id"],
            "plan_version": self.patient["plan_version"],
            "item_id": self.patient["item_ids"][which],
            "performed_at": done.astimezone(self.zone).isoformat(),
            **session_fields(self.rng, PLAN["items"][which]),
        }


class Clinician(FastHttpUser):
    """A clinician's browser: the patient list, a patient's adherence summary over the last
    four weeks, the clinic's overview, and now and then a plan edit (read, then PATCH with
    If-Match)."""

    weight = 3
    wait_time = constant(0)

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {PLAN['clinician_token']}"}
        self.rng = random.Random()

    @task(2)
    def patients(self) -> None:
        with self.client.get(
            "/v1/patients?limit=50", headers=self.auth, name="patients", catch_response=True
        ) as answer:
            _note("patients", answer, (200,))

    @task(4)
    def summary(self) -> None:
        patient = self.rng.choice(PLAN["patients"])
        until = datetime.now(ZoneInfo(patient["time_zone"])).date()
        since = until - timedelta(days=27)
        with self.client.get(
            f"/v1/patients/{patient['id']}/adherence/summary?from={since}&to={until}",
            headers=self.auth,
            name="summary",
            catch_response=True,
        ) as answer:
            _note("summary", answer, (200,))

    @task(2)
    def overview(self) -> None:
        with self.client.get(
            "/v1/adherence/overview?limit=50",
            headers=self.auth,
            name="overview",
            catch_response=True,
        ) as answer:
            _note("overview", answer, (200,))

    @task(1)
    def edit_plan(self) -> None:
        if not editable:
            return
        patient = editable.popleft()
        try:
            path = f"/v1/plans/{patient['plan_id']}"
            with self.client.get(
                path, headers=self.auth, name="plan read", catch_response=True
            ) as answer:
                if not _note("plan read", answer, (200,)):
                    return
                etag = answer.headers["etag"]
            note = f"Load test note {self.rng.randrange(10**6)}"
            with self.client.patch(
                path,
                json={"notes": note},
                headers={**self.auth, "If-Match": etag},
                name="plan edit",
                catch_response=True,
            ) as answer:
                _note("plan edit", answer, (200,))
        finally:
            editable.append(patient)


class ClinicSystem(FastHttpUser):
    """A clinic's EHR following the change feed: a page, then the next from its cursor,
    waiting (long poll) when it has caught up."""

    fixed_count = 2
    wait_time = constant(0)

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {PLAN['client_token']}"}
        self.cursor = PLAN["cursor"]

    @task
    def follow(self) -> None:
        with self.client.get(
            f"/v1/changes?limit=500&wait={FEED_WAIT}&cursor={self.cursor}",
            headers=self.auth,
            name="changes",
            catch_response=True,
        ) as answer:
            if _note("changes", answer, (200,)):
                self.cursor = answer.json()["next_cursor"]


began: list[float] = []  # epoch seconds when the users started


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _start(environment: Environment, **_: Any) -> None:
    """Starts the clock, tells bench.load, and quits after ``SECONDS``. (Not Locust's
    --run-time: its timer reads the event loop's cached clock, which a busy machine leaves
    stale by seconds while the users start, and ends the run that much early.)"""
    began.append(time.time())
    starting = RESULT.with_suffix(".starting")
    starting.write_text(str(began[0]))
    starting.rename(RESULT.with_suffix(".started"))  # whole, for bench.load's reader

    def stop_later() -> None:
        while time.time() < began[0] + SECONDS:
            gevent.sleep(0.1)
        assert environment.runner is not None
        environment.runner.quit()

    gevent.spawn(stop_later)


def _percentile(entry: Any, share: float) -> float:
    return float(entry.get_response_time_percentile(share)) if entry.num_requests else 0.0


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write_result(environment: Environment, **_: Any) -> None:
    stats = environment.stats
    assert stats is not None
    operations = {
        entry.name: {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "p50": _percentile(entry, 0.50),
            "p95": _percentile(entry, 0.95),
            "p99": _percentile(entry, 0.99),
        }
        for entry in stats.entries.values()
    }
    total = stats.total
    result = {
        "operations": operations,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "began": began[0] if began else None,
        "seconds": time.time() - began[0] if began else 0,
        "statuses": dict(statuses),
        "errors": errors,
        "seen": sorted(seen),
        "created_twice": created_twice,
        "unavailable_at": unavailable_at,
    }
    RESULT.write_text(json.dumps(result))
