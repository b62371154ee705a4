"""Plan templates: the shipped foot-drop program, read-only, and each clinic's own."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.conftest import Actor, World
from tests.core.problems import assert_problem
from tests.plans import EVERY_DAY, GLOBAL_TEMPLATE_ID, exercise_id, item, version_tag

ARTICLE_ORDER = [
    "assisted-heel-raises",
    "ankle-dorsiflexion",
    "ankle-abduction-adduction",
    "ankle-inversion",
    "ankle-eversion",
    "hip-rotation",
    "hip-abduction-adduction",
]
DOSE_FIELDS = ("sets", "reps", "hold_seconds", "rest_seconds")
# The article's dosage, and nothing it does not say.
ARTICLE_DOSES: dict[str, dict[str, int]] = {
    "assisted-heel-raises": {"reps": 10},
    "ankle-dorsiflexion": {"sets": 3, "reps": 10},
    "ankle-eversion": {"reps": 10},
}

Create = Callable[..., Awaitable[Response]]


def template_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": f"Early stroke program {uuid.uuid4().hex[:8]}",
        "description": "Two exercises to start with.",
        "items": [item(sets=2, reps=12), item("ankle-eversion", reps=8)],
        **fields,
    }


@pytest.fixture
async def create(client: AsyncClient, world: World) -> AsyncIterator[Create]:
    """POSTs a template (as clinician 1 unless told); deletes what it made afterwards."""
    made: list[tuple[Actor, str]] = []

    async def post(actor: Actor | None = None, **fields: Any) -> Response:
        actor = actor or world["clinician1"]
        response = await client.post(
            "/v1/plan-templates", json=template_body(**fields), headers=actor.headers
        )
        if response.status_code == 201:
            made.append((actor, response.json()["id"]))
        return response

    yield post
    for actor, template_id in made:
        await client.delete(f"/v1/plan-templates/{template_id}", headers=actor.headers)


async def created(create: Create, actor: Actor | None = None, **fields: Any) -> dict[str, Any]:
    response = await create(actor, **fields)
    assert response.status_code == 201, response.text
    template: dict[str, Any] = response.json()
    return template


async def listed(client: AsyncClient, actor: Actor) -> list[dict[str, Any]]:
    """Every template the actor sees, following the cursor to the end."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/plan-templates", params=params, headers=actor.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def pointers(response: Response) -> list[str]:
    problem = assert_problem(response, 422, "validation")
    return [error["pointer"] for error in problem["errors"]]


# --- the global template ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clinician1", "clinician2", "client_all"])
async def test_the_global_template_is_the_articles_program(
    client: AsyncClient, world: World, name: str
) -> None:
    templates = [t for t in await listed(client, world[name]) if t["owner"] == "global"]
    assert [t["name"] for t in templates] == ["Foot drop home program"]
    (template,) = templates
    assert template["id"] == GLOBAL_TEMPLATE_ID
    assert template["version"] == 1
    assert [i["exercise"]["slug"] for i in template["items"]] == ARTICLE_ORDER
    assert [i["exercise_id"] for i in template["items"]] == [exercise_id(s) for s in ARTICLE_ORDER]
    assert [i["order"] for i in template["items"]] == list(range(1, 8))
    for entry in template["items"]:
        slug = entry["exercise"]["slug"]
        expected = ARTICLE_DOSES.get(slug, {})
        assert {f: entry[f] for f in DOSE_FIELDS} == {f: expected.get(f) for f in DOSE_FIELDS}
        # The side is the patient's; the article names no band colour and no notes.
        assert (entry["side"], entry["resistance"], entry["notes"]) == (None, None, None)
    schedules = {i["exercise"]["slug"]: i["schedule"] for i in template["items"]}
    assert schedules.pop("ankle-dorsiflexion") == {
        "days_of_week": None,
        "sessions_per_week": 3,
        "times_per_day": 1,
    }
    for schedule in schedules.values():
        assert schedule["sessions_per_week"] is None
        assert schedule["days_of_week"] == EVERY_DAY

    fetched = await client.get(
        f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=world[name].headers
    )
    assert fetched.status_code == 200
    assert fetched.json() == template
    assert version_tag(fetched.headers["etag"]) == f'"{GLOBAL_TEMPLATE_ID}-1"'


@pytest.mark.parametrize(
    ("method", "body"),
    [("PATCH", {"name": "Ours now"}), ("DELETE", None)],
)
async def test_the_global_template_is_read_only(
    client: AsyncClient, world: World, method: str, body: dict[str, Any] | None
) -> None:
    before = await client.get(
        f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=world["admin1"].headers
    )
    response = await client.request(
        method,
        f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}",
        json=body,
        headers=world["admin1"].headers,
    )
    assert_problem(response, 403, "forbidden")
    after = await client.get(
        f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=world["admin1"].headers
    )
    assert after.json() == before.json()


