"""A server told to stop (SIGTERM) finishes what it is answering: every upload it answered
is stored, it refuses new connections, and it exits 0."""

import asyncio
import contextlib
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from httpx import AsyncClient

from app.core.config import Settings
from tests.adherence.test_batch import BATCH, patient_with_plan
from tests.conftest import TEST_SECRET, World
from tests.test_cli import DORSI, environment, free_port, wait_until_up

UPLOADERS = 6
BATCH_SIZE = 20


def batch(plan: dict[str, Any]) -> list[dict[str, Any]]:
    performed_at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    return [
        {
            "id": str(uuid.uuid4()),
            "plan_id": plan["id"],
            "plan_version": plan["version"],
            "item_id": plan["items"][0]["id"],
            "performed_at": performed_at,
            "status": "completed",
            "sets_done": 3,
            "reps_done": 10,
        }
        for _ in range(BATCH_SIZE)
    ]


async def test_sigterm_finishes_the_uploads_in_flight(
    settings: Settings, client: AsyncClient, world: World, tmp_path: Any
) -> None:
    patient = await patient_with_plan(client, world["clinician1"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        server = subprocess.Popen(
            [str(DORSI), "serve", "--port", str(port)],
            env=environment(
                database_url=settings.database_url, secret_key=TEST_SECRET, environment="test"
            ),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    answered: list[str] = []
    refused = 0
    try:
        await asyncio.to_thread(wait_until_up, server, url, stderr)

        async def upload_until_refused() -> None:
            nonlocal refused
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                while True:
                    records = batch(patient.plan)
                    try:
                        response = await http.post(
                            BATCH, json={"records": records}, headers=patient.app
                        )
                    except httpx.TransportError:
                        refused += 1
                        return
                    assert response.status_code == 200, response.text
                    results = response.json()["results"]
                    assert [r["result"] for r in results] == ["created"] * BATCH_SIZE
                    answered.extend(record["id"] for record in records)

        uploads = [asyncio.create_task(upload_until_refused()) for _ in range(UPLOADERS)]
        # Stop once uploads are flowing (a busy machine takes longer to answer the first).
        deadline = time.monotonic() + 30
        while len(answered) < UPLOADERS * BATCH_SIZE and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        before_stop = len(answered)
        server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*uploads), timeout=60)
        exit_code = await asyncio.to_thread(server.wait, 60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert exit_code == 0, stderr.read_text()
    assert before_stop > 0
    assert refused == UPLOADERS
    # Every record of every answered upload is stored (read back through the API).
    stored: set[str] = set()
    query: dict[str, Any] = {"limit": 100}
    while True:
        page = await client.get(
            f"/v1/patients/{patient.id}/adherence",
            params=query,
            headers=world["clinician1"].headers,
        )
        assert page.status_code == 200
        stored.update(record["id"] for record in page.json()["items"])
        if page.json()["next_cursor"] is None:
            break
        query["cursor"] = page.json()["next_cursor"]
    assert set(answered) <= stored


async def test_a_server_killed_mid_batch_leaves_nothing_half_written(
    settings: Settings, client: AsyncClient, world: World, tmp_path: Any
) -> None:
    """SIGKILL while a large batch is being stored: after a restart, the app's retry of the
    same batch (same ids, same Idempotency-Key) answers every record created or unchanged,
    and each is stored once."""
    patient = await patient_with_plan(client, world["clinician1"])
    records = [record | {"id": str(uuid.uuid4())} for record in batch(patient.plan) * 25]
    headers = patient.app | {"Idempotency-Key": f"crash-{uuid.uuid4()}"}
    env = environment(
        database_url=settings.database_url,
        secret_key=TEST_SECRET,
        environment="test",
        idempotency_stale_seconds="2",
    )
    stderr = tmp_path / "stderr.log"

    def start() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        with stderr.open("ab") as err:
            server = subprocess.Popen(
                [str(DORSI), "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        url = f"http://127.0.0.1:{port}"
        wait_until_up(server, url, stderr)
        return server, url

    server, url = await asyncio.to_thread(start)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            sent = asyncio.create_task(http.post(BATCH, json={"records": records}, headers=headers))
            await asyncio.sleep(0.05)
            server.kill()
            server.wait()
            # The answer died with the server, or the batch never arrived.
            with contextlib.suppress(httpx.TransportError):
                await sent
        server, url = await asyncio.to_thread(start)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            # A claim the dead server left answers 409 until it is stale (2 s here).
            for _ in range(100):
                retried = await http.post(BATCH, json={"records": records}, headers=headers)
                if retried.status_code != 409:
                    break
                await asyncio.sleep(0.1)
    finally:
        server.kill()
        server.wait()
    assert retried.status_code == 200, retried.text
    results = retried.json()["results"]
    assert {r["result"] for r in results} <= {"created", "unchanged"}
    assert [r["id"] for r in results] == [record["id"] for record in records]
    stored: list[str] = []
    query: dict[str, Any] = {"limit": 100}
    while True:
        page = await client.get(
            f"/v1/patients/{patient.id}/adherence",
            params=query,
            headers=world["clinician1"].headers,
        )
        stored.extend(record["id"] for record in page.json()["items"])
        if page.json()["next_cursor"] is None:
            break
        query["cursor"] = page.json()["next_cursor"]
    assert sorted(stored) == sorted(record["id"] for record in records)
