"""A record renders as its contract's model (RecordPublic) writes it, however it is read:
the service renders stored values directly, without validating them again per record."""

import uuid
from typing import Any

from httpx import AsyncClient

from app.adherence.schemas import RecordPublic
from tests.conftest import World
from tests.plans import GLOBAL_TEMPLATE_ID, active_plan, new_patient, paired_headers


def as_the_model_writes_it(rendered: dict[str, Any]) -> None:
    assert list(rendered) == list(RecordPublic.model_fields)
    assert RecordPublic.model_validate(rendered).model_dump(mode="json") == rendered


async def test_every_read_renders_a_record_as_its_model_does(
    client: AsyncClient, world: World
) -> None:
    clinician = world["clinician1"]
    patient = await new_patient(client, clinician)
    plan, _ = await active_plan(client, clinician, patient["id"], template_id=GLOBAL_TEMPLATE_ID)
    app_headers = await paired_headers(client, clinician, patient["id"])
    common = {"plan_id": plan["id"], "plan_version": plan["version"]}
    sent = [
        # In UTC (written back as Z), with a fraction of a second.
        {"performed_at": "2026-11-20T09:15:00.250Z", "status": "completed", "sets_done": 3},
        # Another offset, kept; a skipped session with its reason and a note.
        {
            "performed_at": "2026-11-19T21:05:00-09:30",
            "status": "skipped",
            "skip_reason": "pain",
            "pain": 6,
            "note": "Knee hurt.",
        },
        {
            "performed_at": "2026-11-18T07:00:00+05:45",
            "status": "partial",
            "reps_done": 4,
            "assistive_device": "afo",
        },
    ]
    records = [
        {"id": str(uuid.uuid4()), "item_id": plan["items"][0]["id"], **common, **fields}
        for fields in sent
    ]
    uploaded = await client.post(
        "/v1/adherence/batch", headers=app_headers, json={"records": records}
    )
    first = [result["record"] for result in uploaded.json()["results"]]
    replayed = await client.post(
        "/v1/adherence/batch", headers=app_headers, json={"records": records}
    )
    again = [result["record"] for result in replayed.json()["results"]]
    listed = await client.get(f"/v1/patients/{patient['id']}/adherence", headers=clinician.headers)
    assert listed.status_code == 200, listed.text
    read = []
    for record in records:
        answer = await client.get(f"/v1/adherence/{record['id']}", headers=app_headers)
        read.append(answer.json())
    corrected = await client.patch(
        f"/v1/adherence/{records[0]['id']}",
        headers={**app_headers, "If-Match": f'"{records[0]["id"]}-1"'},
        json={"performed_at": "2026-11-20T10:15:00.5+01:00"},
    )
    assert corrected.status_code == 200, corrected.text
    versions = await client.get(f"/v1/adherence/{records[0]['id']}/versions", headers=app_headers)

    assert first == again == read == listed.json()["items"]  # newest first, as sent
    assert read[0]["performed_at"] == "2026-11-20T09:15:00.250000Z"
    assert read[1]["performed_at"] == "2026-11-19T21:05:00-09:30"
    assert corrected.json()["performed_at"] == "2026-11-20T10:15:00.500000+01:00"
    assert [v["record"] for v in versions.json()["items"]] == [read[0], corrected.json()]
    for rendered in [*read, corrected.json()]:
        as_the_model_writes_it(rendered)
