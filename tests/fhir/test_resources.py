"""Every resource the FHIR facade serves is valid R4B FHIR and says what Dorsi's own GET
says: from the demo clinic, and from edge cases made through the API (every plan status,
every session status, each side, both kinds of schedule)."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.columns import utcnow
from app.demo import CLINICIAN_EMAIL, DEMO_PASSWORD, ensure_demo
from tests.conftest import Actor, World, build_world, make_client
from tests.feed import clinic_exercise
from tests.fhir import FHIR, assert_outcome, everything, fhir_get
from tests.plans import (
    GLOBAL_TEMPLATE_ID,
    changed_plan,
    exercise_id,
    item,
    new_patient,
    new_plan,
    paired_headers,
)

SNOMED = "http://snomed.info/sct"


@pytest.fixture(scope="module")
async def clinic(app: FastAPI) -> World:
    """A clinic of its own: its searches find what this module made."""
    return await build_world(app)


@pytest.fixture(scope="module")
def admin(clinic: World) -> Actor:
    return clinic["admin1"]


def record(plan: dict[str, Any], index: int, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "plan_id": plan["id"],
        "plan_version": plan["version"],
        "item_id": plan["items"][index]["id"],
        "performed_at": (utcnow() - timedelta(hours=index + 1)).isoformat(),
        "status": status,
        **fields,
    }


@pytest.fixture(scope="module")
async def made(app: FastAPI, clinic: World, admin: Actor) -> dict[str, Any]:
    """Plans in every status, with items of each side and both schedules; sessions of
    every status under the active one; a clinic exercise with a harder variant; a
    template of the clinic's own."""
    async with make_client(app) as client:
        easy = await client.post(
            "/v1/exercises", json=clinic_exercise("Toe taps"), headers=admin.headers
        )
        assert easy.status_code == 201, easy.text
        hard = await client.post(
            "/v1/exercises",
            json={**clinic_exercise("Toe taps standing"), "easier_variant_id": easy.json()["id"]},
            headers=admin.headers,
        )
        assert hard.status_code == 201, hard.text
        items = [
            item(side="left", sets=3, reps=10, resistance="yellow", notes="Slowly."),
            item(
                "ankle-inversion",
                side="right",
                schedule={"sessions_per_week": 3, "times_per_day": 2},
                hold_seconds=5,
                rest_seconds=30,
            ),
            item("hip-abduction-adduction", side="both"),
            {
                "exercise_id": hard.json()["id"],
                "schedule": {"days_of_week": [2, 4], "times_per_day": 1},
            },  # the patient's affected side
        ]
        template = await client.post(
            "/v1/plan-templates", json={"name": "Ours", "items": items}, headers=admin.headers
        )
        assert template.status_code == 201, template.text
        plans: dict[str, dict[str, Any]] = {}
        patient = await new_patient(client, admin, affected_side="left")
        for status, path in (
            ("draft", []),
            ("cancelled", ["cancelled"]),
            ("completed", ["active", "completed"]),
            ("paused", ["active", "paused"]),
            ("active", ["active"]),
        ):
            plan, etag = await new_plan(client, admin, patient["id"], items=items)
            for step in path:
                plan, etag = await changed_plan(client, admin, plan["id"], etag, status=step)
            plans[status] = plan
        app_headers = await paired_headers(client, admin, patient["id"])
        active = plans["active"]
        sessions = [
            record(active, 0, "completed", sets_done=3, reps_done=10, pain=2, effort=4,
                   assistive_device="afo", note="Fine."),
            record(active, 1, "partial", sets_done=1, hold_seconds=5, pain=7,
                   assistive_device="fes"),
            record(active, 2, "skipped", skip_reason="pain"),
            record(active, 3, "completed", assistive_device="none"),
        ]  # fmt: skip
        upload = await client.post(
            "/v1/adherence/batch", json={"records": sessions}, headers=app_headers
        )
        assert upload.status_code == 200, upload.text
        assert [r["result"] for r in upload.json()["results"]] == ["created"] * 4
    return {
        "patient": patient,
        "plans": plans,
        "records": sessions,
        "template": template.json(),
        "exercises": [easy.json(), hard.json()],
    }


