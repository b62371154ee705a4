"""Who may call what: every route of the API, for every kind of caller.

`MATRIX` is the specification. Its key is a route as the app declares it, `(METHOD, path
template)`; its value is one or more cases, each saying what the request aims at, how to
build it from clinic 1's targets, and the status each caller gets. The rules it spells out:

* Anonymous callers get 401, except on what is public: the exercise catalog, the
  documentation, liveness, readiness and metrics, and sign-in (`/v1/auth/*`), whose
  credentials travel in the body, so a bearer token sent along changes nothing there.
* Patient tokens get 403 on clinic routes; a patient's app reads its own data under
  `/v1/me`, the catalog (it holds `exercises:read`), and uploads, reads and corrects its
  own adherence records (another patient's record answers 404), nothing else.
* Clinic staff get 2xx on their clinic's routes: clinicians, admins, and API clients
  holding the route's scope. `client_none` holds only `changes:read`, so it gets 403 on
  every clinic route, and on the catalog too: a token that is presented must carry
  `exercises:read`.
* The targets are clinic 1's. Clinician 2 works in clinic 2: clinic 1's ids answer it 404,
  exactly like ids that do not exist, while lists and creates answer 2xx in its own clinic.
* Only clinic admins manage API clients and read the audit trail.
* The change feed: clinic admins and API clients holding `changes:read`.
* The global catalog (exercises and the foot-drop template) is read-only: 403 even for
  staff holding the write scope.

Callers (`tests.conftest.build_world`): anonymous; patient_a and patient_b (clinic 1's
patients' apps); admin1 and clinician1 (clinic 1); clinician2 (clinic 2); client_all and
client_none (clinic 1's API clients, with every scope and with only `changes:read`).

A route without a row fails `test_every_route_has_a_row`, so no route ships without saying
who may call it; a row whose route is gone fails `test_every_row_is_a_route`.
"""

import inspect
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any, TypeVar

import pytest
import yaml
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from httpx import AsyncClient, Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute

from app.adherence import uploads
from app.adherence.schemas import BatchIn
from app.auth import accounts
from app.auth import service as auth_service
from app.auth.models import AccessCode, ActorKind, Clinician, Role
from app.auth.principal import CLINICIAN_SCOPES, Caller, Principal, Scope
from app.auth.schemas import TokenResponse
from app.auth.security import Secrets, new_access_code
from app.core.columns import utcnow
from app.core.db import transaction
from app.exercises import service as exercises
from app.exercises.models import Exercise
from app.exercises.schemas import ExerciseCreate
from app.fhir.models import FhirExportChunk, FhirExportFile, FhirExportJob
from app.main import ADMINS_ONLY
from app.patients.models import Patient
from app.plans import service as plans
from app.plans.models import Plan, PlanStatus, PlanTemplate, PlanVersion
from app.plans.schemas import PlanCreate, PlanUpdate, TemplateCreate
from app.webhooks import signing
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import PASSWORD, World, build_world
from tests.contract import CONTRACT
from tests.core.problems import assert_problem
from tests.fhir import assert_outcome

ACTORS = (
    "anonymous",
    "patient_a",
    "patient_b",
    "admin1",
    "clinician1",
    "clinician2",
    "client_all",
    "client_none",
)
CATALOG_SLUG = "ankle-dorsiflexion"
LIFETIME = timedelta(days=1)

RouteKey = tuple[str, str]
Expect = Mapping[str, int]

# ------------------------------------------------------------------------------ the rules


def everyone(status: int) -> Expect:
    """A route that does not look at who calls it."""
    return dict.fromkeys(ACTORS, status)


def catalog_readers(*, anonymous: int = 200, other_clinic: int = 200) -> Expect:
    """Exercise reads: anyone, but a token that is sent must hold `exercises:read` (patients'
    do). Anonymous callers and other clinics see only the global catalog."""
    return {
        **everyone(200),
        "anonymous": anonymous,
        "clinician2": other_clinic,
        "client_none": 403,
    }


def clinic_staff(ok: int, *, other_clinic: int | None = None) -> Expect:
    """Clinic routes: clinicians, admins and API clients holding the scope get `ok`.

    `other_clinic` is what clinician 2 gets for clinic 1's resource: 404 for an id. Left
    out, it gets `ok` too, because a list or a create works in its own clinic.
    """
    return {
        "anonymous": 401,
        "patient_a": 403,
        "patient_b": 403,
        "admin1": ok,
        "clinician1": ok,
        "clinician2": ok if other_clinic is None else other_clinic,
        "client_all": ok,
        "client_none": 403,
    }


def clinic_admins(ok: int) -> Expect:
    """Admin-only routes: no clinician, API client or patient, whatever its scopes."""
    return {**everyone(403), "anonymous": 401, "admin1": ok}


def change_readers() -> Expect:
    """The change feed: clinic admins, and API clients holding `changes:read` (client_none
    holds only that); no other clinician, whatever its scopes."""
    return {**clinic_admins(200), "client_all": 200, "client_none": 200}


def webhook_managers(ok: int) -> Expect:
    """Webhook endpoints: clinic admins, and API clients holding `webhooks:write`
    (client_none does not); no other clinician."""
    return {**clinic_admins(ok), "client_all": ok}


def read_only_catalog() -> Expect:
    """Changing the global catalog: refused to everyone signed in, write scope or not."""
    return {**everyone(403), "anonymous": 401}


def patient_or_staff(ok: int) -> Expect:
    """Adherence records: the patient's own app, or clinic staff holding the scope. Another
    patient or clinic gets 404, as for an id that does not exist."""
    return {**clinic_staff(ok, other_clinic=404), "patient_a": ok, "patient_b": 404}


def patient_app(*, patient_a: int, patient_b: int) -> Expect:
    """`/v1/me`: a patient's app only; staff and clinic systems have no "me" there."""
    return {**everyone(403), "anonymous": 401, "patient_a": patient_a, "patient_b": patient_b}


