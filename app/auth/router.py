"""Sign-in routes: the OAuth2 token endpoint, patient pairing, refresh and revocation."""

import base64
import binascii
import json
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import Response

from app.auth import service
from app.auth.deps import SecretsDep
from app.auth.oauth import (
    InvalidBasicClient,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    OAuthRoute,
    UnsupportedGrantType,
    oauth_responses,
)
from app.auth.ratelimit import SignInLimiter
from app.auth.schemas import (
    GRANT_TYPES,
    PairRequest,
    RefreshRequest,
    RevokeRequest,
    TokenForm,
    TokenResponse,
)
from app.core.config import Settings
from app.core.db import SessionDep
from app.core.errors import (
    FORM_BODIES,
    JSON_BODY,
    InvalidInput,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    media_type_accepted,
    problem_response,
    responses,
)

router = APIRouter(prefix="/v1/auth", tags=["auth"])

NO_STORE = {"Cache-Control": "no-store"}


async def _limiter(request: Request) -> SignInLimiter:
    limiter: SignInLimiter = request.app.state.sign_in_limiter
    return limiter


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


LimiterDep = Annotated[SignInLimiter, Depends(_limiter)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """The client id and secret of HTTP Basic, each form-encoded first as RFC 6749
    section 2.3.1 asks; None without Basic, 401 if it cannot be read."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, colon, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        colon = ""
    if not colon:
        raise InvalidBasicClient("The HTTP Basic credentials cannot be read.")
    return unquote_plus(client_id), unquote_plus(secret)


async def create_token(
    request: Request,
    response: Response,
    session: SessionDep,
    secrets: SecretsDep,
    limiter: LimiterDep,
    form: Annotated[TokenForm, Form()],
) -> TokenResponse:
    """Clinicians: `grant_type=password` with email and password. Clinic systems:
    `grant_type=client_credentials` with the client id and secret (form fields or HTTP
    Basic). Failed attempts are limited per address, per account from one address, and
    per account overall (a much higher ceiling); past one, 429. A success counts nothing.

    Errors are RFC 6749 error responses as well as problems: `error` and
    `error_description` beside `type` and `detail`. 400 `invalid_request`,
    `invalid_grant` (wrong username or password), `invalid_scope`,
    `unsupported_grant_type` or `invalid_client` (client credentials in the form); 401
    `invalid_client` with `WWW-Authenticate: Basic` when they came as HTTP Basic; 429
    `slow_down` with `Retry-After`."""
    response.headers.update(NO_STORE)
    if form.grant_type not in GRANT_TYPES:
        raise UnsupportedGrantType(
            f"Dorsi takes the grant types {' and '.join(GRANT_TYPES)}, not {form.grant_type!r}."
        )
    if form.grant_type == "password":
        username, password = form.username, form.password
        if not username or not password:
            raise InvalidRequest("The password grant needs `username` and `password`.")
        account = username.strip().lower()
        await limiter.check("account", account, _address(request))
        try:
            return await service.password_grant(session, secrets, username, password, form.scope)
        except InvalidGrant:
            # The refused grant wrote nothing; its count must outlive the request's
            # rollback (and, on SQLite, not wait behind the request's own lock).
            await session.rollback()
            await limiter.failed("account", account, _address(request))
            raise
    basic = _basic_credentials(request)
    if basic is not None and (form.client_id or form.client_secret):
        raise InvalidRequest("Send the client credentials as HTTP Basic or in the form, not both.")
    client_id, client_secret = basic or (form.client_id, form.client_secret)
    if not client_id or not client_secret:
        raise InvalidRequest("The client_credentials grant needs `client_id` and `client_secret`.")
    await limiter.check("client", client_id, _address(request))
    try:
        return await service.client_credentials_grant(
            session, secrets, client_id, client_secret, form.scope, basic=basic is not None
        )
    except InvalidClient:
        await session.rollback()  # as for the password grant
        await limiter.failed("client", client_id, _address(request))
        raise


# The token endpoint's problems are RFC 6749 error responses too (app.auth.oauth).
router.add_api_route(
    "/token",
    create_token,
    methods=["POST"],
    operation_id="createToken",
    summary="Sign in (OAuth2 token endpoint)",
    response_model=TokenResponse,
    responses=oauth_responses(400, 401, 415, 429),
    route_class_override=OAuthRoute,
)


@router.post(
    "/pair",
    operation_id="pairDevice",
    summary="Pair a patient's app with an access code",
    response_model=TokenResponse,
    responses=responses(Unauthorized, TooManyRequests, InvalidInput),
)
async def pair_device(
    request: Request,
    response: Response,
    body: PairRequest,
    session: SessionDep,
    secrets: SecretsDep,
    limiter: LimiterDep,
    settings: SettingsDep,
) -> TokenResponse:
    """Trade the single-use code from `POST /v1/patients/{id}/access-codes` for an access
    token and a refresh token bound to this device."""
    response.headers.update(NO_STORE)
    await limiter.hit(("pair", "ip", _address(request)))
    return await service.pair(
        session,
        secrets,
        body.code,
        body.device_name,
        timedelta(days=settings.refresh_token_days),
        request.client.host if request.client else None,
        request.scope.get("state", {}).get("request_id"),
    )


@router.post(
    "/refresh",
    operation_id="refreshToken",
    summary="Rotate a patient app's refresh token",
    response_model=TokenResponse,
    responses=responses(Unauthorized, TooManyRequests, InvalidInput),
)
async def refresh_token(
    request: Request,
    body: RefreshRequest,
    session: SessionDep,
    secrets: SecretsDep,
    limiter: LimiterDep,
    settings: SettingsDep,
) -> Response:
    """Each refresh token works once and comes back replaced: keep the new one. For
    `DORSI_REFRESH_REUSE_SECONDS` (30 by default) after its first use, the same token
    answers the same new refresh token again, with a fresh access token, so that
    concurrent refreshes and a retry after a lost answer all succeed. Presented later, it
    has leaked: the device's session ends, and the audit trail records a suspected
    theft."""
    await limiter.hit(("refresh", "ip", _address(request)))
    tokens, reused = await service.refresh(
        session,
        secrets,
        body.refresh_token,
        lifetime=timedelta(days=settings.refresh_token_days),
        reuse_window=timedelta(seconds=settings.refresh_reuse_seconds),
        ip=request.client.host if request.client else None,
        request_id=request.scope.get("state", {}).get("request_id"),
    )
    if tokens is None:
        # Returned, not raised: a detected reuse revokes the session, and that must commit.
        detail = "The refresh token was already used; the device is signed out."
        return problem_response(
            401,
            slug="unauthorized",
            detail=detail if reused else "The refresh token is not valid.",
            request=request,
            headers={"WWW-Authenticate": 'Bearer realm="dorsi"', **NO_STORE},
        )
    return Response(tokens.model_dump_json(), media_type="application/json", headers=NO_STORE)


async def _revocation(request: Request) -> RevokeRequest:
    """The revocation request, form-encoded (RFC 7009) or JSON, read as FastAPI reads a
    body, so that the same answers follow: 415, 400 with line and column, 422."""
    content_type = request.headers.get("content-type")
    raw: Any
    if media_type_accepted(content_type, FORM_BODIES):
        form = await request.form()
        # As for the token endpoint (RFC 6749), parameters it does not know are ignored.
        raw = {name: form[name] for name in RevokeRequest.model_fields if name in form}
    elif media_type_accepted(content_type, (JSON_BODY,)):
        body = await request.body()
        try:
            raw = json.loads(body)
        except json.JSONDecodeError as error:
            invalid = {"type": "json_invalid", "loc": ("body", error.pos), "msg": error.msg}
            raise RequestValidationError(
                [invalid | {"ctx": {"error": error.msg}}], body=error.doc
            ) from error
        except UnicodeDecodeError as error:
            raise HTTPException(400, "There was an error parsing the body") from error
    else:
        raise UnsupportedMediaType(
            f"The body must be {' or '.join((*FORM_BODIES[:1], JSON_BODY))}, "
            f"not {content_type or 'no Content-Type'}.",
            headers={"Accept-Post": ", ".join((*FORM_BODIES, JSON_BODY))},
        )
    try:
        return RevokeRequest.model_validate(raw)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors()]
        ) from None


_REVOKE_JSON = {"schema": RevokeRequest.model_json_schema()}
# The form ignores what it does not know; JSON refuses it.
_REVOKE_FORM = {
    "schema": {k: v for k, v in _REVOKE_JSON["schema"].items() if k != "additionalProperties"}
}


@router.post(
    "/revoke",
    operation_id="revokeToken",
    summary="Revoke a token and its session",
    status_code=200,
    # The answer has no body: the contract must not promise a JSON one.
    response_class=Response,
    responses={
        200: {"description": "Revoked (or already unknown, as RFC 7009 asks)."},
        **responses(UnsupportedMediaType, InvalidInput),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {FORM_BODIES[0]: _REVOKE_FORM, JSON_BODY: _REVOKE_JSON},
        }
    },
)
async def revoke_token(
    request: Request,
    body: Annotated[RevokeRequest, Depends(_revocation)],
    session: SessionDep,
    secrets: SecretsDep,
) -> Response:
    """Ends the sign-in session behind an access or refresh token at once: every token of
    that device or sign-in fails on its next request. The clinic's audit trail records it
    (`revoke` of a `device` or `session`, by whoever held the token)."""
    await service.revoke(
        session,
        secrets,
        body.token,
        ip=request.client.host if request.client else None,
        request_id=request.scope.get("state", {}).get("request_id"),
    )
    return Response(status_code=200, headers=NO_STORE)
