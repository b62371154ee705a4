"""API clients (clinic systems) of the caller's clinic; clinic admins only."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from app.auth import accounts
from app.auth.deps import SecretsDep, staff
from app.auth.models import ApiClient
from app.auth.principal import Caller, Scope
from app.core.db import SessionDep
from app.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized, responses

router = APIRouter(prefix="/v1/api-clients", tags=["auth"])
Admin = Annotated[Caller, Depends(staff(admin=True))]
ERRORS = (Unauthorized, Forbidden, InvalidInput)

_EXAMPLE: dict[str, Any] = {
    "id": "0d6f5a3e-7b2c-4e1f-9a8b-3c4d5e6f7a8b",
    "name": "Rehab EHR",
    "scopes": ["adherence:read", "changes:read"],
    "created_at": "2026-11-23T10:00:00Z",
}


class ApiClientCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Rehab EHR", "scopes": ["adherence:read"]}]},
    )

    name: Annotated[str, Field(min_length=1, max_length=120)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(Scope))]


class ApiClientPublic(BaseModel):
    """A clinic system's credentials; `client_id` is its `id`."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: uuid.UUID
    name: str
    scopes: list[str]
    created_at: datetime


class ApiClientCreated(ApiClientPublic):
    """As created: the only answer that shows the secret."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_EXAMPLE, "client_secret": "s3cr3t…"}]}
    )

    client_secret: str = Field(description="Shown once; Dorsi keeps only a hash.")


@router.post(
    "",
    operation_id="createApiClient",
    summary="Create an API client",
    status_code=201,
    response_model=ApiClientCreated,
    responses=responses(*ERRORS),
)
def create_api_client(
    body: ApiClientCreate,
    response: Response,
    session: SessionDep,
    secrets: SecretsDep,
    caller: Admin,
) -> ApiClientCreated:
    """The answer holds the secret, shown this once."""
    response.headers["Cache-Control"] = "no-store"
    client, secret = accounts.create_api_client(
        session, secrets, caller.clinic_id, body.name, body.scopes
    )
    public = ApiClientPublic.model_validate(client)
    return ApiClientCreated(**public.model_dump(), client_secret=secret)


@router.get(
    "",
    operation_id="listApiClients",
    summary="List API clients",
    response_model=list[ApiClientPublic],
    responses=responses(*ERRORS),
)
def list_api_clients(session: SessionDep, caller: Admin) -> list[ApiClientPublic]:
    rows = session.exec(
        select(ApiClient)
        .where(ApiClient.clinic_id == caller.clinic_id, col(ApiClient.revoked_at).is_(None))
        .order_by(col(ApiClient.created_at))
    ).all()
    return [ApiClientPublic.model_validate(row) for row in rows]


class ApiClientUpdate(BaseModel):
    """Fields to change. Changing the scopes signs the client's current tokens out."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"scopes": ["adherence:read"]}]}
    )

    name: Annotated[str | None, Field(min_length=1, max_length=120)] = None
    scopes: Annotated[list[Scope] | None, Field(min_length=1, max_length=len(Scope))] = None


@router.get(
    "/{client_id}",
    operation_id="getApiClient",
    summary="Get an API client",
    response_model=ApiClientPublic,
    responses=responses(*ERRORS, NotFound),
)
def get_api_client(client_id: uuid.UUID, session: SessionDep, caller: Admin) -> ApiClientPublic:
    return ApiClientPublic.model_validate(
        accounts.load_api_client(session, caller.clinic_id, client_id)
    )


@router.patch(
    "/{client_id}",
    operation_id="updateApiClient",
    summary="Update an API client",
    response_model=ApiClientPublic,
    responses=responses(*ERRORS, NotFound),
)
def update_api_client(
    client_id: uuid.UUID, body: ApiClientUpdate, session: SessionDep, caller: Admin
) -> ApiClientPublic:
    """Renames it or changes its scopes; its secret stays as it is."""
    client = accounts.load_api_client(session, caller.clinic_id, client_id)
    if body.name is not None:
        client.name = body.name
    if body.scopes is not None and sorted(set(body.scopes)) != client.scopes:
        client.scopes = sorted(set(body.scopes))
        accounts.end_client_sessions(session, client.id)
    session.add(client)
    session.flush()
    return ApiClientPublic.model_validate(client)


@router.delete(
    "/{client_id}",
    operation_id="deleteApiClient",
    summary="Revoke an API client",
    status_code=204,
    responses=responses(*ERRORS, NotFound),
)
def delete_api_client(client_id: uuid.UUID, session: SessionDep, caller: Admin) -> Response:
    """Its tokens fail on their next request."""
    accounts.revoke_api_client(session, caller.clinic_id, client_id)
    return Response(status_code=204)
