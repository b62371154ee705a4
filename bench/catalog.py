"""Load benchmark: Dorsi against a bare Starlette app serving the same bytes, in one run;
and the bytes compression saves on the wire.

    python -m bench.catalog [--seconds 5] [--connections 32] [--rounds 3]

Both run under uvicorn with one worker; wrk (Debian package ``wrk``) drives them in turn.
Prints requests per second for each and the ratio, with the target it must reach. The
bare app serves the bytes Dorsi sent for each encoding: identity, and the gzip bytes to a
request with ``Accept-Encoding: gzip``.

Then the bytes on the wire of answers sent with ``Accept-Encoding: gzip``, against the same
answers without it: the catalog page, and, on PostgreSQL (``DORSI_BENCH_POSTGRES_URL``,
skipped when unreachable), a patient's ``/v1/me/today`` and a year's adherence summary of
a patient with 1,000 sessions in it (``bench.adherence_data``). Target: the body at most a
third of identity. The whole HTTP/1.1 message (status line, headers and body) is shown
for information: its headers (about 430 bytes, the same either way) are what HTTP/2's
header compression shrinks to a few bytes on a connection's later requests.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg

from bench.adherence_data import HEAVY, load
from bench.harness import (
    POSTGRES_ADMIN_URL,
    PYTHON,
    ROOT,
    Answer,
    ensure_wrk,
    migrate,
    postgres_database,
    raw_get,
    record,
    server,
    wrk,
)

CATALOG = "/v1/exercises"
GZIP = {"Accept-Encoding": "gzip"}
# (name, path, send the ETag back?, request headers, target ratio)
CASES = [
    ("GET /v1/exercises", CATALOG, False, {}, 0.5),
    ("GET /v1/exercises -> 304", CATALOG, True, {}, 0.7),
    ("GET /v1/exercises, gzip", CATALOG, False, GZIP, 0.5),
]
WIRE_TARGET = 1 / 3
SECRET = "bench-secret-" + "x" * 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ensure_wrk()
    failed = False

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "DORSI_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "DORSI_ENVIRONMENT": "test",
            "DORSI_SECRET_KEY": SECRET,
        }
        subprocess.run(
            [PYTHON, "-m", "app.cli", "migrate"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with server("app.main:app", env) as dorsi:
            identity, compressed = raw_get(dorsi, CATALOG), raw_get(dorsi, CATALOG, GZIP)
            assert identity.status == compressed.status == 200
            assert compressed.headers.get("content-encoding") == "gzip", compressed.headers
            recorded = Path(tmp) / "response.json"
            record(recorded, CATALOG, {"identity": identity, "gzip": compressed})
            with server("bench.bare_app:app", {"BENCH_RESPONSE": str(recorded)}) as bare:
                print(f"{'case':28} {'dorsi rps':>10} {'bare rps':>10} {'ratio':>7} {'target':>7}")
                for name, path, conditional, headers, target in CASES:
                    etag = identity.headers["etag"] if conditional else None
                    wrk(dorsi + path, 1, args.connections, etag, headers)  # warm-up
                    wrk(bare + path, 1, args.connections, etag, headers)
                    ours, theirs = [], []
                    for _ in range(args.rounds):
                        ours.append(
                            wrk(dorsi + path, args.seconds, args.connections, etag, headers)
                        )
                        theirs.append(
                            wrk(bare + path, args.seconds, args.connections, etag, headers)
                        )
                    d, b = statistics.median(ours), statistics.median(theirs)
                    ratio = d / b
                    ok = ratio >= target
                    failed |= not ok
                    print(
                        f"{name:28} {d:10.0f} {b:10.0f} {ratio:7.2f} {'>= ' + str(target):>7}"
                        f"  {'ok' if ok else 'BELOW TARGET'}"
                    )
            wire = [("catalog page, GET /v1/exercises", identity, compressed)]
    wire += on_postgres()

    print(
        f"\n{'bytes on the wire: body':40} {'identity':>9} {'gzip':>7} {'ratio':>6} {'target':>7}"
        f"   {'whole message':>15} {'ratio':>6}"
    )
    for name, plain, gzipped in wire:
        ratio = len(gzipped.body) / len(plain.body)
        ok = ratio <= WIRE_TARGET
        failed |= not ok
        print(
            f"{name:40} {len(plain.body):9,} {len(gzipped.body):7,} {ratio:6.2f} {'<= 0.33':>7}"
            f"   {plain.wire_bytes:7,} {gzipped.wire_bytes:7,}"
            f" {gzipped.wire_bytes / plain.wire_bytes:6.2f}  {'ok' if ok else 'ABOVE TARGET'}"
        )
    sys.exit(1 if failed else 0)


def on_postgres() -> list[tuple[str, Answer, Answer]]:
    """A patient's today and a year's summary: bytes on the wire without and with gzip."""
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        print(f"\n(today and the year's summary skipped: no PostgreSQL at {POSTGRES_ADMIN_URL})")
        return []
    with postgres_database() as database_url:
        migrate(database_url, SECRET)
        data = load(database_url, patients=2, records=HEAVY + 200, seed=1)
        env = {
            "DORSI_DATABASE_URL": database_url,
            "DORSI_SECRET_KEY": SECRET,
            "DORSI_ENVIRONMENT": "test",
        }
        with server("app.main:app", env) as base, httpx.Client(base_url=base) as http:
            form = {"grant_type": "password", "username": data.email, "password": data.password}
            staff_token = http.post("/v1/auth/token", data=form).raise_for_status()
            staff = {"Authorization": f"Bearer {staff_token.json()['access_token']}"}
            person = data.patient
            code = http.post(f"/v1/patients/{person.id}/access-codes", headers=staff)
            paired = http.post(
                "/v1/auth/pair", json={"code": code.raise_for_status().json()["code"]}
            )
            patient = {
                "Authorization": f"Bearer {paired.raise_for_status().json()['access_token']}"
            }
            until = datetime.now(ZoneInfo(person.time_zone)).date()
            since = until - timedelta(days=364)
            summary = f"/v1/patients/{person.id}/adherence/summary?from={since}&to={until}"
            figures = []
            for name, path, auth in (
                ("today, GET /v1/me/today", "/v1/me/today", patient),
                (f"a year's summary ({person.records:,} sessions)", summary, staff),
            ):
                plain, gzipped = raw_get(base, path, auth), raw_get(base, path, {**auth, **GZIP})
                assert plain.status == gzipped.status == 200, (plain.body, gzipped.body)
                assert gzipped.headers.get("content-encoding") == "gzip", gzipped.headers
                figures.append((name, plain, gzipped))
            return figures


if __name__ == "__main__":
    main()