async def test_capability_statement_is_public_and_lists_what_is_served(
    client: AsyncClient, clinic: World
) -> None:
    statement = await fhir_get(client, clinic["anonymous"], "metadata", _format="json")
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["format"] == ["json"]
    rest = statement["rest"][0]
    assert "/v1/auth/token" in rest["security"]["description"]
    served = {r["type"]: r for r in rest["resource"]}
    assert set(served) == {
        "ActivityDefinition",
        "PlanDefinition",
        "Patient",
        "CarePlan",
        "Procedure",
        "Observation",
    }
    assert [p["name"] for p in served["Procedure"]["searchParam"]] == [
        "patient",
        "date",
        "based-on",
        "_lastUpdated",
    ]
    assert {i["code"] for i in served["CarePlan"]["interaction"]} == {
        "read",
        "vread",
        "search-type",
    }


async def test_every_resource_served_from_the_edge_cases_is_valid_r4b(
    client: AsyncClient, admin: Actor, made: dict[str, Any]
) -> None:
    patient_id = made["patient"]["id"]
    # Searches validate each Bundle (and so each resource in it); reads validate each one.
    plans = await everything(client, admin, "CarePlan", patient=patient_id)
    assert len(plans) == 5
    for plan in plans:
        assert plan == await fhir_get(client, admin, f"CarePlan/{plan['id']}")
    procedures = await everything(client, admin, "Procedure", patient=f"Patient/{patient_id}")
    assert len(procedures) == 4
    for procedure in procedures:
        assert procedure == await fhir_get(client, admin, f"Procedure/{procedure['id']}")
    observations = await everything(client, admin, "Observation", patient=patient_id)
    assert len(observations) == 2
    for observation in observations:
        assert observation == await fhir_get(client, admin, f"Observation/{observation['id']}")
    await fhir_get(client, admin, f"Patient/{patient_id}")
    await fhir_get(client, admin, f"PlanDefinition/{made['template']['id']}")
    for exercise in made["exercises"]:
        await fhir_get(client, admin, f"ActivityDefinition/{exercise['id']}")
    catalog = await everything(client, admin, "ActivityDefinition", _count=3)
    assert len(catalog) >= 7 + 2


async def test_plans_map_status_schedule_side_and_dose(
    client: AsyncClient, admin: Actor, made: dict[str, Any]
) -> None:
    expected = {
        "draft": "draft",
        "active": "active",
        "paused": "on-hold",
        "completed": "completed",
        "cancelled": "revoked",
    }
    for dorsi, fhir in expected.items():
        plan = made["plans"][dorsi]
        care_plan = await fhir_get(client, admin, f"CarePlan/{plan['id']}")
        assert care_plan["status"] == fhir
        assert care_plan["meta"]["versionId"] == str(plan["version"])
        assert care_plan["intent"] == "plan"
        assert care_plan["subject"] == {"reference": f"Patient/{made['patient']['id']}"}
    care_plan = await fhir_get(client, admin, f"CarePlan/{made['plans']['active']['id']}")
    first, second, _third, fourth = (a["detail"] for a in care_plan["activity"])
    assert first["code"]["coding"][0] == {
        "system": SNOMED,
        "code": "229065009",
        "display": "Exercise therapy",
    }
    assert first["scheduledTiming"]["repeat"]["dayOfWeek"] == ["mon", "wed", "fri"]
    assert second["scheduledTiming"]["repeat"] == {"frequency": 6, "period": 1, "periodUnit": "wk"}
    sides = {
        c["id"]: c["locationQualifier"][0]["coding"][0]["code"] for c in care_plan["contained"]
    }
    # An item that names no side is for the patient's affected side (left).
    assert sides == {
        "side-1": "419161000",
        "side-2": "419465000",
        "side-3": "51440002",
        "side-4": "419161000",
    }
    assert "side: left" in fourth["description"]
    dose = next(e for e in first["extension"] if e["url"].endswith("/exercise-dose"))
    assert {e["url"]: e["valueInteger"] for e in dose["extension"]} == {"sets": 3, "reps": 10}


