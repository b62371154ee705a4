"""A storm of replays: several uploaders send one patient's records at once, each in its
own shuffled order and in overlapping batches, as phones on a bad network do. Every record
is stored once and answered `created` once; no batch fails, no answer goes missing."""

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col, func, select

from app.adherence.models import AdherenceRecord
from app.core.db import transaction
from tests.adherence.test_batch import BATCH, Patient, patient_with_plan
from tests.conftest import Actor, World

UPLOADERS = 8
RECORDS = 400
PER_BATCH = 100


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


def sessions(patient: Patient, count: int) -> list[dict[str, Any]]:
    """``count`` completed sessions of the patient's items, over the past days."""
    start = datetime.now(UTC) - timedelta(days=30)
    return [
        {
            "id": str(uuid.uuid4()),
            "plan_id": patient.plan["id"],
            "plan_version": patient.plan["version"],
            "item_id": patient.item(n % 2),
            "performed_at": (start + timedelta(minutes=97 * n)).isoformat(),
            "status": "completed",
            "sets_done": 3,
            "reps_done": 10,
        }
        for n in range(count)
    ]


async def test_shuffled_overlapping_replays_store_every_record_once(
    app: FastAPI, client: AsyncClient, clinician: Actor, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite lets one writer in at a time: there is no lock order to get wrong.")
    patient = await patient_with_plan(client, clinician)
    records = sessions(patient, RECORDS)

    async def uploader(seed: int) -> list[tuple[int, list[dict[str, Any]]]]:
        mine = records[:]
        random.Random(seed).shuffle(mine)
        answers = []
        for start in range(0, len(mine), PER_BATCH):
            body = {"records": mine[start : start + PER_BATCH]}
            response = await client.post(BATCH, headers=patient.app, json=body)
            answers.append((response.status_code, response.json().get("results", [])))
        return answers

    done = await asyncio.gather(*(uploader(seed) for seed in range(UPLOADERS)))

    statuses = Counter(status for answers in done for status, _ in answers)
    assert statuses == {200: UPLOADERS * RECORDS // PER_BATCH}
    created = Counter(
        result["id"]
        for answers in done
        for _, results in answers
        for result in results
        if result["result"] == "created"
    )
    assert created == dict.fromkeys((r["id"] for r in records), 1)
    outcomes = Counter(
        result["result"] for answers in done for _, results in answers for result in results
    )
    assert outcomes == {"created": RECORDS, "unchanged": RECORDS * (UPLOADERS - 1)}
    async with transaction(app.state.engine) as session:
        stored = await session.exec(
            select(func.count()).where(
                col(AdherenceRecord.id).in_([uuid.UUID(r["id"]) for r in records])
            )
        )
        assert stored.one() == RECORDS
