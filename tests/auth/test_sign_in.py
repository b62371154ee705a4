"""Sign-in for each kind of caller, token rotation, revocation and brute-force limits."""

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlmodel import select

from app.auth import accounts
from app.auth import service as auth_service
from app.auth.models import AccessCode, ApiClient, Clinician, Role
from app.auth.principal import Scope
from app.auth.security import Secrets, new_access_code
from app.core.columns import utcnow
from app.core.config import Settings, SettingsError, load_settings
from app.core.db import transaction
from app.main import create_app, dispose_engines
from app.patients.models import Patient
from tests.conftest import PASSWORD, World, make_client, settings_for


async def clinician(app: FastAPI, role: Role = Role.clinician) -> str:
    """A new clinician of a new clinic; returns the email."""
    email = f"{uuid.uuid4().hex[:10]}@clinic.test"
    async with transaction(app.state.engine) as session:
        clinic = await accounts.create_clinic(session, "Sign-in Clinic")
        await accounts.create_clinician(
            session, app.state.secrets, clinic.id, email, PASSWORD, role
        )
    return email


async def api_client(app: FastAPI, scopes: list[Scope]) -> tuple[str, str]:
    async with transaction(app.state.engine) as session:
        clinic = await accounts.create_clinic(session, "Client Clinic")
        client, secret = await accounts.create_api_client(
            session, app.state.secrets, clinic.id, "EHR", scopes
        )
    return str(client.id), secret


async def password_grant(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post(
        "/v1/auth/token", data={"grant_type": "password", "username": email, "password": password}
    )


async def test_clinician_signs_in_and_uses_the_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    email = await clinician(app)
    response = await password_grant(client, email.upper(), PASSWORD)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert "patients:read" in body["scope"].split()
    listed = await client.get(
        "/v1/patients", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert listed.status_code == 200


async def test_passwords_and_client_secrets_are_stored_as_argon2_hashes(app: FastAPI) -> None:
    email = await clinician(app)
    client_id, secret = await api_client(app, [Scope.patients_read])
    async with transaction(app.state.engine) as session:
        person = (await session.exec(select(Clinician).where(Clinician.email == email))).one()
        stored = await session.get(ApiClient, uuid.UUID(client_id))
    assert person.password_hash.startswith("$argon2id$")
    assert PASSWORD not in person.password_hash
    assert stored is not None
    assert stored.secret_hash.startswith("$argon2id$")
    assert secret not in stored.secret_hash


async def test_client_credentials_in_the_form_or_basic_auth(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    client_id, secret = await api_client(app, [Scope.patients_read, Scope.adherence_read])
    form = await client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "patients:read",
        },
    )
    assert form.status_code == 200
    assert form.json()["scope"] == "patients:read"
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    by_header = await client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert by_header.status_code == 200
    assert by_header.json()["scope"] == "adherence:read patients:read"
    wrong = await client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret + "x",
        },
    )
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_client")
    too_much = await client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "plans:write",
        },
    )
    assert too_much.status_code == 400
    assert "plans:write" in too_much.json()["detail"]


