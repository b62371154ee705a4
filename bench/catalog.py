"""Load benchmark: Dorsi against a bare Starlette app serving the same bytes, in one run.

    python -m bench.catalog [--seconds 5] [--connections 32] [--rounds 3]

Both run under uvicorn with one worker; wrk (Debian package ``wrk``) drives them in turn.
Prints requests per second for each and the ratio, with the target it must reach.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import orjson

from bench.harness import PYTHON, ROOT, ensure_wrk, server, wrk

# (name, path, send the ETag back?, target ratio)
CASES = [
    ("GET /v1/exercises", "/v1/exercises", False, 0.5),
    ("GET /v1/exercises -> 304", "/v1/exercises", True, 0.7),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ensure_wrk()

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "DORSI_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "DORSI_ENVIRONMENT": "test",
            "DORSI_SECRET_KEY": "bench-secret-" + "x" * 32,
        }
        subprocess.run(
            [PYTHON, "-m", "app.cli", "migrate"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with server("app.main:app", env) as dorsi:
            recorded = Path(tmp) / "response.json"
            first = httpx.get(dorsi + CASES[0][1])
            first.raise_for_status()
            headers = {
                k: v
                for k, v in first.headers.items()
                if k in ("etag", "cache-control", "content-type")
            }
            recorded.write_bytes(
                orjson.dumps({"path": CASES[0][1], "body": first.text, "headers": headers})
            )
            with server("bench.bare_app:app", {"BENCH_RESPONSE": str(recorded)}) as bare:
                print(f"{'case':28} {'dorsi rps':>10} {'bare rps':>10} {'ratio':>7} {'target':>7}")
                failed = False
                for name, path, conditional, target in CASES:
                    etag = headers["etag"] if conditional else None
                    wrk(dorsi + path, 1, args.connections, etag)  # warm-up
                    wrk(bare + path, 1, args.connections, etag)
                    ours, theirs = [], []
                    for _ in range(args.rounds):
                        ours.append(wrk(dorsi + path, args.seconds, args.connections, etag))
                        theirs.append(wrk(bare + path, args.seconds, args.connections, etag))
                    d, b = statistics.median(ours), statistics.median(theirs)
                    ratio = d / b
                    ok = ratio >= target
                    failed |= not ok
                    print(
                        f"{name:28} {d:10.0f} {b:10.0f} {ratio:7.2f} {'>= ' + str(target):>7}"
                        f"  {'ok' if ok else 'BELOW TARGET'}"
                    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