async def test_copying_the_global_template_makes_an_editable_clinic_template(
    client: AsyncClient, world: World, create: Create
) -> None:
    clinician = world["clinician1"]
    response = await client.post(
        f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}/copy", json={}, headers=clinician.headers
    )
    assert response.status_code == 201, response.text
    copy = response.json()
    try:
        source = (
            await client.get(f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=clinician.headers)
        ).json()
        assert response.headers["location"] == f"/v1/plan-templates/{copy['id']}"
        assert copy["id"] != GLOBAL_TEMPLATE_ID
        assert (copy["owner"], copy["version"], copy["name"]) == ("clinic", 1, source["name"])

        def content(entry: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in entry.items() if k != "id"}

        assert [content(i) for i in copy["items"]] == [content(i) for i in source["items"]]
        assert not {i["id"] for i in copy["items"]} & {i["id"] for i in source["items"]}

        edited = await client.patch(
            f"/v1/plan-templates/{copy['id']}",
            json={"name": "Our foot drop program", "items": [item(sets=4, reps=12)]},
            headers=clinician.headers,
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["version"] == 2
        assert [i["sets"] for i in edited.json()["items"]] == [4]
        untouched = await client.get(
            f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}", headers=clinician.headers
        )
        assert untouched.json() == source
        # Clinic 2 neither sees clinic 1's copy nor is its own copy list affected.
        assert copy["id"] not in {t["id"] for t in await listed(client, world["clinician2"])}
        named = await client.post(
            f"/v1/plan-templates/{GLOBAL_TEMPLATE_ID}/copy",
            json={"name": "Renamed copy"},
            headers=world["clinician2"].headers,
        )
        assert named.status_code == 201
        assert named.json()["name"] == "Renamed copy"
        await client.delete(
            f"/v1/plan-templates/{named.json()['id']}", headers=world["clinician2"].headers
        )
    finally:
        await client.delete(f"/v1/plan-templates/{copy['id']}", headers=clinician.headers)


# --- a clinic's own templates ------------------------------------------------------------


async def test_a_clinic_creates_reads_edits_and_deletes_its_template(
    client: AsyncClient, world: World, create: Create
) -> None:
    clinician = world["clinician1"]
    body = template_body()
    response = await create(**body)
    assert response.status_code == 201, response.text
    template = response.json()
    location = f"/v1/plan-templates/{template['id']}"
    assert response.headers["location"] == location
    assert version_tag(response.headers["etag"]) == f'"{template["id"]}-1"'
    assert (template["owner"], template["version"]) == ("clinic", 1)
    assert (template["name"], template["description"]) == (body["name"], body["description"])
    assert [(i["exercise"]["slug"], i["sets"], i["reps"]) for i in template["items"]] == [
        ("ankle-dorsiflexion", 2, 12),
        ("ankle-eversion", None, 8),
    ]
    assert template["id"] in {t["id"] for t in await listed(client, clinician)}
    fetched = await client.get(location, headers=world["admin1"].headers)
    assert fetched.json() == template

    stale = await client.patch(
        location, json={"name": "Stale"}, headers={**clinician.headers, "If-Match": '"nope-1"'}
    )
    assert_problem(stale, 412, "precondition-failed")
    edited = await client.patch(
        location,
        json={"name": "Renamed", "items": [item("hip-rotation", reps=5)]},
        headers={**clinician.headers, "If-Match": response.headers["etag"]},
    )
    assert edited.status_code == 200, edited.text
    assert edited.headers["etag"] == f'"{template["id"]}-2"'
    assert (edited.json()["name"], edited.json()["version"]) == ("Renamed", 2)
    assert [i["exercise"]["slug"] for i in edited.json()["items"]] == ["hip-rotation"]
    assert (await client.get(location, headers=clinician.headers)).json() == edited.json()

    deleted = await client.delete(location, headers=clinician.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(await client.get(location, headers=clinician.headers), 404, "not-found")
    assert template["id"] not in {t["id"] for t in await listed(client, clinician)}
    assert_problem(await client.delete(location, headers=clinician.headers), 404, "not-found")


async def test_another_clinic_never_sees_a_clinics_template(
    client: AsyncClient, world: World, create: Create
) -> None:
    template = await created(create)
    location = f"/v1/plan-templates/{template['id']}"
    other = world["clinician2"].headers
    assert template["id"] not in {t["id"] for t in await listed(client, world["clinician2"])}
    assert_problem(await client.get(location, headers=other), 404, "not-found")
    assert_problem(
        await client.patch(location, json={"name": "X"}, headers=other), 404, "not-found"
    )
    assert_problem(await client.delete(location, headers=other), 404, "not-found")
    copied = await client.post(f"{location}/copy", json={}, headers=other)
    assert_problem(copied, 404, "not-found")
    # Still there, unchanged, for its own clinic.
    assert (await client.get(location, headers=world["clinician1"].headers)).json() == template


@pytest.mark.parametrize(
    ("name", "status"),
    [("anonymous", 401), ("patient_a", 403), ("client_none", 403)],
)
async def test_only_staff_with_the_plan_scopes_reach_templates(
    client: AsyncClient, world: World, name: str, status: int
) -> None:
    headers = world[name].headers
    assert (await client.get("/v1/plan-templates", headers=headers)).status_code == status
    posted = await client.post("/v1/plan-templates", json=template_body(), headers=headers)
    assert posted.status_code == status


# --- validation ---------------------------------------------------------------------------

UNKNOWN = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("entry", "pointer"),
    [
        (item(exercise_id=UNKNOWN), "#/items/0/exercise_id"),
        (item(schedule={"days_of_week": [1], "sessions_per_week": 3}), "#/items/0/schedule"),
        (item(schedule={"times_per_day": 1}), "#/items/0/schedule"),
        (item(schedule={"days_of_week": [8]}), "#/items/0/schedule/days_of_week/0"),
        (item(schedule={"days_of_week": [0]}), "#/items/0/schedule/days_of_week/0"),
        (item(schedule={"days_of_week": [2, 2]}), "#/items/0/schedule"),
        (item(schedule={"days_of_week": []}), "#/items/0/schedule/days_of_week"),
        (item(schedule={"sessions_per_week": 22}), "#/items/0/schedule/sessions_per_week"),
        (item(sets=21), "#/items/0/sets"),
        (item(reps=0), "#/items/0/reps"),
        (item(hold_seconds=601), "#/items/0/hold_seconds"),
        (item(rest_seconds=-1), "#/items/0/rest_seconds"),
        (item(side="middle"), "#/items/0/side"),
        (item(resistance="purple"), "#/items/0/resistance"),
        (item(colour="red"), "#/items/0/colour"),
        ({"schedule": {"days_of_week": [1]}}, "#/items/0/exercise_id"),
    ],
)
async def test_invalid_items_are_422_pointing_at_the_field(
    client: AsyncClient, world: World, create: Create, entry: dict[str, Any], pointer: str
) -> None:
    assert pointers(await create(items=[entry])) == [pointer]
    template = await created(create)
    patched = await client.patch(
        f"/v1/plan-templates/{template['id']}",
        json={"items": [entry]},
        headers=world["clinician1"].headers,
    )
    assert pointers(patched) == [pointer]
    # Nothing was half-written.
    unchanged = await client.get(
        f"/v1/plan-templates/{template['id']}", headers=world["clinician1"].headers
    )
    assert unchanged.json() == template


