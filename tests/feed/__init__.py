"""Helpers for following the change feed as a clinic system does."""

import uuid
from typing import Any

from httpx import AsyncClient

from tests.conftest import Actor


async def tail(client: AsyncClient, actor: Actor) -> str:
    """The cursor after every change the actor's clinic has so far."""
    cursor = None
    while True:
        page = await read(client, actor, cursor, limit=1000)
        cursor = page["next_cursor"]
        if not page["items"]:
            return str(cursor)


async def read(client: AsyncClient, actor: Actor, cursor: str | None, **params: Any) -> Any:
    query = {**params, **({"cursor": cursor} if cursor else {})}
    response = await client.get("/v1/changes", params=query, headers=actor.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def follow(client: AsyncClient, actor: Actor, cursor: str, **params: Any) -> list[Any]:
    """Every change after ``cursor`` until an empty page."""
    items: list[Any] = []
    while True:
        page = await read(client, actor, cursor, **params)
        items += page["items"]
        cursor = page["next_cursor"]
        if not page["items"]:
            return items


def clinic_exercise(name: str) -> dict[str, Any]:
    """A clinic exercise to create, with a slug of its own."""
    return {
        "slug": f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:8]}",
        "name": name,
        "summary": "Tapping the toes.",
        "steps": ["Tap."],
        "body_region": "ankle",
        "movements": ["dorsiflexion"],
        "mode": "active",
        "position": "seated",
        "equipment": [],
    }
