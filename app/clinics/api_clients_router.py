"""API clients (clinic systems) of the caller's clinic; clinic admins only."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.auth import accounts
from app.auth.deps import SecretsDep, staff
from app.auth.principal import Caller
from app.clinics import service
from app.clinics.schemas import (
    ApiClientCreate,
    ApiClientCreated,
    ApiClientPage,
    ApiClientPublic,
    ApiClientUpdate,
)
from app.core.db import SessionDep
from app.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized, responses
from app.core.http import declared_headers
from app.core.pagination import PageQuery

router = APIRouter(prefix="/v1/api-clients", tags=["auth"])
Admin = Annotated[Caller, Depends(staff(admin=True))]
ERRORS = (Unauthorized, Forbidden, InvalidInput)


@router.post(
    "",
    operation_id="createApiClient",
    summary="Create an API client",
    status_code=201,
    response_model=ApiClientCreated,
    responses={201: {"headers": declared_headers("Location")}, **responses(*ERRORS)},
)
async def create_api_client(
    body: ApiClientCreate,
    response: Response,
    session: SessionDep,
    secrets: SecretsDep,
    caller: Admin,
) -> ApiClientCreated:
    """The answer holds the secret, shown this once."""
    response.headers["Cache-Control"] = "no-store"
    client, secret = await service.create_api_client(session, secrets, caller, body)
    response.headers["Location"] = f"/v1/api-clients/{client.id}"
    public = ApiClientPublic.model_validate(client)
    return ApiClientCreated(**public.model_dump(), client_secret=secret)


@router.get(
    "",
    operation_id="listApiClients",
    summary="List API clients",
    response_model=ApiClientPage,
    responses=responses(*ERRORS),
)
async def list_api_clients(
    session: SessionDep, caller: Admin, query: Annotated[PageQuery, Query()]
) -> ApiClientPage:
    """The clinic's API clients that are not revoked, oldest first (secrets are never
    shown again)."""
    rows, cursor = await service.list_api_clients(session, caller, query)
    return ApiClientPage(
        items=[ApiClientPublic.model_validate(row) for row in rows], next_cursor=cursor
    )


@router.get(
    "/{client_id}",
    operation_id="getApiClient",
    summary="Get an API client",
    response_model=ApiClientPublic,
    responses=responses(*ERRORS, NotFound),
)
async def get_api_client(
    client_id: uuid.UUID, session: SessionDep, caller: Admin
) -> ApiClientPublic:
    """One API client of the clinic, with its scopes; its secret is never shown again."""
    return ApiClientPublic.model_validate(
        await accounts.load_api_client(session, caller.clinic_id, client_id)
    )


@router.patch(
    "/{client_id}",
    operation_id="updateApiClient",
    summary="Update an API client",
    response_model=ApiClientPublic,
    responses=responses(*ERRORS, NotFound),
)
async def update_api_client(
    client_id: uuid.UUID, body: ApiClientUpdate, session: SessionDep, caller: Admin
) -> ApiClientPublic:
    """Renames it or changes its scopes; its secret stays as it is."""
    client = await service.update_api_client(session, caller, client_id, body)
    return ApiClientPublic.model_validate(client)


@router.delete(
    "/{client_id}",
    operation_id="deleteApiClient",
    summary="Revoke an API client",
    status_code=204,
    responses=responses(*ERRORS, NotFound),
)
async def delete_api_client(client_id: uuid.UUID, session: SessionDep, caller: Admin) -> Response:
    """Its tokens fail on their next request."""
    await service.revoke_api_client(session, caller, client_id)
    return Response(status_code=204)
