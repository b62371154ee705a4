"""Authentication and authorization dependencies: who is calling, and may they do this."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlowPassword, OAuthFlows
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2
from sqlalchemy import Row, RowMapping, Select, bindparam, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth.models import ActorKind, ApiClient, AuthSession, Clinician, Role
from app.auth.principal import Caller, Principal, Scope
from app.auth.security import Secrets
from app.core.columns import utcnow
from app.core.db import SessionDep, execute, table_of
from app.core.errors import Forbidden, Unauthorized

TOKEN_URL = "/v1/auth/token"
SCOPE_DESCRIPTIONS = {
    Scope.exercises_read: "Read the catalog and the clinic's own exercises.",
    Scope.exercises_write: "Create, edit and delete the clinic's own exercises.",
    Scope.patients_read: "Read the clinic's patients.",
    Scope.patients_write: "Create, edit and delete patients; issue access codes.",
    Scope.plans_read: "Read plans and templates.",
    Scope.plans_write: "Create and edit plans and templates.",
    Scope.adherence_read: "Read adherence records and summaries.",
    Scope.adherence_write: "Record adherence on a patient's behalf.",
    Scope.changes_read: "Follow the clinic's change feed and exports.",
    Scope.webhooks_write: "Manage the clinic's webhook endpoints and their deliveries.",
}


def _oauth2() -> OAuth2:
    return OAuth2(
        flows=OAuthFlows(
            password=OAuthFlowPassword(tokenUrl=TOKEN_URL, scopes=dict(SCOPE_DESCRIPTIONS)),
            clientCredentials=OAuthFlowClientCredentials(
                tokenUrl=TOKEN_URL, scopes=dict(SCOPE_DESCRIPTIONS)
            ),
        ),
        scheme_name="OAuth2",
        description="Clinicians sign in with the password flow, clinic systems with client "
        "credentials. Tokens last `DORSI_ACCESS_TOKEN_MINUTES`. Each operation names the "
        "scope it needs; a token without it gets 403.",
        auto_error=False,
    )


oauth2 = _oauth2()
# The same scheme, for the reads that also answer anonymously: the contract says so of the
# operations that depend on this instance (`app.main`), so it cannot drift from the routes.
oauth2_or_anonymous = _oauth2()
patient_bearer = HTTPBearer(
    scheme_name="PatientToken",
    description="A patient app's access token from `POST /v1/auth/pair` or "
    "`POST /v1/auth/refresh`.",
    auto_error=False,
)


async def get_secrets(request: Request) -> Secrets:
    found: Secrets = request.app.state.secrets
    return found


SecretsDep = Annotated[Secrets, Depends(get_secrets)]


SESSIONS = table_of(AuthSession)


def session_state() -> Select[Any]:
    """The columns `principal_of` reads, for any sessions: a query adds its own WHERE (and
    may join and select more, by names other than these) and hands each row over."""
    clinicians, clients = table_of(Clinician), table_of(ApiClient)
    return (
        select(
            SESSIONS.c.clinic_id,
            SESSIONS.c.actor_kind,
            SESSIONS.c.clinician_id,
            SESSIONS.c.patient_id,
            SESSIONS.c.api_client_id,
            SESSIONS.c.scopes,
            SESSIONS.c.expires_at,
            SESSIONS.c.revoked_at,
            clinicians.c.active.label("clinician_active"),
            clinicians.c.role.label("clinician_role"),
            clients.c.revoked_at.label("client_revoked_at"),
        )
        .outerjoin(clinicians, clinicians.c.id == SESSIONS.c.clinician_id)
        .outerjoin(clients, clients.c.id == SESSIONS.c.api_client_id)
    )


# Every request pays for this check, so it is one indexed query returning plain columns,
# built once. A query of its own may select these columns (`session_state`) beside others
# and hand its row to `principal_of`.
# A deleted patient's sessions are revoked when the patient is (`service.revoke_patient`),
# so the rule needs no patient table.
SESSION_STATE = session_state().where(
    SESSIONS.c.id == bindparam("session_id", type_=SESSIONS.c.id.type)
)


async def resolve(session: AsyncSession, secrets: Secrets, token: str | None) -> Principal | None:
    """The principal a bearer token stands for, checked against its session, or None."""
    if not token:
        return None
    return await principal_for(session, session_of(secrets, token))


async def principal_for(session: AsyncSession, session_id: uuid.UUID) -> Principal:
    """The principal of a sign-in session, read and checked by `principal_of`, or
    Unauthorized if the session no longer stands."""
    state = (await execute(session, SESSION_STATE, {"session_id": session_id})).first()
    return principal_of(session_id, state)


def session_of(secrets: Secrets, token: str) -> uuid.UUID:
    """The session an access token names, or Unauthorized if the token is not valid."""
    claims = secrets.read_access_token(token)
    if claims is None:
        raise Unauthorized("The access token is invalid or has expired.")
    try:
        return uuid.UUID(claims["sid"])
    except (ValueError, TypeError):
        raise Unauthorized("The access token is invalid.") from None


def principal_of(session_id: uuid.UUID, state: Row[Any] | RowMapping | None) -> Principal:
    """The principal of a session, from a row holding `SESSION_STATE`'s columns, read by
    name (None: no such session), or Unauthorized if the session no longer stands.

    The one rule for whether a token's session is valid: every route comes here."""
    if state is None:
        raise Unauthorized("The access token is invalid.")
    row = state._mapping if isinstance(state, Row) else state
    if (
        row["revoked_at"] is not None
        or row["expires_at"] <= utcnow()
        or row["clinician_active"] is False
        or row["client_revoked_at"] is not None
    ):
        raise Unauthorized("The access token has been revoked.")
    actor = row["clinician_id"] or row["patient_id"] or row["api_client_id"]
    assert actor is not None
    role = row["clinician_role"]
    return Principal(
        kind=ActorKind(row["actor_kind"]),
        id=actor,
        clinic_id=row["clinic_id"],
        session_id=session_id,
        scopes=frozenset(row["scopes"]),
        # From the database, not the token: a demoted admin is demoted at once.
        role=Role(role) if role else None,
        patient_id=row["patient_id"],
    )


