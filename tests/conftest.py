"""Every test runs against a database whose schema `alembic upgrade head` made.

The suite runs once per backend: SQLite always, PostgreSQL when it is reachable (and it
must be when DORSI_REQUIRE_POSTGRES=1, as in CI). Each run creates its own databases.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from app.core import migrate
from app.core.config import Settings
from app.core.db import make_engine
from app.main import create_app

POSTGRES_ADMIN_URL = os.environ.get(
    "DORSI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("DORSI_REQUIRE_POSTGRES") == "1"

DatabaseFactory = Callable[[], str]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        try:
            psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
        except psycopg.OperationalError as error:
            if REQUIRE_POSTGRES:
                pytest.fail(f"PostgreSQL is required but unreachable: {error}")
            pytest.skip("PostgreSQL is not reachable")
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def new_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatabaseFactory]:
    """Makes empty databases on the current backend; all are dropped at the end."""
    created: list[str] = []

    def make() -> str:
        name = f"dorsi_test_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / name}.db"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    yield make
    if created:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            for name in created:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated(url: str) -> str:
    engine = make_engine(Settings(database_url=url))
    try:
        migrate.upgrade(engine)
        migrate.seed(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def settings(new_database: DatabaseFactory) -> Settings:
    return Settings(database_url=migrated(new_database()), environment="test")


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as http:
        yield http


def make_client(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://dorsi.test")


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]
