"""The token endpoint through a standard OAuth2 client library (authlib), and its errors
as RFC 6749 section 5.2 has them."""

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import FastAPI

from app.auth.principal import Scope
from app.core.errors import PROBLEM_BASE
from tests import contract
from tests.auth.test_sign_in import api_client, clinician, password_grant
from tests.conftest import PASSWORD

TOKEN_URL = "/v1/auth/token"


@asynccontextmanager
async def oauth_client(app: FastAPI, **kwargs: str) -> AsyncIterator[AsyncOAuth2Client]:
    """authlib's httpx client against the app, every answer checked against the contract."""
    async with AsyncOAuth2Client(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dorsi.test",
        event_hooks={"response": [contract.check]},
        **kwargs,
    ) as client:
        yield client


def assert_oauth_error(
    response: httpx.Response, status: int, error: str, *, challenge: str | None = None
) -> dict[str, object]:
    """An RFC 6749 error response that is also a problem document of the same status."""
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert body["error"] == error
    assert body["status"] == status
    assert body["type"] == f"{PROBLEM_BASE}{error.replace('_', '-')}" or error in (
        "invalid_request",
        "slow_down",
    )
    description = body["error_description"]
    assert isinstance(description, str)
    assert description
    assert all(c in range(0x20, 0x7F) and c not in (0x22, 0x5C) for c in description.encode())
    assert response.headers.get("www-authenticate") == challenge
    assert response.headers["cache-control"] == "no-store"
    return body


async def test_authlib_signs_a_clinician_in_with_the_password_grant(app: FastAPI) -> None:
    email = await clinician(app)
    async with oauth_client(app) as oauth:
        token = await oauth.fetch_token(TOKEN_URL, username=email, password=PASSWORD)
        assert token["token_type"] == "bearer"
        assert "patients:read" in token["scope"].split()
        # The client now signs its requests with the token.
        assert (await oauth.get("/v1/patients")).status_code == 200
        with pytest.raises(OAuthError) as refused:
            await oauth.fetch_token(TOKEN_URL, username=email, password="not the password")
    assert refused.value.error == "invalid_grant"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_authlib_signs_a_clinic_system_in_with_client_credentials(
    app: FastAPI, method: str
) -> None:
    client_id, secret = await api_client(app, [Scope.patients_read])
    async with oauth_client(
        app, client_id=client_id, client_secret=secret, token_endpoint_auth_method=method
    ) as oauth:
        token = await oauth.fetch_token(TOKEN_URL, grant_type="client_credentials")
        assert token["scope"] == "patients:read"
        assert (await oauth.get("/v1/patients")).status_code == 200
    async with oauth_client(
        app, client_id=client_id, client_secret=secret + "x", token_endpoint_auth_method=method
    ) as wrong:
        with pytest.raises(OAuthError) as refused:
            await wrong.fetch_token(TOKEN_URL, grant_type="client_credentials")
        assert wrong.token is None
    assert refused.value.error == "invalid_client"


async def test_a_wrong_client_is_401_with_a_basic_challenge_only_when_sent_as_basic(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    client_id, secret = await api_client(app, [Scope.patients_read])
    basic = base64.b64encode(f"{client_id}:{secret}x".encode()).decode()
    by_header = await client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert_oauth_error(by_header, 401, "invalid_client", challenge='Basic realm="dorsi"')
    unreadable = await client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic %%%"},
    )
    assert_oauth_error(unreadable, 401, "invalid_client", challenge='Basic realm="dorsi"')
    in_form = await client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"},
    )
    assert_oauth_error(in_form, 400, "invalid_client")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "implicit"}, "unsupported_grant_type"),
        ({"grant_type": "refresh_token", "refresh_token": "x"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "password", "username": "x@clinic.test"}, "invalid_request"),
        ({"grant_type": "client_credentials", "client_id": "abc"}, "invalid_request"),
        ({"grant_type": "password", "username": "x" * 300, "password": "y"}, "invalid_request"),
        (
            {"grant_type": "password", "username": "a\x00b@clinic.test", "password": "y"},
            "invalid_request",
        ),
    ],
)
async def test_malformed_grants_are_400_with_their_rfc_6749_error(
    client: httpx.AsyncClient, form: dict[str, str], error: str
) -> None:
    body = assert_oauth_error(await client.post(TOKEN_URL, data=form), 400, error)
    assert body["instance"] == TOKEN_URL


async def test_a_scope_beyond_the_callers_is_invalid_scope(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    client_id, secret = await api_client(app, [Scope.patients_read])
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": "plans:write",
    }
    body = assert_oauth_error(await client.post(TOKEN_URL, data=form), 400, "invalid_scope")
    assert "plans:write" in str(body["detail"])


async def test_wrong_credentials_are_invalid_grant_and_say_nothing_more(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    email = await clinician(app)
    for response in (
        await password_grant(client, email, "not the password"),
        await password_grant(client, f"nobody-{email}", PASSWORD),
    ):
        body = assert_oauth_error(response, 400, "invalid_grant")
        assert body["error_description"] == body["detail"] == "The credentials are not valid."


async def test_a_body_the_token_endpoint_cannot_take_carries_an_error_too(
    client: httpx.AsyncClient,
) -> None:
    as_json = await client.post(TOKEN_URL, json={"grant_type": "password"})
    assert_oauth_error(as_json, 415, "invalid_request")
    broken = await client.post(
        TOKEN_URL,
        content=b"grant_type=password&username=%ff",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert broken.status_code == 400, broken.text
    assert broken.json()["error"] == "invalid_request"
