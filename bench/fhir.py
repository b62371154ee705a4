"""FHIR benchmark: a searchset page of Procedures against the REST page of the same
records, on PostgreSQL, in one run.

    python -m bench.fhir [--patients 1000] [--records 100000] [--rounds 5] [--requests 20]

Makes a fresh database through DORSI_BENCH_POSTGRES_URL (as bench.adherence does),
fills it with bench.adherence_data, serves Dorsi under uvicorn with one worker and signs
in as the clinic's clinician. Requests go one after the other on one keep-alive
connection of the standard library's http.client.

- Procedure page: ``GET /fhir/R4/Procedure?patient={id}&_count=100`` for the patient with
  a diligent year of records, against ``GET /v1/patients/{id}/adherence?limit=100``, the
  REST page of the same 100 records (both newest session first; the ids are checked
  equal). The two take turns request by request, ``--requests`` each a round; the median
  per round, then the median of the rounds. Target: at most 2 times the REST page's time.
- Bulk export: ``GET /fhir/R4/$export?_type=Procedure`` (run in-process by the server),
  from the kick-off to the last line of the last file downloaded, polling the status
  every 100 ms, in records per second, against bench.sync's reference for the REST
  export: a psycopg server-side cursor over the same rows (500 a fetch) writing each row
  with orjson to /dev/null. Target: at least 0.5 of the reference. And the server's
  resident set during the export, highest minus before. Target: below 64 MiB.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import orjson

from app.core.db import libpq_url
from bench.adherence_data import Dataset, load
from bench.harness import PYTHON, ROOT, migrate, postgres_database, server
from bench.sync import against_export_reference, server_pid

SECRET = "bench-secret-" + "x" * 32
TARGET = 2.0


def timed(connection: http.client.HTTPConnection, target: str, token: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    connection.request("GET", target, headers={"Authorization": f"Bearer {token}"})
    answer = connection.getresponse()
    body = answer.read()
    elapsed = time.perf_counter() - started
    if answer.status != 200:
        raise SystemExit(f"GET {target} answered {answer.status}: {body[:200]!r}")
    return elapsed, body


def exporter(database_url: str, data: Dataset) -> dict[str, str]:
    """The sign-in form of an API client of the clinic that may export Procedures."""
    output = subprocess.run(
        [
            *(PYTHON, "-m", "app.cli", "create-client", "--clinic-id", str(data.clinic_id)),
            *("--name", "Bench EHR", "--scope", "changes:read", "--scope", "adherence:read"),
        ],
        cwd=ROOT,
        env={**os.environ, "DORSI_DATABASE_URL": database_url, "DORSI_SECRET_KEY": SECRET},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fields = dict(line.split(" ", 1) for line in output.strip().splitlines())
    return {
        "grant_type": "client_credentials",
        "client_id": fields["client_id"],
        "client_secret": fields["client_secret"],
    }


def bulk_export(base: str, token: str, sql_url: str, data: Dataset) -> tuple[float, float, float]:
    """(Dorsi's records/s, the reference's records/s, the server's RSS growth in MiB)."""
    address = urlsplit(base)
    host = address.hostname
    assert host is not None
    auth = {"Authorization": f"Bearer {token}"}
    pid = server_pid(base)

    def dorsi() -> tuple[int, float]:
        connection = http.client.HTTPConnection(host, address.port, timeout=600)
        start = time.perf_counter()
        connection.request(
            "GET", "/fhir/R4/$export?_type=Procedure", headers={**auth, "Prefer": "respond-async"}
        )
        answer = connection.getresponse()
        answer.read()
        if answer.status != 202:
            raise SystemExit(f"$export answered {answer.status}.")
        status = urlsplit(answer.getheader("Content-Location") or "").path
        while True:
            connection.request("GET", status, headers=auth)
            answer = connection.getresponse()
            body = answer.read()
            if answer.status == 200:
                break
            if answer.status != 202:
                raise SystemExit(f"The export's status answered {answer.status}: {body[:200]!r}")
            time.sleep(0.1)
        lines = 0
        for output in orjson.loads(body)["output"]:
            connection.request("GET", urlsplit(output["url"]).path, headers=auth)
            answer = connection.getresponse()
            lines += answer.read().count(b"\n")
        seconds = time.perf_counter() - start
        connection.close()
        return lines, seconds

    lines, ours, rows, theirs, grown = against_export_reference(pid, dorsi, sql_url, data)
    if lines != rows:
        raise SystemExit(f"The export wrote {lines} Procedures, the reference read {rows} rows.")
    return lines / ours, rows / theirs, grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with postgres_database() as database_url:
        migrate(database_url, SECRET)
        data = load(database_url, patients=args.patients, records=args.records, seed=args.seed)
        env = {
            "DORSI_DATABASE_URL": database_url,
            "DORSI_SECRET_KEY": SECRET,
            "DORSI_ENVIRONMENT": "test",
        }
        with server("app.main:app", env) as base:
            token: str = (
                httpx.post(
                    base + "/v1/auth/token",
                    data={
                        "grant_type": "password",
                        "username": data.email,
                        "password": data.password,
                    },
                )
                .raise_for_status()
                .json()["access_token"]
            )
            patient = data.patient.id
            fhir = f"/fhir/R4/Procedure?patient={patient}&_count=100"
            rest = f"/v1/patients/{patient}/adherence?limit=100"
            address = urlsplit(base)
            assert address.hostname is not None
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
            _, fhir_body = timed(connection, fhir, token)
            _, rest_body = timed(connection, rest, token)
            fhir_ids = [e["resource"]["id"] for e in orjson.loads(fhir_body)["entry"]]
            rest_ids = [r["id"] for r in orjson.loads(rest_body)["items"]]
            if fhir_ids != rest_ids or len(fhir_ids) != 100:
                raise SystemExit("The two pages do not hold the same 100 records.")
            fhir_medians, rest_medians = [], []
            for _ in range(args.rounds):
                fhir_times, rest_times = [], []
                for _ in range(args.requests):
                    fhir_times.append(timed(connection, fhir, token)[0])
                    rest_times.append(timed(connection, rest, token)[0])
                fhir_medians.append(statistics.median(fhir_times))
                rest_medians.append(statistics.median(rest_times))
            connection.close()
            system: str = (
                httpx.post(base + "/v1/auth/token", data=exporter(database_url, data))
                .raise_for_status()
                .json()["access_token"]
            )
            ours, theirs, grown = bulk_export(base, system, libpq_url(database_url), data)
    fhir_ms = statistics.median(fhir_medians) * 1000
    rest_ms = statistics.median(rest_medians) * 1000
    ratio = fhir_ms / rest_ms
    print(f"{'case':52} {'fhir ms':>8} {'rest ms':>8} {'ratio':>6} {'target':>7}")
    verdict = "ok" if ratio <= TARGET else "MISSED"
    print(
        f"{'searchset page of 100 Procedures vs REST page':52} {fhir_ms:8.2f} {rest_ms:8.2f} "
        f"{ratio:6.2f} {'<= ' + str(TARGET):>7}  {verdict}"
    )
    export_ratio = ours / theirs
    print(
        f"{'$export of ' + format(args.records, ',') + ' Procedures (records/s)':52} "
        f"{ours:8.0f} {theirs:8.0f} {export_ratio:6.2f} {'>= 0.5':>7}  "
        f"{'ok' if export_ratio >= 0.5 else 'MISSED'}"
    )
    print(
        f"{'  server RSS during the export minus before (MiB)':52} {grown:8.1f} {'':>8} "
        f"{'':>6} {'< 64':>7}  {'ok' if grown < 64 else 'MISSED'}"
    )
    sys.exit(0 if ratio <= TARGET and export_ratio >= 0.5 and grown < 64 else 1)


if __name__ == "__main__":
    main()
