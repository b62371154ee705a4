"""Text fields refuse control characters (NUL above all: PostgreSQL cannot store it), long
texts keep their tabs and lines, and names made only of spaces are refused."""

import base64
import uuid
from typing import Any

import orjson
import pytest
from httpx import AsyncClient

from tests.conftest import Actor, World
from tests.core.problems import assert_problem
from tests.exercises.test_clinic_exercises import exercise_body
from tests.plans import item

BAD = "\x00"  # stands for the hostile value in a case's body


def template(**fields: Any) -> dict[str, Any]:
    return {"name": "Early program", "items": [item()], **fields}


# (who, method, path, body with BAD where the text goes, pointer to it). Every one of these
# was stored (201) on SQLite and a 500 on PostgreSQL before Dorsi refused them.
BODY_CASES = [
    ("clinician1", "POST", "/v1/plan-templates", template(name=f"T{BAD}N"), "#/name"),
    ("clinician1", "POST", "/v1/plan-templates", template(description=BAD), "#/description"),
    (
        "clinician1",
        "POST",
        "/v1/plan-templates",
        template(items=[item(notes=f"slowly{BAD}")]),
        "#/items/0/notes",
    ),
    ("clinician1", "POST", "/v1/exercises", exercise_body(name=BAD), "#/name"),
    ("clinician1", "POST", "/v1/exercises", exercise_body(summary=BAD), "#/summary"),
    ("clinician1", "POST", "/v1/exercises", exercise_body(steps=["Sit.", BAD]), "#/steps/1"),
    ("clinician1", "POST", "/v1/exercises", exercise_body(cautions=[BAD]), "#/cautions/0"),
    (
        "clinician1",
        "POST",
        "/v1/exercises",
        exercise_body(references=[{"citation": BAD, "kind": "other"}]),
        "#/references/0/citation",
    ),
    (
        "clinician1",
        "POST",
        "/v1/exercises",
        exercise_body(media=[{"kind": "image", "url": "https://m.example/a.png", "caption": BAD}]),
        "#/media/0/caption",
    ),
    ("admin1", "POST", "/v1/api-clients", {"name": BAD, "scopes": ["patients:read"]}, "#/name"),
    (
        "admin1",
        "POST",
        "/v1/clinicians",
        {"email": "new@clinic.example", "password": f"a long pass{BAD}phrase"},
        "#/password",
    ),
    ("anonymous", "POST", "/v1/auth/pair", {"code": f"7KQ4{BAD}M9XT"}, "#/code"),
    (
        "anonymous",
        "POST",
        "/v1/auth/pair",
        {"code": "7KQ4M9XT", "device_name": f"phone{BAD}"},
        "#/device_name",
    ),
    ("anonymous", "POST", "/v1/auth/refresh", {"refresh_token": BAD}, "#/refresh_token"),
    ("anonymous", "POST", "/v1/auth/revoke", {"token": BAD}, "#/token"),
]


def with_text(value: Any, text: str) -> Any:
    """The body with every BAD replaced by ``text``."""
    if isinstance(value, str):
        return value.replace(BAD, text)
    if isinstance(value, list):
        return [with_text(v, text) for v in value]
    if isinstance(value, dict):
        return {k: with_text(v, text) for k, v in value.items()}
    return value


@pytest.mark.parametrize("control", ["\x00", "\x01", "\x1b", "\x1f"])
@pytest.mark.parametrize(("who", "method", "path", "body", "pointer"), BODY_CASES)
async def test_control_characters_in_a_body_are_422_pointing_at_the_field(
    client: AsyncClient,
    world: World,
    who: str,
    method: str,
    path: str,
    body: dict[str, Any],
    pointer: str,
    control: str,
) -> None:
    response = await client.request(
        method, path, json=with_text(body, control), headers=world[who].headers
    )
    problem = assert_problem(response, 422, "validation")
    assert [(e["location"], e["pointer"]) for e in problem["errors"]] == [("body", pointer)]
    assert "Control characters" in problem["errors"][0]["detail"]


async def test_a_plan_title_or_notes_with_nul_are_refused(
    client: AsyncClient, world: World
) -> None:
    path = f"/v1/patients/{world.patient_a}/plans"
    headers = world["clinician1"].headers
    for field in ("title", "notes"):
        body = {"items": [item()], field: "a\x00b"}
        problem = assert_problem(
            await client.post(path, json=body, headers=headers), 422, "validation"
        )
        assert [e["pointer"] for e in problem["errors"]] == [f"#/{field}"]


async def test_the_token_form_refuses_nul(client: AsyncClient) -> None:
    form = {"grant_type": "password", "username": "a\x00b@clinic.example", "password": "x"}
    response = await client.post("/v1/auth/token", data=form)
    assert response.status_code in (400, 422), response.text
    assert "\x00" not in response.text


