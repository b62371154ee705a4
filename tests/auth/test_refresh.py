"""Refresh-token rotation for patient apps: the reuse window that lets an app refresh from
several calls at once or retry a lost answer, and the reuse after it that signs the
device out as a suspected theft."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import col, select

from app.auth.models import RefreshToken
from app.auth.security import Secrets
from app.core.config import Settings
from app.core.db import transaction
from app.main import create_app, dispose_engines
from tests import contract
from tests.conftest import World, make_client, settings_for
from tests.core.problems import assert_problem

# The window of the app that tests what happens after it: long enough for a request or
# two on a slow test machine, short enough to wait out.
BRIEF_WINDOW_SECONDS = 1
PAST_THE_WINDOW = BRIEF_WINDOW_SECONDS + 0.2


@pytest.fixture
async def brief_window_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app on the same database, with a one-second reuse window."""
    brief = create_app(
        settings_for(settings.database_url, refresh_reuse_seconds=BRIEF_WINDOW_SECONDS)
    )
    yield brief
    await dispose_engines(brief)


def client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client of the app calling from ``address``, its answers checked like any other."""
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(
        transport=transport,
        base_url="http://dorsi.test",
        event_hooks={"response": [contract.check]},
    )


async def paired_app(http: httpx.AsyncClient, world: World) -> dict[str, Any]:
    """A new device of patient A: the tokens its pairing answered."""
    code = await http.post(
        f"/v1/patients/{world.patient_a}/access-codes", headers=world["clinician1"].headers
    )
    assert code.status_code == 201, code.text
    paired = await http.post("/v1/auth/pair", json={"code": code.json()["code"]})
    assert paired.status_code == 200, paired.text
    tokens: dict[str, Any] = paired.json()
    return tokens


async def refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await http.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


async def signed_in(http: httpx.AsyncClient, tokens: dict[str, Any]) -> bool:
    """Whether the app holding ``tokens`` can still read its patient's data."""
    me = await http.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code in (200, 401), me.text
    return me.status_code == 200


async def refresh_tokens_of_device(app: FastAPI, tokens: dict[str, Any]) -> int:
    """How many refresh tokens the device's session has been issued, used or not."""
    secrets: Secrets = app.state.secrets
    claims = secrets.read_access_token(tokens["access_token"])
    assert claims is not None
    async with transaction(app.state.engine) as session:
        count = (
            await session.exec(
                select(func.count())
                .select_from(RefreshToken)
                .where(col(RefreshToken.session_id) == uuid.UUID(claims["sid"]))
            )
        ).one()
    return int(count)