# ---------------------------------------------------------------------- what rows aim at


def patient_body() -> dict[str, Any]:
    return {
        "reference": f"MATRIX-{uuid.uuid4().hex[:12]}",
        "affected_side": "right",
        "cause": "stroke",
        "time_zone": "Europe/Lisbon",
    }


def exercise_body() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    return {
        "slug": f"matrix-toe-taps-{tag}",
        "name": f"Matrix toe taps {tag}",
        "summary": "Tapping the toes while the heel stays down.",
        "steps": ["Sit with both feet flat.", "Lift the toes of the affected foot and tap them."],
        "body_region": "ankle",
        "movements": ["dorsiflexion"],
        "mode": "active",
        "position": "seated",
        "equipment": ["chair"],
    }


def item(exercise_id: uuid.UUID) -> dict[str, Any]:
    return {"exercise_id": str(exercise_id), "schedule": {"sessions_per_week": 3}}


class Targets:
    """Clinic 1's resources that the rows aim at, and makers of fresh ones for the cells
    that change or delete their target, so that no cell disturbs another."""

    catalog_exercise: uuid.UUID
    global_template: uuid.UUID
    clinician_email: str
    exercise: uuid.UUID
    exercise_slug: str
    template: uuid.UUID
    plan: uuid.UUID

    def __init__(self, app: FastAPI, world: World) -> None:
        self.engine = app.state.engine
        self.secrets: Secrets = app.state.secrets
        self.world = world
        self.patient_a = world.patient_a

    @classmethod
    async def make(cls, app: FastAPI, world: World) -> "Targets":
        targets = cls(app, world)
        async with targets._session() as session:
            targets.catalog_exercise = (
                await session.exec(
                    select(Exercise.id).where(
                        Exercise.slug == CATALOG_SLUG, col(Exercise.clinic_id).is_(None)
                    )
                )
            ).one()
            targets.global_template = (
                await session.exec(
                    select(PlanTemplate.id).where(col(PlanTemplate.clinic_id).is_(None))
                )
            ).one()
            clinician = await session.get(Clinician, world["clinician1"].id)
            assert clinician is not None
            targets.clinician_email = clinician.email
        exercise = await targets.new_exercise()
        targets.exercise, targets.exercise_slug = exercise.id, exercise.slug
        targets.template = await targets.new_template()
        targets.plan = await targets.new_active_plan()
        return targets

    def _session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return transaction(self.engine)

    def _clinician1(self) -> Caller:
        actor = self.world["clinician1"]
        assert actor.id is not None
        principal = Principal(
            kind=ActorKind.clinician,
            id=actor.id,
            clinic_id=self.world.clinic1,
            session_id=uuid.uuid4(),
            scopes=CLINICIAN_SCOPES,
            role=Role.clinician,
        )
        return Caller(principal=principal, ip=None, request_id=None)

    async def new_patient(self) -> uuid.UUID:
        async with self._session() as session:
            patient = Patient(clinic_id=self.world.clinic1, **patient_body())
            session.add(patient)
            await session.flush()
            return patient.id

    async def new_access_code(self, patient_id: uuid.UUID | None = None) -> str:
        """A valid code for an app of the patient (of a new patient, if none is named)."""
        patient_id = patient_id or await self.new_patient()
        code = new_access_code()
        async with self._session() as session:
            session.add(
                AccessCode(
                    clinic_id=self.world.clinic1,
                    patient_id=patient_id,
                    code_hash=self.secrets.digest(code),
                    expires_at=utcnow() + LIFETIME,
                )
            )
        return code

    async def new_app_tokens(self, patient_id: uuid.UUID | None = None) -> TokenResponse:
        """The tokens of a newly paired app of the patient (of a new patient, if none)."""
        code = await self.new_access_code(patient_id)
        async with self._session() as session:
            return await auth_service.pair(
                session, self.secrets, code, "matrix", LIFETIME, None, None
            )

    async def new_device(self) -> uuid.UUID:
        """Another paired app of patient A: a sign-in session of its own."""
        tokens = await self.new_app_tokens(self.patient_a)
        claims = self.secrets.read_access_token(tokens.access_token)
        assert claims is not None
        return uuid.UUID(claims["sid"])

    async def new_api_client(self) -> uuid.UUID:
        async with self._session() as session:
            client, _secret = await accounts.create_api_client(
                session, self.secrets, self.world.clinic1, "Matrix EHR", [Scope.changes_read]
            )
            return client.id

    async def new_webhook(self) -> uuid.UUID:
        """A webhook endpoint of clinic 1, disabled: the matrix asks who may manage it,
        and no worker of a later test should try to send it the matrix's plan changes."""
        async with self._session() as session:
            endpoint = WebhookEndpoint(
                clinic_id=self.world.clinic1,
                url="http://127.0.0.1:9/hooks",
                events=["plan.*"],
                secret=signing.new_secret(),
                enabled=False,
            )
            session.add(endpoint)
            return endpoint.id

    async def new_webhook_delivery(self) -> tuple[uuid.UUID, uuid.UUID]:
        """A failed delivery of a new webhook endpoint of clinic 1."""
        endpoint_id = await self.new_webhook()
        async with self._session() as session:
            delivery = WebhookDelivery(
                clinic_id=self.world.clinic1,
                endpoint_id=endpoint_id,
                event_id="evt_matrix",
                event_type="webhook.test",
                payload={},
                status="failed",
                next_attempt_at=None,
            )
            session.add(delivery)
            return endpoint_id, delivery.id

    async def new_exercise(self) -> Exercise:
        """A custom exercise of clinic 1."""
        async with self._session() as session:
            body = ExerciseCreate.model_validate(exercise_body())
            return await exercises.create(session, self.world.clinic1, body)

    async def new_template(self) -> uuid.UUID:
        """A plan template of clinic 1."""
        body = TemplateCreate.model_validate(
            {"name": "Matrix program", "items": [item(self.catalog_exercise)]}
        )
        async with self._session() as session:
            template = await plans.create_template(session, self.world.clinic1, body)
            return template.id

    async def new_plan(self) -> tuple[uuid.UUID, str]:
        """A draft plan of patient A, with its ETag."""
        body = PlanCreate.model_validate({"items": [item(self.catalog_exercise)]})
        async with self._session() as session:
            plan = await plans.create_plan(session, self._clinician1(), self.patient_a, body)
            return plan.id, plans.plan_etag(plan)

    async def adherence_record(self) -> dict[str, Any]:
        """A new session of patient A under its active plan, as the app uploads it."""
        async with self._session() as session:
            plan = await session.get(Plan, (self.world.clinic1, self.plan))
            assert plan is not None
            version = (
                await session.exec(
                    select(PlanVersion).where(
                        PlanVersion.plan_id == plan.id, PlanVersion.number == plan.version
                    )
                )
            ).one()
        return {
            "id": str(uuid.uuid4()),
            "plan_id": str(plan.id),
            "plan_version": version.number,
            "item_id": version.items[0]["id"],
            "performed_at": utcnow().isoformat(),
            "status": "completed",
        }

    async def new_record(self, **fields: Any) -> uuid.UUID:
        """A stored adherence record of patient A (version 1)."""
        record = {**await self.adherence_record(), **fields}
        patient_a = self.world["patient_a"]
        assert patient_a.id is not None
        principal = Principal(
            kind=ActorKind.patient,
            id=patient_a.id,
            clinic_id=self.world.clinic1,
            session_id=uuid.uuid4(),
            scopes=frozenset(),
            patient_id=patient_a.id,
        )
        async with self._session() as session:
            answer = await uploads.upload(
                session,
                Caller(principal=principal, ip=None, request_id=None),
                BatchIn(records=[record]),
            )
        assert answer[0]["result"] == "created"
        return uuid.UUID(record["id"])

    async def new_rated_record(self) -> uuid.UUID:
        """A stored adherence record of patient A that rates pain (a FHIR Observation)."""
        return await self.new_record(pain=3)

    async def new_export(self, *, with_file: bool = False) -> uuid.UUID:
        """A queued FHIR export of clinic 1's admin (a file of it, if asked)."""
        admin = self.world["admin1"]
        assert admin.id is not None
        async with self._session() as session:
            job = FhirExportJob(
                clinic_id=self.world.clinic1,
                actor_kind=ActorKind.clinician,
                actor_id=admin.id,
                level="system",
                types=["Patient"],
                request_url="http://dorsi.test/fhir/R4/$export",
            )
            session.add(job)
            await session.flush()
            if not with_file:
                return job.id
            found = FhirExportFile(job_id=job.id, number=1, resource_type="Patient", count=1)
            session.add(found)
            await session.flush()
            session.add(
                FhirExportChunk(
                    file_id=found.id,
                    number=1,
                    content=f'{{"resourceType": "Patient", "id": "{self.patient_a}"}}\n',
                )
            )
            await session.flush()
            return found.id

    async def new_export_file(self) -> uuid.UUID:
        return await self.new_export(with_file=True)

    async def new_active_plan(self) -> uuid.UUID:
        """Patient A's active plan, so that patient A's app has a plan to read."""
        plan_id, etag = await self.new_plan()
        async with self._session() as session:
            change = PlanUpdate(status=PlanStatus.active)
            await plans.update_plan(session, self._clinician1(), plan_id, change, etag)
        return plan_id


