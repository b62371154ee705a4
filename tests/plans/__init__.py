"""Factories shared by the plan tests and the patient-app tests: all of them go through the
API, as a clinician or a clinic system would."""

import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from httpx import AsyncClient, Response

from app.exercises.catalog import catalog_id
from tests.conftest import Actor

GLOBAL_TEMPLATE_ID = str(catalog_id("template:foot-drop-home-program"))
EVERY_DAY = [1, 2, 3, 4, 5, 6, 7]
# The start of the tests' active plans: before the days their sessions are recorded on.
PLAN_START = "2026-11-01"


def exercise_id(slug: str) -> str:
    """The id of a global catalog exercise: derived from its slug on every installation."""
    return str(catalog_id(slug))


def item(slug: str = "ankle-dorsiflexion", **fields: Any) -> dict[str, Any]:
    """A valid plan or template item: a catalog exercise on Monday, Wednesday and Friday."""
    return {"exercise_id": exercise_id(slug), "schedule": {"days_of_week": [1, 3, 5]}, **fields}


def as_input(entry: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An item as read, made fit to send back (with its id, so it stays the same item):
    without what Dorsi sets (its order, exercise and sources)."""
    read_only = ("order", "exercise", "dose_source", "schedule_source")
    return {k: v for k, v in entry.items() if k not in read_only} | changes


def version_tag(etag: str) -> str:
    """The version an ETag names, whichever encoding the answer came in: a compressed
    answer's ETag carries its coding inside the quotes (`"{id}-1-gzip"`)."""
    return etag.removesuffix('-gzip"') + '"' if etag.endswith('-gzip"') else etag


def local_today(time_zone: str) -> date:
    return datetime.now(ZoneInfo(time_zone)).date()


async def new_patient(client: AsyncClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    """A new patient of the actor's clinic (right side affected, in Chicago unless told)."""
    body = {
        "reference": f"PLAN-{uuid.uuid4().hex[:12]}",
        "affected_side": "right",
        "cause": "stroke",
        "time_zone": "America/Chicago",
        **fields,
    }
    response = await client.post("/v1/patients", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    patient: dict[str, Any] = response.json()
    return patient


async def post_plan(client: AsyncClient, actor: Actor, patient_id: object, **body: Any) -> Response:
    return await client.post(f"/v1/patients/{patient_id}/plans", json=body, headers=actor.headers)


async def new_plan(
    client: AsyncClient, actor: Actor, patient_id: object, **body: Any
) -> tuple[dict[str, Any], str]:
    """A new draft plan and its ETag; from one item of its own unless the body says else."""
    if "template_id" not in body:
        body.setdefault("items", [item()])
    response = await post_plan(client, actor, patient_id, **body)
    assert response.status_code == 201, response.text
    plan: dict[str, Any] = response.json()
    return plan, response.headers["etag"]


async def patch_plan(
    client: AsyncClient, actor: Actor, plan_id: object, etag: str | None, **body: Any
) -> Response:
    headers = dict(actor.headers)
    if etag is not None:
        headers["If-Match"] = etag
    return await client.patch(f"/v1/plans/{plan_id}", json=body, headers=headers)


async def changed_plan(
    client: AsyncClient, actor: Actor, plan_id: object, etag: str, **body: Any
) -> tuple[dict[str, Any], str]:
    """PATCHes the plan, expecting success; returns it and its new ETag."""
    response = await patch_plan(client, actor, plan_id, etag, **body)
    assert response.status_code == 200, response.text
    plan: dict[str, Any] = response.json()
    return plan, response.headers["etag"]


async def active_plan(
    client: AsyncClient, actor: Actor, patient_id: object, **body: Any
) -> tuple[dict[str, Any], str]:
    """A new plan, activated; returns it and its ETag. Unless the body says else, it starts
    on `PLAN_START`, so that sessions of the tests' fixed days in November 2026 fall on days
    it governs."""
    body.setdefault("start_date", PLAN_START)
    plan, etag = await new_plan(client, actor, patient_id, **body)
    return await changed_plan(client, actor, plan["id"], etag, status="active")


async def paired_headers(client: AsyncClient, actor: Actor, patient_id: object) -> dict[str, str]:
    """Pairs a patient app the way a patient does: a code from the clinic, traded for tokens."""
    code = await client.post(f"/v1/patients/{patient_id}/access-codes", headers=actor.headers)
    assert code.status_code == 201, code.text
    paired = await client.post("/v1/auth/pair", json={"code": code.json()["code"]})
    assert paired.status_code == 200, paired.text
    assert paired.json()["patient_id"] == str(patient_id)
    return {"Authorization": f"Bearer {paired.json()['access_token']}"}