def caller_for(request: Request, principal: Principal) -> Caller:
    """The principal with the address and request id the audit trail records."""
    client = request.client
    return Caller(
        principal=principal,
        ip=client.host if client else None,
        request_id=request.scope.get("state", {}).get("request_id"),
    )


def optional_caller(scope: Scope) -> Callable[..., Awaitable[Caller | None]]:
    """A dependency for public reads: anyone, but a presented token must be valid and hold
    ``scope``, which the contract names beside anonymous access."""

    async def dependency(
        request: Request,
        session: SessionDep,
        secrets: SecretsDep,
        token: Annotated[str | None, Security(oauth2_or_anonymous, scopes=[scope])],
    ) -> Caller | None:
        principal = await resolve(session, secrets, _bearer(token))
        if principal is None:
            return None
        if scope not in principal.scopes:
            raise Forbidden(f"This token lacks the `{scope}` scope.")
        return caller_for(request, principal)

    return dependency


def _bearer(authorization: str | None) -> str | None:
    # OAuth2 (auto_error=False) hands over the raw header value.
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("Send the token as `Authorization: Bearer <token>`.")
    return value


def staff_session(secrets: Secrets, authorization: str | None) -> uuid.UUID:
    """The session a staff route's ``Authorization`` header names, for a route that reads
    `SESSION_STATE` within its own query; `as_staff(principal_of(...))` then checks it."""
    token = _bearer(authorization)
    if not token:
        raise Unauthorized()
    return session_of(secrets, token)


def as_staff(principal: Principal, scope: Scope | None = None, *, admin: bool = False) -> Principal:
    """The principal, if it is staff (an admin, if asked) holding ``scope``."""
    if principal.kind == ActorKind.patient:
        raise Forbidden("Patient tokens reach their own data under /v1/me.")
    if admin and principal.role != Role.admin:
        raise Forbidden("Only a clinic admin may do this.")
    if scope is not None and scope not in principal.scopes:
        raise Forbidden(f"This token lacks the `{scope}` scope.")
    return principal


# The dependencies of admin-only routes, made once each as the routers are declared: the
# contract says so of the routes that use one (`app.main`).
ADMIN_ONLY: set[Callable[..., Awaitable[Caller]]] = set()


def staff(scope: Scope | None = None, *, admin: bool = False) -> Callable[..., Awaitable[Caller]]:
    """A dependency for clinic routes: a clinician (admin, if asked) or an API client
    holding ``scope``. Patients are refused; they use `/v1/me`. The scope it checks is the
    one the contract names (`Security`), from this one argument."""

    async def dependency(
        request: Request,
        session: SessionDep,
        secrets: SecretsDep,
        token: Annotated[str | None, Security(oauth2, scopes=[] if scope is None else [scope])],
    ) -> Caller:
        principal = await resolve(session, secrets, _bearer(token))
        if principal is None:
            raise Unauthorized()
        return caller_for(request, as_staff(principal, scope, admin=admin))

    if admin:
        ADMIN_ONLY.add(dependency)
    return dependency


PatientBearer = Annotated[HTTPAuthorizationCredentials | None, Depends(patient_bearer)]


async def patient_caller(
    request: Request, session: SessionDep, secrets: SecretsDep, credentials: PatientBearer
) -> Caller:
    """A patient's app, with a token from pairing."""
    principal = await resolve(session, secrets, credentials.credentials if credentials else None)
    if principal is None:
        raise Unauthorized()
    return caller_for(request, as_patient(principal))


PatientCaller = Annotated[Caller, Depends(patient_caller)]


def as_patient(principal: Principal) -> Principal:
    """The principal, if it is a patient's app."""
    if principal.kind != ActorKind.patient:
        raise Forbidden("Only a patient's app has a /v1/me.")
    return principal


def patient_session(
    secrets: Secrets, credentials: HTTPAuthorizationCredentials | None
) -> uuid.UUID:
    """The session a patient app's token (`PatientBearer`) names, its signature and expiry
    checked, for a route that reads `session_state` within its own query;
    `as_patient(principal_of(...))` then checks the session."""
    if credentials is None:
        raise Unauthorized()
    return session_of(secrets, credentials.credentials)