async def test_an_unknown_exercise_is_named_by_its_index(create: Create) -> None:
    items = [item(), item(exercise_id=UNKNOWN), item("hip-rotation"), item(exercise_id=UNKNOWN)]
    assert pointers(await create(items=items)) == [
        "#/items/1/exercise_id",
        "#/items/3/exercise_id",
    ]


async def test_a_template_needs_one_to_thirty_items(create: Create) -> None:
    assert pointers(await create(items=[])) == ["#/items"]
    assert pointers(await create(items=[item()] * 31)) == ["#/items"]
    assert (await create(items=[item()] * 30)).status_code == 201


async def test_an_exercise_of_another_clinic_cannot_be_used(
    client: AsyncClient, world: World, create: Create
) -> None:
    tag = uuid.uuid4().hex[:10]
    theirs = await client.post(
        "/v1/exercises",
        json={
            "slug": f"towel-scrunches-{tag}",
            "name": f"Towel scrunches {tag}",
            "summary": "Scrunching a towel with the toes.",
            "steps": ["Sit with a towel under the foot.", "Scrunch it toward you."],
            "body_region": "ankle",
            "movements": ["plantarflexion"],
            "mode": "active",
            "position": "seated",
        },
        headers=world["clinician2"].headers,
    )
    assert theirs.status_code == 201, theirs.text
    exercise = theirs.json()["id"]
    try:
        refused = await create(items=[item(exercise_id=exercise)])
        assert pointers(refused) == ["#/items/0/exercise_id"]
        # Its own clinic may use it, until it deletes it.
        own = await created(create, world["clinician2"], items=[item(exercise_id=exercise)])
        assert own["items"][0]["exercise"]["id"] == exercise
    finally:
        await client.delete(f"/v1/exercises/{exercise}", headers=world["clinician2"].headers)
    gone = await create(world["clinician2"], items=[item(exercise_id=exercise)])
    assert pointers(gone) == ["#/items/0/exercise_id"]
    # A template made before the deletion still shows the exercise it was made with.
    kept = await client.get(f"/v1/plan-templates/{own['id']}", headers=world["clinician2"].headers)
    assert kept.status_code == 200, kept.text
    assert kept.json()["items"][0]["exercise"]["id"] == exercise
