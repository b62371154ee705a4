"""Dates and times outside the years Dorsi takes (1900 to 2999) are invalid input with a
pointer, never a 500: in a batch, the record that holds one alone is rejected."""

from typing import Any

import pytest
from httpx import AsyncClient

from tests.adherence.test_batch import patient_with_plan, record, upload
from tests.conftest import Actor, World
from tests.core.problems import assert_problem
from tests.plans import item

# Year 1 in Lisbon (UTC-0:36:45 then) and year 9999 west of Greenwich have no UTC date.
OUT_OF_RANGE = ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
NOT_RFC_3339 = ["0", "1732380000", "2026-11-20T09:15:00", "2026-11-20"]


@pytest.fixture
def clinician(world: World) -> Actor:
    return world["clinician1"]


@pytest.mark.parametrize("performed_at", [*OUT_OF_RANGE, "1899-12-31T23:59:59Z"])
async def test_a_record_out_of_range_alone_is_rejected(
    client: AsyncClient, clinician: Actor, performed_at: str
) -> None:
    patient = await patient_with_plan(client, clinician, time_zone="Europe/Lisbon")
    bad, good = record(patient.plan, performed_at=performed_at), record(patient.plan)
    results = await upload(client, patient.app, bad, good)
    assert [r["result"] for r in results] == ["rejected", "created"]
    assert [e["pointer"] for e in results[0]["errors"]] == ["#/records/0/performed_at"]
    assert results[0]["id"] == bad["id"]
    listed = await client.get(f"/v1/patients/{patient.id}/adherence", headers=clinician.headers)
    assert [r["id"] for r in listed.json()["items"]] == [good["id"]]


@pytest.mark.parametrize("performed_at", [*NOT_RFC_3339, 0])
async def test_a_record_time_is_rfc_3339_text(
    client: AsyncClient, clinician: Actor, performed_at: Any
) -> None:
    patient = await patient_with_plan(client, clinician, time_zone="Europe/Lisbon")
    results = await upload(client, patient.app, record(patient.plan, performed_at=performed_at))
    assert results[0]["result"] == "rejected"
    assert [e["pointer"] for e in results[0]["errors"]] == ["#/records/0/performed_at"]


async def test_a_record_note_with_nul_alone_is_rejected(
    client: AsyncClient, clinician: Actor
) -> None:
    patient = await patient_with_plan(client, clinician)
    bad, good = record(patient.plan, note="felt\x00fine"), record(patient.plan, note="fine\n")
    results = await upload(client, patient.app, bad, good)
    assert [r["result"] for r in results] == ["rejected", "created"]
    assert [e["pointer"] for e in results[0]["errors"]] == ["#/records/0/note"]
    assert results[1]["record"]["note"] == "fine\n"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        *[({"performed_at": moment}, "#/performed_at") for moment in OUT_OF_RANGE],
        ({"performed_at": 0}, "#/performed_at"),
        ({"note": "a\x00b"}, "#/note"),
    ],
)
async def test_a_correction_out_of_range_is_422(
    client: AsyncClient, clinician: Actor, body: dict[str, Any], pointer: str
) -> None:
    patient = await patient_with_plan(client, clinician, time_zone="Europe/Lisbon")
    (result,) = await upload(client, patient.app, record(patient.plan))
    path = f"/v1/adherence/{result['id']}"
    etag = (await client.get(path, headers=clinician.headers)).headers["etag"]
    response = await client.patch(path, json=body, headers={**clinician.headers, "If-Match": etag})
    problem = assert_problem(response, 422, "validation")
    assert [e["pointer"] for e in problem["errors"]] == [pointer]
    assert (await client.get(path, headers=clinician.headers)).headers["etag"] == etag


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"to": "0"}, "#/to"),
        ({"from": "1732380000"}, "#/from"),
        ({"from": "0001-01-01", "to": "0001-01-05"}, "#/from"),
        ({"to": "0001-01-10"}, "#/to"),
        ({"from": "9999-12-25", "to": "9999-12-31"}, "#/from"),
    ],
)
async def test_summary_and_list_dates_are_iso_dates_in_range(
    client: AsyncClient, world: World, params: dict[str, str], pointer: str
) -> None:
    for path in ("adherence/summary", "adherence"):
        response = await client.get(
            f"/v1/patients/{world.patient_a}/{path}",
            params=params,
            headers=world["clinician1"].headers,
        )
        problem = assert_problem(response, 422, "validation")
        assert pointer in [e["pointer"] for e in problem["errors"]]


@pytest.mark.parametrize(
    "dates", [{"start_date": "0001-01-01"}, {"end_date": "9999-12-31"}, {"start_date": "0"}]
)
async def test_plan_dates_are_in_range(
    client: AsyncClient, world: World, dates: dict[str, str]
) -> None:
    response = await client.post(
        f"/v1/patients/{world.patient_a}/plans",
        json={"items": [item()], **dates},
        headers=world["clinician1"].headers,
    )
    problem = assert_problem(response, 422, "validation")
    assert [e["pointer"] for e in problem["errors"]] == [f"#/{next(iter(dates))}"]
