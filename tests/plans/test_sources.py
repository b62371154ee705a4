"""Where each template and plan item's dose and schedule came from: the article, Dorsi's
default or the clinician, kept while they stay unchanged."""

from typing import Any

import pytest
from httpx import AsyncClient

from app.exercises.catalog import read_catalog
from tests.conftest import Actor, World
from tests.plans import (
    GLOBAL_TEMPLATE_ID,
    as_input,
    changed_plan,
    item,
    new_patient,
    new_plan,
)

DOSE = ("sets", "reps", "hold_seconds", "rest_seconds")


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


def sources(items: list[dict[str, Any]]) -> dict[str, tuple[str | None, str]]:
    return {i["exercise"]["slug"]: (i["dose_source"], i["schedule_source"]) for i in items}


async def test_the_global_template_marks_its_daily_schedules_as_dorsis_default(
    client: AsyncClient, clinician: Actor
) -> None:
    answer = await client.get(f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=clinician.headers)
    assert answer.status_code == 200, answer.text
    assert sources(answer.json()["items"]) == {
        "assisted-heel-raises": ("article", "default"),  # "rep ten times"
        "ankle-dorsiflexion": ("article", "article"),  # "three sets of 10 ... three days a week"
        "ankle-abduction-adduction": (None, "default"),
        "ankle-inversion": (None, "default"),
        "ankle-eversion": ("article", "default"),  # "Rep 10 times more."
        "hip-rotation": (None, "default"),
        "hip-abduction-adduction": (None, "default"),
    }


def test_the_shipped_sources_say_what_the_catalog_takes_from_the_article() -> None:
    """An item's dose is the article's exactly when it is the dose the catalog records from
    the article, and so is its schedule; every other schedule is Dorsi's default."""
    catalog = read_catalog()
    doses = {e["slug"]: e["default_dose"] or {} for e in catalog["exercises"]}
    for template in catalog["templates"]:
        for entry in template["items"]:
            article = doses[entry["exercise"]]
            dose = {k: entry[k] for k in DOSE if entry.get(k) is not None}
            assert entry.get("dose_source") == (
                ("article" if dose == {k: article[k] for k in DOSE if k in article} else None)
                if dose
                else None
            ), entry
            weekly = article.get("sessions_per_week")
            by_article = weekly is not None and entry["schedule"] == {"sessions_per_week": weekly}
            assert entry["schedule_source"] == ("article" if by_article else "default"), entry


async def test_a_plan_keeps_the_templates_sources_until_the_clinician_changes_them(
    client: AsyncClient, clinician: Actor
) -> None:
    patient = await new_patient(client, clinician)
    plan, etag = await new_plan(client, clinician, patient["id"], template_id=GLOBAL_TEMPLATE_ID)
    template = await client.get(
        f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=clinician.headers
    )
    assert sources(plan["items"]) == sources(template.json()["items"])

    by_slug = {i["exercise"]["slug"]: i for i in plan["items"]}
    edited, _ = await changed_plan(
        client,
        clinician,
        plan["id"],
        etag,
        items=[
            as_input(by_slug["ankle-dorsiflexion"], reps=12),
            as_input(by_slug["ankle-eversion"], schedule={"days_of_week": [1, 3, 5]}),
            as_input(by_slug["assisted-heel-raises"]),
            item("hip-rotation", reps=5),
        ],
    )
    assert sources(edited["items"]) == {
        "ankle-dorsiflexion": ("clinician", "article"),
        "ankle-eversion": ("article", "clinician"),
        "assisted-heel-raises": ("article", "default"),
        "hip-rotation": ("clinician", "clinician"),
    }


async def test_clinic_templates_are_the_clinicians_and_copies_keep_their_sources(
    client: AsyncClient, clinician: Actor
) -> None:
    made = await client.post(
        "/v1/plan-templates",
        json={"name": "Own", "items": [item(), item("hip-rotation", sets=2)]},
        headers=clinician.headers,
    )
    assert made.status_code == 201, made.text
    assert [(i["dose_source"], i["schedule_source"]) for i in made.json()["items"]] == [
        (None, "clinician"),
        ("clinician", "clinician"),
    ]
    copied = await client.post(
        f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}/copy", json={}, headers=clinician.headers
    )
    assert copied.status_code == 201, copied.text
    copy = copied.json()
    assert sources(copy["items"]) == sources(
        (
            await client.get(f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=clinician.headers)
        ).json()["items"]
    )
    # An edit that changes one item's dose leaves the others' sources as they were.
    items = [as_input(i) for i in copy["items"]]
    for entry in items:
        entry.pop("id")
        if entry["exercise_id"] == copy["items"][0]["exercise_id"]:
            entry["reps"] = 15
    updated = await client.patch(
        f"/v1/plan-templates/{copy['id']}", json={"items": items}, headers=clinician.headers
    )
    assert updated.status_code == 200, updated.text
    after = sources(updated.json()["items"])
    assert after["assisted-heel-raises"] == ("clinician", "default")
    assert after["ankle-dorsiflexion"] == ("article", "article")