async def test_sessions_map_to_procedures_and_pain_to_observations(
    client: AsyncClient, admin: Actor, made: dict[str, Any]
) -> None:
    completed, partial, skipped, plain = made["records"]
    active = made["plans"]["active"]
    done = await fhir_get(client, admin, f"Procedure/{completed['id']}")
    assert done["status"] == "completed"
    assert done["basedOn"] == [
        {"reference": f"CarePlan/{active['id']}/_history/{active['version']}"}
    ]
    assert done["usedCode"] == [{"text": "Ankle-foot orthosis (AFO)"}]
    assert done["code"]["coding"][0]["code"] == "229065009"
    stopped = await fhir_get(client, admin, f"Procedure/{partial['id']}")
    assert stopped["status"] == "stopped"
    assert stopped["outcome"] == {"text": "Partial session"}
    not_done = await fhir_get(client, admin, f"Procedure/{skipped['id']}")
    assert not_done["status"] == "not-done"
    assert not_done["statusReason"]["coding"][0]["code"] == "pain"
    assert "usedCode" not in await fhir_get(client, admin, f"Procedure/{plain['id']}")
    pain = await fhir_get(client, admin, f"Observation/{partial['id']}")
    assert pain["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "72514-3",
        "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
    }
    assert pain["valueInteger"] == 7
    assert pain["partOf"] == [{"reference": f"Procedure/{partial['id']}"}]
    # No pain rated: no Observation.
    response = await client.get(f"{FHIR}/Observation/{skipped['id']}", headers=admin.headers)
    assert_outcome(response, 404, "not-found")


async def test_a_care_plan_reads_at_each_of_its_versions(
    client: AsyncClient, admin: Actor, made: dict[str, Any]
) -> None:
    plan = made["plans"]["paused"]  # draft (1), active (2), paused (3)
    statuses = []
    for version in range(1, plan["version"] + 1):
        old = await fhir_get(client, admin, f"CarePlan/{plan['id']}/_history/{version}")
        assert old["meta"]["versionId"] == str(version)
        statuses.append(old["status"])
    assert statuses == ["draft", "active", "on-hold"]
    response = await client.get(
        f"{FHIR}/CarePlan/{plan['id']}/_history/{plan['version'] + 1}", headers=admin.headers
    )
    assert_outcome(response, 404, "not-found")


async def test_the_demo_clinic_is_served_as_valid_fhir(app: FastAPI, client: AsyncClient) -> None:
    demo = await ensure_demo(app.state.engine, app.state.secrets, timedelta(minutes=5))
    token = await client.post(
        "/v1/auth/token",
        data={"grant_type": "password", "username": CLINICIAN_EMAIL, "password": DEMO_PASSWORD},
    )
    assert token.status_code == 200, token.text
    clinician = Actor("demo", token.json()["access_token"])
    patients = await everything(client, clinician, "Patient")
    assert demo.patient_id in {p["id"] for p in patients}
    for patient in patients:
        assert "name" not in patient
        await fhir_get(client, clinician, f"Patient/{patient['id']}")
    for exercise in await everything(client, clinician, "ActivityDefinition"):
        await fhir_get(client, clinician, f"ActivityDefinition/{exercise['id']}")
    template = await fhir_get(client, clinician, f"PlanDefinition/{GLOBAL_TEMPLATE_ID}")
    assert all(
        a["definitionCanonical"].startswith("https://dorsi.dev/") for a in template["action"]
    )


async def test_the_catalog_cites_its_sources_and_links_its_variants(
    client: AsyncClient, admin: Actor, made: dict[str, Any]
) -> None:
    passive = await fhir_get(
        client, admin, f"ActivityDefinition/{exercise_id('ankle-abduction-adduction')}"
    )
    kinds = [
        (a["type"], a.get("display") or a.get("citation", "")) for a in passive["relatedArtifact"]
    ]
    assert kinds[0][0] == "documentation"
    assert "Foot Drop" in kinds[0][1]
    assert kinds[1][0] == "citation"
    assert "Mount J, Dacko S" in kinds[1][1]
    harder = [a for a in passive["relatedArtifact"] if a["type"] == "successor"]
    assert harder[0]["resource"].endswith(exercise_id("ankle-abduction-adduction-active"))
    dorsiflexion = await fhir_get(
        client, admin, f"ActivityDefinition/{exercise_id('ankle-dorsiflexion')}"
    )
    assert dorsiflexion["dosage"][0]["timing"]["repeat"] == {
        "frequency": 3,
        "period": 1,
        "periodUnit": "wk",
    }
    clinic_hard = await fhir_get(client, admin, f"ActivityDefinition/{made['exercises'][1]['id']}")
    easier = [a for a in clinic_hard["relatedArtifact"] if a["type"] == "predecessor"]
    assert easier[0]["resource"].endswith(made["exercises"][0]["id"])
