"""A plan renders as its contract's model (PlanPublic) writes it, however it is read: the
service renders stored versions directly, without validating them again per plan."""

from typing import Any

from httpx import AsyncClient

from app.plans.schemas import PlanItemPublic, PlanPublic
from tests.conftest import World
from tests.plans import (
    GLOBAL_TEMPLATE_ID,
    active_plan,
    changed_plan,
    item,
    new_patient,
    new_plan,
    paired_headers,
)


def as_the_model_writes_it(rendered: dict[str, Any]) -> None:
    assert list(rendered) == list(PlanPublic.model_fields)
    for entry in rendered["items"]:
        assert list(entry) == list(PlanItemPublic.model_fields)
    assert PlanPublic.model_validate(rendered).model_dump(mode="json") == rendered


async def test_every_read_renders_a_plan_as_its_model_does(
    client: AsyncClient, world: World
) -> None:
    clinician = world["clinician1"]
    patient = await new_patient(client, clinician)
    items = [
        # Weekdays given out of order, a side, a band, notes, a whole dose.
        item(
            "ankle-dorsiflexion",
            schedule={"days_of_week": [5, 1, 3], "times_per_day": 2},
            side="left",
            resistance="yellow",
            notes="Slowly.",
            sets=3,
            reps=10,
            hold_seconds=5,
            rest_seconds=60,
        ),
        # Sessions a week, the affected side, no dose at all.
        item("ankle-dorsiflexion", schedule={"sessions_per_week": 3}),
    ]
    drafted, etag = await new_plan(client, clinician, patient["id"], items=items)
    active, etag = await changed_plan(client, clinician, drafted["id"], etag, status="active")
    read = await client.get(f"/v1/plans/{drafted['id']}", headers=clinician.headers)
    listed = await client.get(f"/v1/patients/{patient['id']}/plans", headers=clinician.headers)
    mine = await client.get(
        "/v1/me/plan", headers=await paired_headers(client, clinician, patient["id"])
    )
    assert read.status_code == listed.status_code == mine.status_code == 200, mine.text

    assert read.json() == active == listed.json()["items"][0] == mine.json()
    assert active["items"][0]["schedule"] == {
        "days_of_week": [1, 3, 5],
        "sessions_per_week": None,
        "times_per_day": 2,
    }
    for rendered in (drafted, active):
        as_the_model_writes_it(rendered)
    from_template, _ = await active_plan(
        client,
        clinician,
        (await new_patient(client, clinician))["id"],
        template_id=GLOBAL_TEMPLATE_ID,
    )
    as_the_model_writes_it(from_template)