async def test_a_revoked_access_token_fails_on_its_next_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    token = (await password_grant(client, await clinician(app), PASSWORD)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/patients", headers=headers)).status_code == 200
    assert (await client.post("/v1/auth/revoke", json={"token": token})).status_code == 200
    refused = await client.get("/v1/patients", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    # Revoking an unknown token is not an error (RFC 7009).
    assert (await client.post("/v1/auth/revoke", json={"token": "nonsense"})).status_code == 200


async def test_revoking_a_refresh_token_ends_its_device(
    world: World, client: httpx.AsyncClient
) -> None:
    code = await client.post(
        f"/v1/patients/{world.patient_b}/access-codes", headers=world["clinician1"].headers
    )
    tokens = (await client.post("/v1/auth/pair", json={"code": code.json()["code"]})).json()
    await client.post("/v1/auth/revoke", json={"token": tokens["refresh_token"]})
    me = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/v1/exercises", headers=me)).status_code == 401


async def test_revoking_a_patient_signs_their_apps_out_and_voids_their_codes(
    world: World, app: FastAPI, client: httpx.AsyncClient
) -> None:
    """What deleting a patient does to sign-in (the patients service calls it): the
    session check itself knows nothing of patients."""
    secrets: Secrets = app.state.secrets
    codes = [new_access_code() for _ in range(2)]
    async with transaction(app.state.engine) as session:
        patient = Patient(
            clinic_id=world.clinic1,
            reference=f"revoked-{uuid.uuid4().hex[:8]}",
            affected_side="left",
            cause="stroke",
            time_zone="Europe/Lisbon",
        )
        session.add(patient)
        await session.flush()
        for code in codes:
            session.add(
                AccessCode(
                    clinic_id=world.clinic1,
                    patient_id=patient.id,
                    code_hash=secrets.digest(code),
                    expires_at=utcnow() + timedelta(hours=1),
                )
            )
    paired = await client.post("/v1/auth/pair", json={"code": codes[0]})
    assert paired.status_code == 200
    tokens = paired.json()
    me = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/v1/exercises", headers=me)).status_code == 200

    async with transaction(app.state.engine) as session:
        await auth_service.revoke_patient(session, world.clinic1, patient.id)

    assert (await client.get("/v1/exercises", headers=me)).status_code == 401
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert (await client.post("/v1/auth/pair", json={"code": codes[1]})).status_code == 401
    # Only that patient's apps: another patient of the clinic carries on.
    assert (
        await client.get("/v1/exercises", headers=world["patient_b"].headers)
    ).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        jwt.encode(
            {
                "sub": "x",
                "sid": str(uuid.uuid4()),
                "kind": "clinician",
                "cid": "x",
                "iat": 0,
                "exp": 4102444800,
                "iss": "dorsi",
            },
            "a-different-key-" * 3,
            algorithm="HS256",
        ),
    ],
)
async def test_forged_or_malformed_tokens_are_401(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/v1/patients", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_an_expired_token_is_401(app: FastAPI, client: httpx.AsyncClient) -> None:
    token = (await password_grant(client, await clinician(app), PASSWORD)).json()["access_token"]
    secrets: Secrets = app.state.secrets
    claims = secrets.read_access_token(token)
    assert claims is not None
    old = secrets.access_token(
        {k: claims[k] for k in ("sub", "sid", "cid", "kind", "scope")},
        now=utcnow() - timedelta(hours=1),
    )
    response = await client.get("/v1/patients", headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 401


async def test_a_token_accepted_before_is_refused_once_it_expires(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Tokens verified once are remembered; expiry still applies to them."""
    token = (await password_grant(client, await clinician(app), PASSWORD)).json()["access_token"]
    secrets: Secrets = app.state.secrets
    claims = secrets.read_access_token(token)
    assert claims is not None
    # Expires in one to two seconds (JWT times are whole seconds).
    soon = secrets.access_token(
        {k: claims[k] for k in ("sub", "sid", "cid", "kind", "scope")},
        now=utcnow() - secrets.access_ttl + timedelta(seconds=2),
    )
    expires = jwt.decode(soon, options={"verify_signature": False})["exp"]
    headers = {"Authorization": f"Bearer {soon}"}
    assert (await client.get("/v1/patients", headers=headers)).status_code == 200
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    assert (await client.get("/v1/patients", headers=headers)).status_code == 401


@pytest.fixture
async def strict_app(settings: Settings) -> AsyncIterator[FastAPI]:
    limited = create_app(
        settings_for(
            settings.database_url, sign_in_rate_limit="3/minute", sign_in_account_ceiling="5/minute"
        )
    )
    yield limited
    await dispose_engines(limited)


def from_address(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://dorsi.test")


async def test_sign_in_failures_are_limited_per_address(strict_app: FastAPI) -> None:
    email = await clinician(strict_app)

    # One address guessing one account's password is stopped, the right password too.
    async with from_address(strict_app, "10.0.0.1") as http:
        for _ in range(3):
            assert (await password_grant(http, email, "wrong")).status_code == 400
        blocked = await password_grant(http, email, "wrong")
        assert (await password_grant(http, email, PASSWORD)).status_code == 429
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert blocked.headers["content-type"] == "application/problem+json"
    assert blocked.json()["error"] == "slow_down"
    # Those failures do not lock the account out elsewhere.
    async with from_address(strict_app, "10.0.0.9") as http:
        assert (await password_grant(http, email, PASSWORD)).status_code == 200

    # Per address: one address trying many accounts is stopped too.
    async with from_address(strict_app, "10.0.1.1") as http:
        for n in range(3):
            assert (await password_grant(http, f"x{n}@clinic.test", "wrong")).status_code == 400
        assert (await password_grant(http, "y@clinic.test", "wrong")).status_code == 429
        pairing = await http.post("/v1/auth/pair", json={"code": "AAAA-BBBB"})
        assert pairing.status_code == 401
    # Pairing has its own count per address.
    async with from_address(strict_app, "10.0.2.1") as http:
        statuses = [
            (await http.post("/v1/auth/pair", json={"code": "AAAABBBB"})).status_code
            for _ in range(4)
        ]
    assert statuses == [401, 401, 401, 429]


async def test_successful_sign_ins_count_nothing(strict_app: FastAPI) -> None:
    email = await clinician(strict_app)
    async with from_address(strict_app, "10.0.3.1") as http:
        for _ in range(6):
            assert (await password_grant(http, email, PASSWORD)).status_code == 200
        statuses = [(await password_grant(http, email, "wrong")).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


async def test_past_the_account_ceiling_the_right_password_is_refused(
    strict_app: FastAPI,
) -> None:
    email, other = await clinician(strict_app), await clinician(strict_app)
    for n in range(5):
        async with from_address(strict_app, f"10.0.4.{n}") as http:
            assert (await password_grant(http, email, "wrong")).status_code == 400
    async with from_address(strict_app, "10.0.4.9") as http:
        refused = await password_grant(http, email, PASSWORD)
        # The ceiling is the account's: another account signs in from the same address.
        assert (await password_grant(http, other, PASSWORD)).status_code == 200
    assert refused.status_code == 429
    assert refused.json()["error"] == "slow_down"
    assert int(refused.headers["retry-after"]) >= 1


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    for path in ("/v1/exercises", "/v1/patients", "/nowhere", "/healthz"):
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "content-security-policy" in response.headers
        assert "cache-control" in response.headers


async def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    allowed = "https://clinic.example.org"
    cors_app = create_app(settings_for(settings.database_url, cors_origins=[allowed]))
    try:
        async with make_client(cors_app) as http:
            for origin, expected in ((allowed, allowed), ("https://evil.example", None)):
                response = await http.options(
                    "/v1/patients",
                    headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
                )
                assert response.headers.get("access-control-allow-origin") == expected
            # A script may read the headers the contract declares.
            answer = await http.get("/v1/exercises", headers={"Origin": allowed})
            exposed = answer.headers["access-control-expose-headers"].split(", ")
            assert {"ETag", "Idempotent-Replayed", "X-Request-ID", "Dorsi-Change-Cursor"} <= set(
                exposed
            )
    finally:
        await dispose_engines(cors_app)


@pytest.mark.parametrize("environment", ["production", "test"])
def test_outside_development_start_up_needs_a_secret(environment: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DORSI_ENVIRONMENT", environment)
        patch.delenv("DORSI_SECRET_KEY", raising=False)
        with pytest.raises(SettingsError, match="DORSI_SECRET_KEY"):
            load_settings()
        patch.setenv("DORSI_SECRET_KEY", "s" * 40)
        assert load_settings().secret_key is not None
        patch.setenv("DORSI_ENVIRONMENT", "development")
        patch.delenv("DORSI_SECRET_KEY")
        assert load_settings().secret_key is None


async def test_api_processes_share_the_sign_in_limits(settings: Settings) -> None:
    """Four API processes of one deployment allow the configured failures, not four times
    as many: the attempts are counted in the database they share."""
    processes = [
        create_app(
            settings_for(
                settings.database_url,
                sign_in_rate_limit="3/minute",
                sign_in_account_ceiling="5/minute",
            )
        )
        for _ in range(4)
    ]
    try:
        email = await clinician(processes[0])
        statuses = []
        for n in range(8):
            async with from_address(processes[n % 4], "10.0.5.1") as http:
                statuses.append((await password_grant(http, email, "wrong")).status_code)
        async with from_address(processes[1], "10.0.5.1") as http:
            pairing = [
                (await http.post("/v1/auth/pair", json={"code": "AAAABBBB"})).status_code
                for _ in range(2)
            ]
    finally:
        for process in processes:
            await dispose_engines(process)
    assert statuses == [400, 400, 400] + [429] * 5
    # Pairing is counted apart from sign-in, under the same rule.
    assert pairing == [401, 401]
