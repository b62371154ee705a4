"""FHIR searches: each supported parameter filters, pages follow `link.next` with no
repeat or gap, and anything unsupported answers 400 with an OperationOutcome."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.columns import utcnow
from tests.conftest import Actor, World, build_world, make_client
from tests.fhir import FHIR, assert_outcome, everything, fhir_get
from tests.plans import active_plan, item, new_patient, new_plan, paired_headers


@pytest.fixture(scope="module")
async def clinic(app: FastAPI) -> World:
    return await build_world(app)


@pytest.fixture(scope="module")
def admin(clinic: World) -> Actor:
    return clinic["admin1"]


@pytest.fixture(scope="module")
async def sessions(app: FastAPI, admin: Actor) -> dict[str, Any]:
    """A patient with an active plan and a draft one, and seven sessions a day apart,
    the newest an hour ago; every other one rates pain."""
    async with make_client(app) as client:
        patient = await new_patient(client, admin, time_zone="UTC")
        plan, _ = await active_plan(client, admin, patient["id"], items=[item()])
        draft, _ = await new_plan(client, admin, patient["id"])
        headers = await paired_headers(client, admin, patient["id"])
        now = utcnow().replace(microsecond=0)
        records = [
            {
                "id": str(uuid.uuid4()),
                "plan_id": plan["id"],
                "plan_version": plan["version"],
                "item_id": plan["items"][0]["id"],
                "performed_at": (now - timedelta(days=day, hours=1)).isoformat(),
                "status": "completed",
                **({"pain": day} if day % 2 == 0 else {}),
            }
            for day in range(7)
        ]
        upload = await client.post(
            "/v1/adherence/batch", json={"records": records}, headers=headers
        )
        assert upload.status_code == 200, upload.text
    return {"patient": patient, "plan": plan, "draft": draft, "records": records, "now": now}


async def test_pages_follow_link_next_without_repeat_or_gap(
    client: AsyncClient, admin: Actor, sessions: dict[str, Any]
) -> None:
    patient_id = sessions["patient"]["id"]
    found = await everything(client, admin, "Procedure", patient=patient_id, _count=2)
    assert [p["id"] for p in found] == [r["id"] for r in sessions["records"]]  # newest first
    first = await fhir_get(client, admin, "Procedure", patient=patient_id, _count=2)
    assert len(first["entry"]) == 2
    assert first["entry"][0]["fullUrl"].endswith(f"{FHIR}/Procedure/{found[0]['id']}")


async def test_each_parameter_filters(
    client: AsyncClient, admin: Actor, sessions: dict[str, Any]
) -> None:
    patient_id = sessions["patient"]["id"]
    records = sessions["records"]
    now = sessions["now"]
    # date: an instant compares with when the session was done.
    since = (now - timedelta(days=2, hours=2)).isoformat()
    recent = await everything(client, admin, "Procedure", patient=patient_id, date=f"ge{since}")
    assert [p["id"] for p in recent] == [r["id"] for r in records[:3]]
    # A date compares with the patient's local date (UTC here).
    day = (now - timedelta(days=3, hours=1)).date().isoformat()
    on_day = await everything(client, admin, "Procedure", patient=patient_id, date=day)
    assert [p["id"] for p in on_day] == [records[3]["id"]]
    based_on = await everything(
        client, admin, "Procedure", **{"based-on": f"CarePlan/{sessions['plan']['id']}"}
    )
    assert len(based_on) == 7
    nothing = await everything(client, admin, "Procedure", **{"based-on": str(uuid.uuid4())})
    assert nothing == []
    # _lastUpdated: everything was written before now + 1 minute, nothing after.
    later = (utcnow() + timedelta(minutes=1)).isoformat()
    assert len(await everything(client, admin, "Procedure", _lastUpdated=f"lt{later}")) >= 7
    assert await everything(client, admin, "Procedure", _lastUpdated=f"gt{later}") == []
    # Observations: pain only, by code.
    pain = await everything(
        client, admin, "Observation", patient=patient_id, code="http://loinc.org|72514-3"
    )
    assert [o["valueInteger"] for o in pain] == [0, 2, 4, 6]
    assert await everything(client, admin, "Observation", code="http://loinc.org|8867-4") == []
    # CarePlan by status, FHIR's names.
    active = await everything(client, admin, "CarePlan", patient=patient_id, status="active")
    assert [c["id"] for c in active] == [sessions["plan"]["id"]]
    both = await everything(client, admin, "CarePlan", patient=patient_id, status="draft,active")
    assert len(both) == 2
    # Patient by the clinic's own reference, with or without the clinic's system.
    reference = sessions["patient"]["reference"]
    by_value = await everything(client, admin, "Patient", identifier=reference)
    assert [p["id"] for p in by_value] == [patient_id]
    system = by_value[0]["identifier"][0]["system"]
    assert len(await everything(client, admin, "Patient", identifier=f"{system}|{reference}")) == 1
    other = f"https://elsewhere.example/ids|{reference}"
    assert await everything(client, admin, "Patient", identifier=other) == []
    # ActivityDefinition by title (from its start, any case) and status.
    dorsiflexion = await everything(client, admin, "ActivityDefinition", title="ankle dorsi")
    assert [a["title"] for a in dorsiflexion] == ["Ankle dorsiflexion with a band or towel"]
    assert await everything(client, admin, "ActivityDefinition", status="retired") == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("Procedure", {"performer": "x"}),
        ("Procedure", {"patient:missing": "true"}),
        ("Patient", {"name": "Smith"}),
        ("Procedure", {"_count": "1001"}),
        ("Procedure", {"_count": "0"}),
        ("Procedure", {"date": "ge2026-13-01"}),
        ("Procedure", {"date": "2026-11-20T10:00:00"}),
        ("Procedure", {"_lastUpdated": "2026-11-20"}),
        ("Procedure", {"_lastUpdated": "sa2026-11-20"}),
        ("CarePlan", {"status": "paused"}),
        ("CarePlan", {"patient": "Group/1"}),
        ("Procedure", {"_cursor": "not-a-cursor"}),
        ("Patient", {"_format": "xml"}),
        ("Patient/00000000-0000-0000-0000-000000000000", {"_elements": "id"}),
    ],
)
async def test_what_is_not_supported_answers_400(
    client: AsyncClient, admin: Actor, path: str, params: dict[str, str]
) -> None:
    response = await client.get(f"{FHIR}/{path}", params=params, headers=admin.headers)
    outcome = assert_outcome(response, 400, "invalid")
    assert outcome["issue"][0]["diagnostics"]


async def test_errors_are_operation_outcomes_everywhere_under_the_base(
    client: AsyncClient, admin: Actor, clinic: World
) -> None:
    assert_outcome(await client.get(f"{FHIR}/Patient"), 401, "login")
    assert_outcome(
        await client.get(f"{FHIR}/Patient", headers=clinic["patient_a"].headers), 403, "forbidden"
    )
    missing = await client.get(f"{FHIR}/Patient/{uuid.uuid4()}", headers=admin.headers)
    assert_outcome(missing, 404, "not-found")
    assert_outcome(await client.get(f"{FHIR}/Encounter", headers=admin.headers), 404)
    assert_outcome(await client.get(f"{FHIR}/Patient/not-a-uuid", headers=admin.headers), 404)
    assert_outcome(await client.delete(f"{FHIR}/Patient", headers=admin.headers), 405)


async def test_scopes_decide_the_types_a_clinic_system_reads(
    app: FastAPI, client: AsyncClient, admin: Actor, sessions: dict[str, Any]
) -> None:
    created = await client.post(
        "/v1/api-clients",
        json={"name": "Rehab EHR", "scopes": ["patients:read"]},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    token = await client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": created.json()["id"],
            "client_secret": created.json()["client_secret"],
        },
    )
    assert token.status_code == 200, token.text
    system = Actor("ehr", token.json()["access_token"])
    patient_id = sessions["patient"]["id"]
    await fhir_get(client, system, f"Patient/{patient_id}")
    for path in (f"CarePlan/{sessions['plan']['id']}", "Procedure", "Observation"):
        response = await client.get(f"{FHIR}/{path}", headers=system.headers)
        assert_outcome(response, 403, "forbidden")


async def test_reads_and_searches_are_audited_as_the_rest_api_audits_them(
    client: AsyncClient, admin: Actor, sessions: dict[str, Any]
) -> None:
    patient_id = sessions["patient"]["id"]
    await fhir_get(client, admin, f"Patient/{patient_id}")
    await fhir_get(client, admin, "Procedure", patient=patient_id, _count=3)
    trail = await client.get(
        "/v1/audit-events", params={"patient_id": patient_id, "limit": 10}, headers=admin.headers
    )
    assert trail.status_code == 200, trail.text
    events = [(e["action"], e["resource_type"]) for e in trail.json()["items"]]
    assert events[:4] == [("list", "adherence_record")] * 3 + [("read", "patient")]