async def test_long_texts_keep_tabs_and_lines(client: AsyncClient, world: World) -> None:
    clinician = world["clinician2"]
    text = "First:\tsit.\r\nThen:\tstand."
    made = await client.post(
        "/v1/plan-templates",
        json=template(description=text, items=[item(notes=text)]),
        headers=clinician.headers,
    )
    assert made.status_code == 201, made.text
    assert made.json()["description"] == text
    assert made.json()["items"][0]["notes"] == text
    exercise = await client.post(
        "/v1/exercises",
        json=exercise_body(summary=text, steps=[text], cautions=[text]),
        headers=clinician.headers,
    )
    assert exercise.status_code == 201, exercise.text
    assert exercise.json()["steps"] == [text]
    await client.delete(f"/v1/exercises/{exercise.json()['id']}", headers=clinician.headers)
    await client.delete(f"/v1/plan-templates/{made.json()['id']}", headers=clinician.headers)


@pytest.mark.parametrize("name", ["Early\tprogram", "Early\nprogram"])
async def test_names_are_one_line(client: AsyncClient, world: World, name: str) -> None:
    response = await client.post(
        "/v1/plan-templates", json=template(name=name), headers=world["clinician2"].headers
    )
    problem = assert_problem(response, 422, "validation")
    assert [e["pointer"] for e in problem["errors"]] == ["#/name"]


@pytest.mark.parametrize(
    ("who", "path", "body"),
    [
        ("clinician2", "/v1/plan-templates", template(name="   ")),
        ("clinician2", "/v1/exercises", exercise_body(name=" \u3000 ")),
        ("admin1", "/v1/api-clients", {"name": "  ", "scopes": ["patients:read"]}),
    ],
)
async def test_names_empty_after_trimming_are_refused(
    client: AsyncClient, world: World, who: str, path: str, body: dict[str, Any]
) -> None:
    problem = assert_problem(
        await client.post(path, json=body, headers=world[who].headers), 422, "validation"
    )
    assert [e["pointer"] for e in problem["errors"]] == ["#/name"]


async def test_names_are_stored_trimmed(client: AsyncClient, world: World) -> None:
    clinician = world["clinician2"]
    made = await client.post(
        "/v1/plan-templates", json=template(name="  Early program "), headers=clinician.headers
    )
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "Early program"
    await client.delete(f"/v1/plan-templates/{made.json()['id']}", headers=clinician.headers)


@pytest.mark.parametrize(
    ("who", "path", "params", "pointer"),
    [
        ("anonymous", "/v1/exercises", {"q": "toe\x00"}, "#/q"),
        ("clinician1", "/v1/patients", {"reference": "MRN\x00"}, "#/reference"),
    ],
)
async def test_control_characters_in_a_query_are_422(
    client: AsyncClient,
    world: World,
    who: str,
    path: str,
    params: dict[str, str],
    pointer: str,
) -> None:
    response = await client.get(path, params=params, headers=world[who].headers)
    problem = assert_problem(response, 422, "validation")
    assert [(e["location"], e["pointer"]) for e in problem["errors"]] == [("query", pointer)]


@pytest.mark.parametrize("actor", ["anonymous", "clinician1"])
async def test_an_exercise_key_with_nul_names_nothing(
    client: AsyncClient, world: World, actor: str
) -> None:
    response = await client.get("/v1/exercises/toe%00taps", headers=world[actor].headers)
    assert_problem(response, 404, "not-found")


def forged(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("who", "path", "cursor"),
    [
        ("anonymous", "/v1/exercises", forged(["toe\x00", str(uuid.uuid4())])),
        (
            "clinician1",
            "/v1/patients",
            forged(["0001-01-01T00:00:00+01:00", str(uuid.uuid4())]),
        ),
        (
            "clinician1",
            "/v1/adherence/overview",
            forged(["-last_upload_at", "9999-12-31T23:59:59-01:00", str(uuid.uuid4())]),
        ),
    ],
)
async def test_a_forged_cursor_with_what_no_database_takes_is_422(
    client: AsyncClient, world: World, who: str, path: str, cursor: str
) -> None:
    actor: Actor = world[who]
    params = {"cursor": cursor}
    if path.endswith("overview"):
        params["sort"] = "-last_upload_at"
    response = await client.get(path, params=params, headers=actor.headers)
    problem = assert_problem(response, 422, "validation")
    assert [e["pointer"] for e in problem["errors"]] == ["#/cursor"]


@pytest.mark.parametrize("name", ["Early program\r", "\tEarly program", "Early program\x1f"])
async def test_a_control_character_at_the_end_of_a_name_is_refused_not_trimmed(
    world: World, client: AsyncClient, name: str
) -> None:
    """Found by the fuzzer: trimming took a trailing CR away before the control check, so a
    name the contract's pattern refuses was stored."""
    answer = await client.post(
        "/v1/plan-templates", headers=world["clinician1"].headers, json=template(name=name)
    )
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["pointer"] == "#/name"
    assert error["detail"] == "Control characters (U+0000 to U+001F) are not allowed."


async def test_a_name_of_spaces_says_it_is_empty_after_trimming(
    world: World, client: AsyncClient
) -> None:
    answer = await client.post(
        "/v1/plan-templates", headers=world["clinician1"].headers, json=template(name="   ")
    )
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert (error["pointer"], error["detail"]) == (
        "#/name",
        "Should have at least 1 character(s) after trimming.",
    )