# ------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Call:
    """What a cell sends besides its method, its route and the caller's token."""

    path: Mapping[str, object] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    form: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


# What a cell sends, from the targets; awaited if it makes a target in the database.
Send = Callable[[Targets], Call | Awaitable[Call]]
Made = TypeVar("Made")


def nothing(_targets: Targets) -> Call:
    return Call()


def fresh(
    make: Callable[[Targets], Awaitable[Made]], call: Callable[[Targets, Made], Call]
) -> Send:
    """A cell's request at a target made for that cell alone (`make`, e.g.
    `Targets.new_patient`), so that changing or deleting it disturbs no other cell."""

    async def send(targets: Targets) -> Call:
        return call(targets, await make(targets))

    return send


@dataclass(frozen=True, kw_only=True)
class Case:
    """One request to a route (`target` says what it aims at) and what each caller gets.

    `send` runs once per cell, so a case whose request changes or deletes its target makes
    a fresh one each time. `known_bugs` names the callers whose cell fails today, and why.
    """

    target: str
    send: Send = nothing
    expect: Expect
    known_bugs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if sorted(self.expect) != sorted(ACTORS):
            raise ValueError(f"{self.target}: say what each of {ACTORS} gets.")


async def edit_fresh_plan(targets: Targets) -> Call:
    plan_id, etag = await targets.new_plan()
    return Call(path={"plan_id": plan_id}, json={"title": "Renamed"}, headers={"If-Match": etag})


