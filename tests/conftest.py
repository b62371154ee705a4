"""Every test runs against a database whose schema `alembic upgrade head` made.

The suite runs once per backend: SQLite always, PostgreSQL when it is reachable (and it
must be when DORSI_REQUIRE_POSTGRES=1, as in CI). Each run creates its own databases.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from app import seed
from app.auth import accounts
from app.auth import service as auth_service
from app.auth.models import AccessCode, Role
from app.auth.principal import Scope
from app.auth.security import Secrets, new_access_code
from app.core import migrate
from app.core.columns import utcnow
from app.core.config import Settings
from app.core.db import make_engine, transaction
from app.main import create_app, dispose_engines
from app.patients.models import Patient
from tests import contract

POSTGRES_ADMIN_URL = os.environ.get(
    "DORSI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("DORSI_REQUIRE_POSTGRES") == "1"
TEST_SECRET = "a-secret-only-the-tests-use-" + "x" * 16

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


async def migrated(url: str) -> str:
    engine = make_engine(settings_for(url))
    try:
        await migrate.upgrade(engine)
        await seed.seed(engine)
    finally:
        await engine.dispose()
    return url


def settings_for(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": url,
        "environment": "test",
        "secret_key": TEST_SECRET,
        "password_hashing": "fast",
        "sign_in_rate_limit": "1000/minute",
        **overrides,
    }
    return Settings.model_validate(values)


@pytest.fixture(scope="session")
async def settings(new_database: DatabaseFactory) -> Settings:
    return settings_for(await migrated(new_database()))


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    yield application
    await dispose_engines(application)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as http:
        yield http


def make_client(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    """A client of the app whose every response is checked against `openapi.yaml`."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(
        transport=transport,
        base_url="http://dorsi.test",
        event_hooks={"response": [contract.check]},
    )


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Actor:
    """Someone who calls the API, with the token they call it with (None: anonymous)."""

    name: str
    token: str | None
    id: uuid.UUID | None = None
    clinic_id: uuid.UUID | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass(frozen=True)
class World:
    """Two clinics and everyone in them; clinic 1 has patients A and B."""

    clinic1: uuid.UUID
    clinic2: uuid.UUID
    actors: dict[str, Actor]
    patient_a: uuid.UUID
    patient_b: uuid.UUID
    patient_c: uuid.UUID

    def __getitem__(self, name: str) -> Actor:
        return self.actors[name]


PASSWORD = "correct horse battery staple"


async def build_world(app: FastAPI) -> World:
    """Creates the people of a test through the services, and signs each of them in."""
    secrets: Secrets = app.state.secrets
    lifetime = timedelta(days=1)
    async with transaction(app.state.engine) as session:
        clinic1 = await accounts.create_clinic(session, "Clinic One")
        clinic2 = await accounts.create_clinic(session, "Clinic Two")
        tag = uuid.uuid4().hex[:8]
        people = {
            "admin1": (clinic1.id, Role.admin),
            "clinician1": (clinic1.id, Role.clinician),
            "clinician2": (clinic2.id, Role.clinician),
        }
        actors: dict[str, Actor] = {"anonymous": Actor("anonymous", None)}
        for name, (clinic_id, role) in people.items():
            email = f"{name}-{tag}@clinic.test"
            person = await accounts.create_clinician(
                session, secrets, clinic_id, email, PASSWORD, role
            )
            token = await auth_service.password_grant(session, secrets, email, PASSWORD, None)
            actors[name] = Actor(name, token.access_token, person.id, clinic_id)
        for name, scopes in (("client_all", list(Scope)), ("client_none", [Scope.changes_read])):
            client, secret = await accounts.create_api_client(
                session, secrets, clinic1.id, name, scopes
            )
            token = await auth_service.client_credentials_grant(
                session, secrets, str(client.id), secret, None
            )
            actors[name] = Actor(name, token.access_token, client.id, clinic1.id)
        patients = {}
        for name, clinic in (
            ("patient_a", clinic1),
            ("patient_b", clinic1),
            ("patient_c", clinic2),
        ):
            patient = Patient(
                clinic_id=clinic.id,
                reference=f"{name}-{tag}",
                affected_side="left",
                cause="stroke",
                time_zone="Europe/Lisbon",
            )
            session.add(patient)
            await session.flush()
            patients[name] = patient.id
            code = new_access_code()
            session.add(
                AccessCode(
                    clinic_id=clinic.id,
                    patient_id=patient.id,
                    code_hash=secrets.digest(code),
                    expires_at=utcnow() + lifetime,
                )
            )
            await session.flush()
            token = await auth_service.pair(session, secrets, code, name, lifetime, None, None)
            actors[name] = Actor(name, token.access_token, patient.id, clinic.id)
    return World(
        clinic1=clinic1.id,
        clinic2=clinic2.id,
        actors=actors,
        patient_a=patients["patient_a"],
        patient_b=patients["patient_b"],
        patient_c=patients["patient_c"],
    )


@pytest.fixture(scope="session")
async def world(app: FastAPI) -> World:
    return await build_world(app)
