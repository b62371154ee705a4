"""Shared pieces of the load benchmarks: servers on free ports, wrk, and scratch
PostgreSQL databases."""

import base64
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# An admin connection that may create and drop databases.
POSTGRES_ADMIN_URL = os.environ.get(
    "DORSI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def server(target: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        target,
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def wrk(
    url: str,
    seconds: int,
    connections: int,
    etag: str | None,
    headers: dict[str, str] | None = None,
) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    if etag:
        command[1:1] = ["-H", f"If-None-Match: {etag}"]
    for name, value in (headers or {}).items():
        command[1:1] = ["-H", f"{name}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output and not etag:
        raise SystemExit(f"wrk saw errors from {url}:\n{output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise SystemExit(f"no result from wrk:\n{output}")
    return float(found.group(1))


def ensure_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk (or `make bench`, which does).")


@contextmanager
def postgres_database(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """A fresh, empty database ``dorsi_bench_<hex>`` for one run, dropped afterwards even
    if connections are left open. Yields its URL for DORSI_DATABASE_URL. ``admin_url``
    may create databases (DORSI_BENCH_POSTGRES_URL by default)."""
    name = f"dorsi_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# PostgreSQL's server programs, for a cluster of one's own.
POSTGRES_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster on a port of its own, which a benchmark may stop and
    start as it likes (never the shared one)."""

    directory: Path
    port: int

    def ctl(self, *args: str, check: bool = True) -> None:
        assert POSTGRES_BIN is not None
        subprocess.run(
            [
                *_as_postgres(),
                str(POSTGRES_BIN / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                *args,
            ],
            check=check,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self.ctl("-w", "-o", options, "-l", str(self.directory / "log"), "start")

    def stop(self) -> None:
        self.ctl("-w", "-m", "fast", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def _as_postgres() -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A new cluster (initdb, then pg_ctl start), removed afterwards."""
    if POSTGRES_BIN is None:
        raise SystemExit("PostgreSQL's server programs (initdb, pg_ctl) are not installed.")
    # Somewhere the postgres user may enter.
    directory = Path(tempfile.mkdtemp(prefix="dorsi-cluster-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    found = Cluster(directory, free_port())
    try:
        subprocess.run(
            [
                *_as_postgres(),
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(directory / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        found.start()
        yield found
    finally:
        found.ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(directory, ignore_errors=True)


def migrate(database_url: str, secret: str) -> None:
    """Upgrade the schema and load the shipped catalog, as ``dorsi migrate`` does."""
    subprocess.run(
        [PYTHON, "-m", "app.cli", "migrate"],
        cwd=ROOT,
        env={**os.environ, "DORSI_DATABASE_URL": database_url, "DORSI_SECRET_KEY": secret},
        check=True,
        stdout=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Answer:
    """A response as it crossed the wire: its body as sent (not decoded), and its size."""

    status: int
    headers: dict[str, str]
    body: bytes
    wire_bytes: int  # status line, headers and body


def raw_get(base: str, path: str, headers: dict[str, str] | None = None) -> Answer:
    """One GET on a connection of its own, with exactly these headers (no Accept-Encoding
    unless given: the standard library's client adds ``identity``, which means the same)."""
    address = urlsplit(base)
    assert address.hostname is not None
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        fields = response.getheaders()
    finally:
        connection.close()
    head = len(f"HTTP/1.1 {response.status} {response.reason}\r\n") + 2
    head += sum(len(f"{name}: {value}\r\n") for name, value in fields)
    return Answer(response.status, {k.lower(): v for k, v in fields}, body, head + len(body))


# The headers of a recorded answer the bare reference sends back (it adds its own length).
RECORDED_HEADERS = ("etag", "cache-control", "content-type", "content-encoding", "vary")


def record(file: Path, path: str, variants: dict[str, Answer]) -> None:
    """Writes what ``bench.bare_app`` serves: each encoding's body and headers, as Dorsi
    sent them."""
    recorded = {
        coding: {
            "body": base64.b64encode(answer.body).decode(),
            "headers": {k: v for k, v in answer.headers.items() if k in RECORDED_HEADERS},
        }
        for coding, answer in variants.items()
    }
    file.write_bytes(orjson.dumps({"path": path, "variants": recorded}))