MATRIX: dict[RouteKey, list[Case]] = {
    # --- documentation and operations: public --------------------------------------
    ("GET", "/openapi.json"): [Case(target="the contract", expect=everyone(200))],
    ("GET", "/docs"): [Case(target="Swagger UI", expect=everyone(200))],
    ("GET", "/docs/oauth2-redirect"): [Case(target="Swagger's sign-in", expect=everyone(200))],
    ("GET", "/redoc"): [Case(target="ReDoc", expect=everyone(200))],
    ("GET", "/docs-assets/{path}"): [
        Case(
            target="a docs asset",
            send=lambda t: Call(path={"path": "swagger-ui.css"}),
            expect=everyone(200),
        )
    ],
    ("GET", "/healthz"): [Case(target="the process", expect=everyone(200))],
    ("GET", "/readyz"): [Case(target="the database", expect=everyone(200))],
    ("GET", "/metrics"): [Case(target="the counters", expect=everyone(200))],
    # --- sign-in: the credentials are in the body, whoever calls -----------------------
    ("POST", "/v1/auth/token"): [
        Case(
            target="clinician 1's password",
            send=lambda t: Call(
                form={"grant_type": "password", "username": t.clinician_email, "password": PASSWORD}
            ),
            expect=everyone(200),
        ),
        Case(
            target="a wrong password",
            send=lambda t: Call(
                form={"grant_type": "password", "username": t.clinician_email, "password": "no"}
            ),
            # RFC 6749: 400 `invalid_grant`.
            expect=everyone(400),
        ),
    ],
    ("POST", "/v1/auth/pair"): [
        Case(
            target="a fresh access code",
            send=fresh(Targets.new_access_code, lambda _t, code: Call(json={"code": code})),
            expect=everyone(200),
        ),
        Case(
            target="a code nobody issued",
            send=lambda t: Call(json={"code": "ZZZZ-ZZZZ"}),
            expect=everyone(401),
        ),
    ],
    ("POST", "/v1/auth/refresh"): [
        Case(
            target="a fresh refresh token",
            send=fresh(
                Targets.new_app_tokens,
                lambda _t, tokens: Call(json={"refresh_token": tokens.refresh_token}),
            ),
            expect=everyone(200),
        ),
        Case(
            target="an unknown refresh token",
            send=lambda t: Call(json={"refresh_token": "not-a-refresh-token"}),
            expect=everyone(401),
        ),
    ],
    ("POST", "/v1/auth/revoke"): [
        Case(
            target="a fresh app's refresh token",
            send=fresh(
                Targets.new_app_tokens,
                lambda _t, tokens: Call(json={"token": tokens.refresh_token}),
            ),
            expect=everyone(200),
        ),
        Case(
            target="an unknown token (RFC 7009: still 200)",
            send=lambda t: Call(json={"token": "not-a-token"}),
            expect=everyone(200),
        ),
    ],
    # --- API clients: clinic admins ------------------------------------------------------
    ("POST", "/v1/api-clients"): [
        Case(
            target="a new client",
            send=lambda t: Call(json={"name": "Matrix EHR", "scopes": ["changes:read"]}),
            expect=clinic_admins(201),
        )
    ],
    ("GET", "/v1/api-clients"): [Case(target="the clinic's clients", expect=clinic_admins(200))],
    ("DELETE", "/v1/api-clients/{client_id}"): [
        Case(
            target="a fresh clinic-1 client",
            send=fresh(
                Targets.new_api_client, lambda _t, client_id: Call(path={"client_id": client_id})
            ),
            expect=clinic_admins(204),
        )
    ],
    ("GET", "/v1/api-clients/{client_id}"): [
        Case(
            target="a clinic-1 client",
            send=fresh(
                Targets.new_api_client, lambda _t, client_id: Call(path={"client_id": client_id})
            ),
            expect=clinic_admins(200),
        )
    ],
    ("PATCH", "/v1/api-clients/{client_id}"): [
        Case(
            target="a fresh clinic-1 client",
            send=fresh(
                Targets.new_api_client,
                lambda _t, client_id: Call(path={"client_id": client_id}, json={"name": "Renamed"}),
            ),
            expect=clinic_admins(200),
        )
    ],
    ("GET", "/v1/clinicians"): [Case(target="clinic 1's clinicians", expect=clinic_admins(200))],
    ("POST", "/v1/clinicians"): [
        Case(
            target="a new clinician of the caller's clinic",
            send=lambda _t: Call(
                json={
                    "email": f"matrix-{uuid.uuid4().hex[:10]}@clinic.example.org",
                    "password": "a long passphrase",
                }
            ),
            expect=clinic_admins(201),
        )
    ],
    ("PATCH", "/v1/clinicians/{clinician_id}"): [
        Case(
            target="clinician 1",
            send=lambda t: Call(
                path={"clinician_id": t.world["clinician1"].id}, json={"role": "clinician"}
            ),
            expect=clinic_admins(200),
        )
    ],
    ("GET", "/v1/clinic"): [
        # Any staff token names its clinic; no scope is needed to read its settings.
        Case(target="the caller's clinic", expect={**clinic_staff(200), "client_none": 200})
    ],
    ("PATCH", "/v1/clinic"): [
        Case(
            target="the caller's clinic's thresholds",
            send=lambda _t: Call(json={"adherence_threshold_percent": 70}),
            expect=clinic_admins(200),
        )
    ],
    # --- adherence: the patient's own app, or staff with the scope -----------------
    ("GET", "/v1/adherence/overview"): [
        Case(target="the caller's clinic's patients", expect=clinic_staff(200))
    ],
    ("POST", "/v1/adherence/batch"): [
        Case(
            # Each record is answered on its own: another patient's or clinic's upload
            # succeeds as a request, with that record rejected.
            target="a session of patient A under its active plan",
            send=fresh(
                Targets.adherence_record, lambda _t, record: Call(json={"records": [record]})
            ),
            expect={**clinic_staff(200), "patient_a": 200, "patient_b": 200},
        )
    ],
    ("GET", "/v1/patients/{patient_id}/adherence"): [
        Case(
            target="patient A",
            send=lambda t: Call(path={"patient_id": t.patient_a}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", "/v1/patients/{patient_id}/adherence/summary"): [
        Case(
            target="patient A",
            send=lambda t: Call(path={"patient_id": t.patient_a}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", "/v1/adherence/{record_id}"): [
        Case(
            target="a record of patient A",
            send=fresh(
                Targets.new_record, lambda _t, record_id: Call(path={"record_id": record_id})
            ),
            expect=patient_or_staff(200),
        )
    ],
    ("PATCH", "/v1/adherence/{record_id}"): [
        Case(
            target="a fresh record of patient A, with its ETag",
            send=fresh(
                Targets.new_record,
                lambda _t, record_id: Call(
                    path={"record_id": record_id},
                    json={"pain": 1},
                    headers={"If-Match": f'"{record_id}-1"'},
                ),
            ),
            expect=patient_or_staff(200),
        )
    ],
    ("DELETE", "/v1/adherence/{record_id}"): [
        Case(
            target="a fresh record of patient A, with its ETag",
            send=fresh(
                Targets.new_record,
                lambda _t, record_id: Call(
                    path={"record_id": record_id}, headers={"If-Match": f'"{record_id}-1"'}
                ),
            ),
            expect=patient_or_staff(204),
        )
    ],
    ("GET", "/v1/adherence/{record_id}/versions"): [
        Case(
            target="a record of patient A",
            send=fresh(
                Targets.new_record, lambda _t, record_id: Call(path={"record_id": record_id})
            ),
            expect=patient_or_staff(200),
        )
    ],
    # --- exercises: the catalog is public, a clinic's own are its staff's -----------
    ("GET", "/v1/exercises"): [Case(target="the catalog", expect=catalog_readers())],
    ("GET", "/v1/exercises/{exercise}"): [
        Case(
            target="a global catalog exercise",
            send=lambda t: Call(path={"exercise": CATALOG_SLUG}),
            expect=catalog_readers(),
        ),
        Case(
            target="a clinic-1 custom exercise",
            send=lambda t: Call(path={"exercise": t.exercise}),
            expect=catalog_readers(anonymous=404, other_clinic=404),
        ),
    ],
    ("POST", "/v1/exercises"): [
        Case(
            target="a new custom exercise",
            send=lambda t: Call(json=exercise_body()),
            expect=clinic_staff(201),
        )
    ],
    ("PATCH", "/v1/exercises/{exercise}"): [
        Case(
            target="a fresh clinic-1 custom exercise",
            send=fresh(
                Targets.new_exercise,
                lambda _t, exercise: Call(path={"exercise": exercise.id}, json={"name": "Renamed"}),
            ),
            expect=clinic_staff(200, other_clinic=404),
        ),
        Case(
            target="a global catalog exercise",
            send=lambda t: Call(path={"exercise": CATALOG_SLUG}, json={"name": "Renamed"}),
            expect=read_only_catalog(),
        ),
    ],
    ("DELETE", "/v1/exercises/{exercise}"): [
        Case(
            target="a fresh clinic-1 custom exercise",
            send=fresh(
                Targets.new_exercise, lambda _t, exercise: Call(path={"exercise": exercise.id})
            ),
            expect=clinic_staff(204, other_clinic=404),
        ),
        Case(
            target="a global catalog exercise",
            send=lambda t: Call(path={"exercise": CATALOG_SLUG}),
            expect=read_only_catalog(),
        ),
    ],
    # --- patients ------------------------------------------------------------------------
    ("POST", "/v1/patients"): [
        Case(
            target="a new patient",
            send=lambda t: Call(json=patient_body()),
            expect=clinic_staff(201),
        )
    ],
    ("GET", "/v1/patients"): [Case(target="the clinic's patients", expect=clinic_staff(200))],
    ("GET", "/v1/patients/{patient_id}"): [
        Case(
            target="patient A",
            send=lambda t: Call(path={"patient_id": t.patient_a}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("PATCH", "/v1/patients/{patient_id}"): [
        Case(
            target="patient A",
            send=lambda t: Call(
                path={"patient_id": t.patient_a}, json={"time_zone": "Europe/Lisbon"}
            ),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("DELETE", "/v1/patients/{patient_id}"): [
        Case(
            target="a fresh clinic-1 patient",
            send=fresh(
                Targets.new_patient, lambda _t, patient_id: Call(path={"patient_id": patient_id})
            ),
            expect=clinic_staff(204, other_clinic=404),
        )
    ],
    ("POST", "/v1/patients/{patient_id}/access-codes"): [
        Case(
            target="patient A",
            send=lambda t: Call(path={"patient_id": t.patient_a}),
            expect=clinic_staff(201, other_clinic=404),
        )
    ],
    ("GET", "/v1/patients/{patient_id}/devices"): [
        Case(
            target="patient A",
            send=lambda t: Call(path={"patient_id": t.patient_a}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("DELETE", "/v1/patients/{patient_id}/devices/{device_id}"): [
        Case(
            target="a fresh app of patient A",
            send=fresh(
                Targets.new_device,
                lambda t, device_id: Call(path={"patient_id": t.patient_a, "device_id": device_id}),
            ),
            expect=clinic_staff(204, other_clinic=404),
        )
    ],
    # --- plan templates: the global one is shared and read-only ---------------------
    ("GET", "/v1/plan-templates"): [
        Case(target="the clinic's and the global templates", expect=clinic_staff(200))
    ],
    ("POST", "/v1/plan-templates"): [
        Case(
            target="a new template",
            send=lambda t: Call(json={"name": "New", "items": [item(t.catalog_exercise)]}),
            expect=clinic_staff(201),
        )
    ],
    ("GET", "/v1/plan-templates/{template_id}"): [
        Case(
            target="a clinic-1 template",
            send=lambda t: Call(path={"template_id": t.template}),
            expect=clinic_staff(200, other_clinic=404),
        ),
        Case(
            target="the global template",
            send=lambda t: Call(path={"template_id": t.global_template}),
            expect=clinic_staff(200),
        ),
    ],
    ("PATCH", "/v1/plan-templates/{template_id}"): [
        Case(
            target="a clinic-1 template",
            send=lambda t: Call(path={"template_id": t.template}, json={"description": "Ours"}),
            expect=clinic_staff(200, other_clinic=404),
        ),
        Case(
            target="the global template",
            send=lambda t: Call(
                path={"template_id": t.global_template}, json={"description": "Ours"}
            ),
            expect=read_only_catalog(),
        ),
    ],
    ("DELETE", "/v1/plan-templates/{template_id}"): [
        Case(
            target="a fresh clinic-1 template",
            send=fresh(
                Targets.new_template,
                lambda _t, template_id: Call(path={"template_id": template_id}),
            ),
            expect=clinic_staff(204, other_clinic=404),
        ),
        Case(
            target="the global template",
            send=lambda t: Call(path={"template_id": t.global_template}),
            expect=read_only_catalog(),
        ),
    ],
    ("POST", "/v1/plan-templates/{template_id}/copy"): [
        Case(
            target="a clinic-1 template",
            send=lambda t: Call(path={"template_id": t.template}, json={}),
            expect=clinic_staff(201, other_clinic=404),
        ),
        Case(
            target="the global template",
            send=lambda t: Call(path={"template_id": t.global_template}, json={}),
            expect=clinic_staff(201),
        ),
    ],
    # --- plans ---------------------------------------------------------------------------
    ("POST", "/v1/patients/{patient_id}/plans"): [
        Case(
            target="patient A",
            send=lambda t: Call(
                path={"patient_id": t.patient_a}, json={"items": [item(t.catalog_exercise)]}
            ),
            expect=clinic_staff(201, other_clinic=404),
        )
    ],
    ("GET", "/v1/patients/{patient_id}/plans"): [
        Case(
            target="patient A",
            send=lambda t: Call(path={"patient_id": t.patient_a}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", "/v1/plans/{plan_id}"): [
        Case(
            target="patient A's plan",
            send=lambda t: Call(path={"plan_id": t.plan}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("PATCH", "/v1/plans/{plan_id}"): [
        Case(
            target="a fresh plan of patient A, with its ETag",
            send=edit_fresh_plan,
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", "/v1/plans/{plan_id}/versions"): [
        Case(
            target="patient A's plan",
            send=lambda t: Call(path={"plan_id": t.plan}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", "/v1/plans/{plan_id}/versions/{number}"): [
        Case(
            target="patient A's plan, version 1",
            send=lambda t: Call(path={"plan_id": t.plan, "number": 1}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    # --- the patient app: its own data only ------------------------------------------
    ("GET", "/v1/me"): [
        Case(target="the patient", expect=patient_app(patient_a=200, patient_b=200))
    ],
    ("GET", "/v1/me/plan"): [
        Case(
            target="the active plan (patient B has none)",
            expect=patient_app(patient_a=200, patient_b=404),
        )
    ],
    ("GET", "/v1/me/today"): [
        Case(target="today's items", expect=patient_app(patient_a=200, patient_b=200))
    ],
    # --- the audit trail: clinic admins --------------------------------------------------
    ("GET", "/v1/audit-events"): [Case(target="the clinic's trail", expect=clinic_admins(200))],
    # --- clinic sync: admins and clinic systems with `changes:read` ----------------------
    ("GET", "/v1/changes"): [Case(target="the clinic's change feed", expect=change_readers())],
    ("GET", "/v1/export/{type}.ndjson"): [
        Case(
            target="the clinic's patients, exported",
            send=lambda t: Call(path={"type": "patient"}),
            expect=change_readers(),
        )
    ],
    # --- webhooks: admins and clinic systems with `webhooks:write` ----------------------
    ("POST", "/v1/webhooks"): [
        Case(
            target="a new endpoint of the caller's clinic",
            send=lambda t: Call(json={"url": "http://127.0.0.1:9/hooks", "events": ["plan.*"]}),
            expect=webhook_managers(201),
        )
    ],
    ("GET", "/v1/webhooks"): [Case(target="the clinic's endpoints", expect=webhook_managers(200))],
    **{
        (method, "/v1/webhooks/{webhook_id}" + tail): [
            Case(
                target="a fresh clinic-1 endpoint",
                send=fresh(
                    Targets.new_webhook,
                    lambda _t, webhook_id, body=body: Call(  # type: ignore[misc]
                        path={"webhook_id": webhook_id}, json=body
                    ),
                ),
                expect=webhook_managers(ok),
            )
        ]
        for method, tail, body, ok in (
            ("GET", "", None, 200),
            ("PATCH", "", {"description": "Renamed"}, 200),
            ("DELETE", "", None, 204),
            ("POST", "/rotate-secret", None, 200),
            ("POST", "/test", None, 202),
            ("GET", "/deliveries", None, 200),
        )
    },
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"): [
        Case(
            target="a failed delivery of a fresh clinic-1 endpoint",
            send=fresh(
                Targets.new_webhook_delivery,
                lambda _t, made: Call(path={"webhook_id": made[0], "delivery_id": made[1]}),
            ),
            expect=webhook_managers(202),
        )
    ],
}

FHIR = "/fhir/R4"
MATRIX |= {
    # --- FHIR: the capability statement is public; resources need the type's scope -------
    ("GET", f"{FHIR}/metadata"): [Case(target="the capability statement", expect=everyone(200))],
    **{
        ("GET", f"{FHIR}/{kind}"): [Case(target=f"the clinic's {kind}s", expect=clinic_staff(200))]
        for kind in ("Patient", "CarePlan", "Procedure", "Observation", "ActivityDefinition")
    },
    ("GET", f"{FHIR}/Patient/{{id}}"): [
        Case(
            target="patient A",
            send=lambda t: Call(path={"id": t.patient_a}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", f"{FHIR}/CarePlan/{{id}}"): [
        Case(
            target="patient A's plan",
            send=lambda t: Call(path={"id": t.plan}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", f"{FHIR}/CarePlan/{{id}}/_history/{{vid}}"): [
        Case(
            target="patient A's plan, version 1",
            send=lambda t: Call(path={"id": t.plan, "vid": 1}),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", f"{FHIR}/Procedure/{{id}}"): [
        Case(
            target="a record of patient A",
            send=fresh(Targets.new_record, lambda _t, record_id: Call(path={"id": record_id})),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", f"{FHIR}/Observation/{{id}}"): [
        Case(
            target="a pain rating of patient A",
            send=fresh(
                Targets.new_rated_record, lambda _t, record_id: Call(path={"id": record_id})
            ),
            expect=clinic_staff(200, other_clinic=404),
        )
    ],
    ("GET", f"{FHIR}/ActivityDefinition/{{id}}"): [
        Case(
            target="a global catalog exercise",
            send=lambda t: Call(path={"id": t.catalog_exercise}),
            expect=clinic_staff(200),
        ),
        Case(
            target="a clinic-1 custom exercise",
            send=lambda t: Call(path={"id": t.exercise}),
            expect=clinic_staff(200, other_clinic=404),
        ),
    ],
    # Bulk Data: as the REST exports (clinic admins, API clients with `changes:read`), with
    # each type's scope too (client_none has none); an export is its requester's alone.
    **{
        ("GET", f"{FHIR}/{path}"): [
            Case(
                target="an export of the clinic's patients",
                send=lambda _t: Call(
                    params={"_type": "Patient"}, headers={"Prefer": "respond-async"}
                ),
                expect={**change_readers(), "admin1": 202, "client_all": 202, "client_none": 403},
            )
        ]
        for path in ("$export", "Patient/$export")
    },
    ("GET", f"{FHIR}/$export-status/{{job_id}}"): [
        Case(
            target="clinic 1's admin's queued export",
            send=fresh(Targets.new_export, lambda _t, job_id: Call(path={"job_id": job_id})),
            expect={**change_readers(), "admin1": 202, "client_all": 404, "client_none": 404},
        )
    ],
    ("DELETE", f"{FHIR}/$export-status/{{job_id}}"): [
        Case(
            target="clinic 1's admin's queued export",
            send=fresh(Targets.new_export, lambda _t, job_id: Call(path={"job_id": job_id})),
            expect={**change_readers(), "admin1": 202, "client_all": 404, "client_none": 404},
        )
    ],
    ("GET", f"{FHIR}/$export-file/{{file_id}}"): [
        Case(
            target="a file of clinic 1's admin's export",
            send=fresh(
                Targets.new_export_file, lambda _t, file_id: Call(path={"file_id": file_id})
            ),
            expect={**change_readers(), "client_all": 404, "client_none": 404},
        )
    ],
    ("GET", f"{FHIR}/PlanDefinition/{{id}}"): [
        Case(
            target="a clinic-1 template",
            send=lambda t: Call(path={"id": t.template}),
            expect=clinic_staff(200, other_clinic=404),
        ),
        Case(
            target="the global template",
            send=lambda t: Call(path={"id": t.global_template}),
            expect=clinic_staff(200),
        ),
    ],
}

# ------------------------------------------------------------------------------ the tests

PROBLEM_TYPES = {401: "unauthorized", 403: "forbidden", 404: "not-found"}
# Under /fhir/R4 the same failures are OperationOutcomes, with FHIR's issue types.
FHIR_ISSUE_TYPES = {401: "login", 403: "forbidden", 404: "not-found"}


@pytest.fixture(scope="module")
async def targets(app: FastAPI) -> Targets:
    """A world of its own: the matrix creates and deletes in clinic 1, and other modules
    share the session's world."""
    return await Targets.make(app, await build_world(app))


def served_routes(app: FastAPI) -> set[RouteKey]:
    """Every (method, path) the app answers, however deeply its routers are included."""
    served: set[RouteKey] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            # Static files, answered to GET (and HEAD) below the mount.
            served.add(("GET", str(context.path_format)))
        elif isinstance(route, StarletteRoute):
            methods = set(context.methods or ())
            if "GET" in methods:
                # Starlette answers HEAD wherever there is a GET; it is not a route of its own.
                methods.discard("HEAD")
            served |= {(method, str(context.path_format)) for method in methods}
        else:
            raise TypeError(f"A kind of route the matrix cannot read: {route!r}")
    return served


def test_every_route_has_a_row(app: FastAPI) -> None:
    missing = sorted(served_routes(app) - MATRIX.keys())
    assert not missing, f"Say in MATRIX who may call these routes: {missing}"


def test_every_row_is_a_route(app: FastAPI) -> None:
    stale = sorted(MATRIX.keys() - served_routes(app))
    assert not stale, f"MATRIX rows for routes the app no longer has: {stale}"


def cells() -> list[object]:
    """One test per route, case and caller, so a failure names its cell."""
    found: list[object] = []
    for (method, path), cases in MATRIX.items():
        for case in cases:
            for actor in ACTORS:
                bug = case.known_bugs.get(actor)
                found.append(
                    pytest.param(
                        method,
                        path,
                        case,
                        actor,
                        id=f"{method} {path} | {case.target} | {actor}",
                        marks=[pytest.mark.xfail(strict=True, reason=bug)] if bug else [],
                    )
                )
    return found


@pytest.mark.parametrize(("method", "path", "case", "actor"), cells())
async def test_each_caller_gets_what_the_matrix_says(
    client: AsyncClient, targets: Targets, method: str, path: str, case: Case, actor: str
) -> None:
    sent = case.send(targets)
    call = await sent if inspect.isawaitable(sent) else sent
    response = await client.request(
        method,
        path.format_map(call.path),
        params=call.params,
        json=call.json,
        data=call.form,
        headers={**targets.world[actor].headers, **call.headers},
    )
    expected = case.expect[actor]
    assert response.status_code == expected, response.text
    if expected in PROBLEM_TYPES and path.startswith(FHIR):
        assert_outcome(response, expected, FHIR_ISSUE_TYPES[expected])
    elif expected in PROBLEM_TYPES:
        assert_problem(response, expected, PROBLEM_TYPES[expected])
    if expected == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="dorsi"'


# ---------------------------------------------- another clinic's id is a missing id

Lookup = Callable[[Targets], str]


def seen_from_outside(response: Response, key: str) -> dict[str, object]:
    """All a caller can tell from an answer, with the id or slug it asked for blanked."""
    problem = response.json()
    return {
        "status": response.status_code,
        "content-type": response.headers["content-type"],
        "headers": sorted(response.headers.keys()),
        "type": problem["type"],
        "title": problem["title"],
        "detail": problem["detail"].replace(key, "<key>"),
    }


@pytest.mark.parametrize(
    ("route", "theirs", "nobodys"),
    [
        pytest.param(
            "/v1/patients/{}",
            lambda t: str(t.patient_a),
            lambda: str(uuid.uuid4()),
            id="patient by id",
        ),
        pytest.param(
            "/v1/exercises/{}",
            lambda t: str(t.exercise),
            lambda: str(uuid.uuid4()),
            id="custom exercise by id",
        ),
        pytest.param(
            "/v1/exercises/{}",
            lambda t: t.exercise_slug,
            lambda: f"no-such-exercise-{uuid.uuid4().hex[:8]}",
            id="custom exercise by slug",
        ),
    ],
)
async def test_another_clinics_resource_answers_like_a_missing_one(
    client: AsyncClient,
    targets: Targets,
    route: str,
    theirs: Lookup,
    nobodys: Callable[[], str],
) -> None:
    clinician2 = targets.world["clinician2"].headers
    existing, missing = theirs(targets), nobodys()
    other_clinics = await client.get(route.format(existing), headers=clinician2)
    absent = await client.get(route.format(missing), headers=clinician2)
    assert_problem(other_clinics, 404, "not-found")
    assert seen_from_outside(other_clinics, existing) == seen_from_outside(absent, missing)


# ------------------------------------------- the contract names the scope the route checks


def documented_scopes(method: str, path: str) -> list[str] | None:
    """The OAuth2 scopes `openapi.yaml` says the operation needs (None: not OAuth2)."""
    operation = contract_document()["paths"].get(path, {}).get(method.lower(), {})
    for requirement in operation.get("security", []):
        if "OAuth2" in requirement:
            scopes: list[str] = requirement["OAuth2"]
            return scopes
    return None


@cache
def contract_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CONTRACT.read_text())
    return document


class ScopedTokens:
    """Tokens of clinic 1's API clients holding exactly the scopes asked for."""

    def __init__(self, targets: Targets) -> None:
        self.targets = targets
        self.made: dict[frozenset[str], dict[str, str]] = {}

    async def holding(self, scopes: frozenset[str]) -> dict[str, str]:
        if scopes not in self.made:
            async with self.targets._session() as session:
                client, secret = await accounts.create_api_client(
                    session,
                    self.targets.secrets,
                    self.targets.world.clinic1,
                    "Scoped",
                    [Scope(scope) for scope in scopes],
                )
                token = await auth_service.client_credentials_grant(
                    session, self.targets.secrets, str(client.id), secret, None
                )
            self.made[scopes] = {"Authorization": f"Bearer {token.access_token}"}
        return self.made[scopes]


@pytest.fixture(scope="module")
def scoped(targets: Targets) -> ScopedTokens:
    return ScopedTokens(targets)


def oauth2_routes() -> list[object]:
    return [
        pytest.param(method, path, id=f"{method} {path}")
        for method, path in MATRIX
        if documented_scopes(method, path) is not None
    ]


def test_most_clinic_routes_name_a_scope() -> None:
    named = [key for key in MATRIX if documented_scopes(*key)]
    assert len(named) > 30


@pytest.mark.parametrize(("method", "path"), oauth2_routes())
async def test_the_documented_scopes_are_the_enforced_ones(
    client: AsyncClient, targets: Targets, scoped: ScopedTokens, method: str, path: str
) -> None:
    """A clinic system holding every scope but one the contract names gets 403; holding just
    the named ones, it gets past authorization. An operation naming none answers a client
    holding none, unless it is for clinic admins only (no client is one)."""
    documented = frozenset(documented_scopes(method, path) or ())
    case = MATRIX[(method, path)][0]

    async def status_with(scopes: frozenset[str]) -> int:
        sent = case.send(targets)
        call = await sent if inspect.isawaitable(sent) else sent
        response = await client.request(
            method,
            path.format_map(call.path),
            json=call.json,
            data=call.form,
            headers={**await scoped.holding(scopes), **call.headers},
        )
        return response.status_code

    for missing in sorted(documented):
        assert await status_with(frozenset(Scope) - {missing}) == 403, missing
    admins_only = case.expect["client_all"] == 403 and case.expect["admin1"] != 403
    if admins_only:
        assert not documented
        assert await status_with(frozenset(Scope)) == 403
    else:
        assert await status_with(documented) not in (401, 403)


def test_security_says_where_anonymous_callers_are_answered() -> None:
    """`{}` among an operation's security requirements exactly where the matrix lets an
    anonymous caller through; every other signed-in operation answers it 401."""
    for (method, path), cases in MATRIX.items():
        operation = contract_document()["paths"].get(path, {}).get(method.lower(), {})
        if "security" not in operation:
            continue  # documentation, operations and sign-in take no token
        anonymous = all(case.expect["anonymous"] != 401 for case in cases)
        assert ({} in operation["security"]) == anonymous, f"{method} {path}"


def test_the_contract_says_which_operations_are_for_clinic_admins_only() -> None:
    """Being an admin is a role, not a scope: the description says it, exactly where the
    matrix refuses everyone else signed in."""
    for (method, path), cases in MATRIX.items():
        operation = contract_document()["paths"].get(path, {}).get(method.lower())
        if operation is None:
            continue  # the documentation pages
        expect = cases[0].expect
        admins_only = expect["admin1"] < 400 and all(
            status in (401, 403) for actor, status in expect.items() if actor != "admin1"
        )
        assert (ADMINS_ONLY in operation.get("description", "")) == admins_only, path
