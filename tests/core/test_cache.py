"""The in-process public cache keeps only what varies on nothing it does not key on: a
browser's cross-origin call gets its own CORS headers, whatever was asked before it."""

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.config import Settings
from app.main import create_app, dispose_engines
from tests.conftest import make_client, settings_for

ALLOWED = "https://app.dorsi.test"
CATALOG = "/v1/exercises"


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A fresh app (and so an empty cache) that allows one browser origin."""
    app: FastAPI = create_app(settings_for(settings.database_url, cors_origins=[ALLOWED]))
    try:
        async with make_client(app) as http:
            yield http
    finally:
        await dispose_engines(app)


async def test_an_allowed_origin_after_a_cached_plain_request_gets_its_cors_header(
    cors_client: AsyncClient,
) -> None:
    plain = await cors_client.get(CATALOG)
    again = await cors_client.get(CATALOG)  # answered from the cache
    assert plain.status_code == again.status_code == 200
    assert again.headers["etag"] == plain.headers["etag"]
    browser = await cors_client.get(CATALOG, headers={"Origin": ALLOWED})
    assert browser.status_code == 200
    assert browser.headers["access-control-allow-origin"] == ALLOWED
    assert browser.json() == plain.json()


async def test_a_plain_request_after_an_allowed_origin_gets_no_cors_header(
    cors_client: AsyncClient,
) -> None:
    browser = await cors_client.get(CATALOG, headers={"Origin": ALLOWED})
    assert browser.headers["access-control-allow-origin"] == ALLOWED
    for _ in range(2):  # the first fills the cache, the second is answered from it
        plain = await cors_client.get(CATALOG)
        assert plain.status_code == 200
        assert "access-control-allow-origin" not in plain.headers
    other = await cors_client.get(CATALOG, headers={"Origin": "https://elsewhere.test"})
    assert "access-control-allow-origin" not in other.headers