async def test_refresh_rotates_the_token(world: World, client: httpx.AsyncClient) -> None:
    first = await paired_app(client, world)
    rotated = await refresh(client, first["refresh_token"])
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["patient_id"] == str(world.patient_a)
    assert await signed_in(client, second)
    third = await refresh(client, second["refresh_token"])
    assert third.status_code == 200
    assert third.json()["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


@pytest.mark.parametrize("calls", [2, 8])
async def test_concurrent_refreshes_with_one_token_all_succeed_and_the_device_stays_signed_in(
    app: FastAPI, world: World, client: httpx.AsyncClient, calls: int
) -> None:
    """An app waking after a night offline: every call finds its access token expired
    and refreshes with the same refresh token at once."""
    tokens = await paired_app(client, world)
    answers = await asyncio.gather(
        *(refresh(client, tokens["refresh_token"]) for _ in range(calls))
    )
    assert [answer.status_code for answer in answers] == [200] * calls, [
        answer.text for answer in answers
    ]
    bodies = [answer.json() for answer in answers]
    # One successor, whichever answer the app keeps; the family did not grow.
    assert {body["refresh_token"] for body in bodies} == {bodies[0]["refresh_token"]}
    assert bodies[0]["refresh_token"] != tokens["refresh_token"]
    assert await refresh_tokens_of_device(app, tokens) == 2
    for body in bodies:
        assert await signed_in(client, body)
    after = await refresh(client, bodies[0]["refresh_token"])
    assert after.status_code == 200, after.text
    assert await signed_in(client, after.json())


async def test_a_refresh_whose_answer_was_lost_is_retried_within_the_window(
    app: FastAPI, world: World, client: httpx.AsyncClient
) -> None:
    tokens = await paired_app(client, world)
    lost = await refresh(client, tokens["refresh_token"])
    assert lost.status_code == 200
    retried = await refresh(client, tokens["refresh_token"])
    assert retried.status_code == 200, retried.text
    carried_on = retried.json()
    assert carried_on["refresh_token"] == lost.json()["refresh_token"]
    assert carried_on["access_token"] != lost.json()["access_token"]
    assert await refresh_tokens_of_device(app, tokens) == 2
    assert await signed_in(client, carried_on)
    after = await refresh(client, carried_on["refresh_token"])
    assert after.status_code == 200, after.text
    assert await signed_in(client, after.json())


async def test_a_late_answer_within_the_window_names_the_newest_refresh_token(
    world: World, client: httpx.AsyncClient
) -> None:
    """The app already used the successor when a late copy of the first refresh arrives:
    its answer names the token the app holds now, not the one it has spent."""
    first = await paired_app(client, world)
    second = (await refresh(client, first["refresh_token"])).json()
    third = (await refresh(client, second["refresh_token"])).json()
    late = await refresh(client, first["refresh_token"])
    assert late.status_code == 200, late.text
    assert late.json()["refresh_token"] == third["refresh_token"]
    assert await signed_in(client, late.json())
    assert (await refresh(client, third["refresh_token"])).status_code == 200


async def theft_events(http: httpx.AsyncClient, world: World) -> list[dict[str, Any]]:
    listed = await http.get(
        "/v1/audit-events",
        params={"patient_id": str(world.patient_a), "limit": 50},
        headers=world["admin1"].headers,
    )
    assert listed.status_code == 200, listed.text
    return [event for event in listed.json()["items"] if event["action"] == "suspected_theft"]


async def test_reuse_after_the_window_signs_the_device_out_and_is_audited_as_theft(
    brief_window_app: FastAPI, world: World
) -> None:
    async with make_client(brief_window_app) as http:
        first = await paired_app(http, world)
        rotated = await refresh(http, first["refresh_token"])
        second = rotated.json()
        assert (await refresh(http, first["refresh_token"])).status_code == 200
        assert await signed_in(http, second)
        await asyncio.sleep(PAST_THE_WINDOW)

        replay = await refresh(http, first["refresh_token"])
        problem = assert_problem(replay, 401, "unauthorized")
        assert "already used" in problem["detail"]
        # The leak ends the whole device session: the newest tokens stop working too.
        assert not await signed_in(http, second)
        assert_problem(await refresh(http, second["refresh_token"]), 401, "unauthorized")

        claims = brief_window_app.state.secrets.read_access_token(second["access_token"])
        (event,) = [e for e in await theft_events(http, world) if e["resource_id"] == claims["sid"]]
        assert event["resource_type"] == "device"
        assert event["actor_kind"] == "patient"
        assert event["actor_id"] == str(world.patient_a)
        assert event["request_id"] == replay.headers["x-request-id"]


async def test_a_stolen_token_used_after_the_window_by_another_client_signs_the_device_out(
    brief_window_app: FastAPI, world: World
) -> None:
    async with (
        client_at(brief_window_app, "198.51.100.7") as device,
        client_at(brief_window_app, "203.0.113.66") as thief,
    ):
        stolen = await paired_app(device, world)
        current = (await refresh(device, stolen["refresh_token"])).json()
        await asyncio.sleep(PAST_THE_WINDOW)

        assert_problem(await refresh(thief, stolen["refresh_token"]), 401, "unauthorized")

        # The legitimate device is signed out as well: it must pair again.
        assert not await signed_in(device, current)
        assert_problem(await refresh(device, current["refresh_token"]), 401, "unauthorized")
        claims = brief_window_app.state.secrets.read_access_token(current["access_token"])
        (event,) = [
            e for e in await theft_events(device, world) if e["resource_id"] == claims["sid"]
        ]
        assert event["ip"] == "203.0.113.66"


async def test_the_window_never_brings_a_signed_out_device_back(
    brief_window_app: FastAPI, world: World
) -> None:
    """Once a theft is detected, even a token used a moment ago answers 401."""
    async with make_client(brief_window_app) as http:
        first = await paired_app(http, world)
        second = (await refresh(http, first["refresh_token"])).json()
        await asyncio.sleep(PAST_THE_WINDOW)
        third = (await refresh(http, second["refresh_token"])).json()
        assert (await refresh(http, second["refresh_token"])).status_code == 200

        assert_problem(await refresh(http, first["refresh_token"]), 401, "unauthorized")
        for token in (second["refresh_token"], third["refresh_token"]):
            problem = assert_problem(await refresh(http, token), 401, "unauthorized")
            assert problem["detail"] == "The refresh token is not valid."


async def test_a_window_of_zero_takes_any_reuse_as_theft(settings: Settings, world: World) -> None:
    strict = create_app(settings_for(settings.database_url, refresh_reuse_seconds=0))
    try:
        async with make_client(strict) as http:
            first = await paired_app(http, world)
            second = (await refresh(http, first["refresh_token"])).json()
            replay = await refresh(http, first["refresh_token"])
            assert "already used" in assert_problem(replay, 401, "unauthorized")["detail"]
            assert not await signed_in(http, second)
    finally:
        await dispose_engines(strict)
