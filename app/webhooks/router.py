"""`/v1/webhooks`: a clinic's webhook endpoints, their secrets and their deliveries; for
clinic admins and API clients holding `webhooks:write`."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, Security

from app.auth.deps import SecretsDep, caller_for, oauth2, principal_for, staff_session
from app.auth.models import ActorKind, Role
from app.auth.principal import Caller, Scope
from app.core.config import Environment
from app.core.db import SessionDep
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized, responses
from app.core.pagination import PageQuery
from app.webhooks import service
from app.webhooks.schemas import (
    DeliveryPage,
    DeliveryPublic,
    WebhookCreate,
    WebhookPage,
    WebhookPublic,
    WebhookUpdate,
    WebhookWithSecret,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
ERRORS = (Unauthorized, Forbidden, InvalidInput)
NO_STORE = "no-store"


async def webhook_manager(
    request: Request,
    session: SessionDep,
    secrets: SecretsDep,
    # The scope a clinic system needs, as the contract names it.
    token: Annotated[str | None, Security(oauth2, scopes=[Scope.webhooks_write])],
) -> Caller:
    """A clinic admin, or an API client holding `webhooks:write`."""
    principal = await principal_for(session, staff_session(secrets, token))
    if principal.kind == ActorKind.clinician:
        if principal.role != Role.admin:
            raise Forbidden("Only clinic admins and clinic systems manage webhooks.")
    elif principal.kind == ActorKind.api_client:
        if Scope.webhooks_write not in principal.scopes:
            raise Forbidden(f"This token lacks the `{Scope.webhooks_write}` scope.")
    else:
        raise Forbidden("Patient tokens reach their own data under /v1/me.")
    return caller_for(request, principal)


Manager = Annotated[Caller, Depends(webhook_manager)]


def environment_of(request: Request) -> Environment:
    environment: Environment = request.app.state.settings.environment
    return environment


@router.post(
    "",
    operation_id="createWebhook",
    summary="Register a webhook endpoint",
    status_code=201,
    response_model=WebhookWithSecret,
    responses=responses(*ERRORS),
)
async def create_webhook(
    body: WebhookCreate, request: Request, response: Response, session: SessionDep, caller: Manager
) -> WebhookWithSecret:
    """Events that happen from now on are POSTed to `url`, signed per Standard Webhooks
    (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the `secret` in the
    answer, shown this once.

    The URL must use https and resolve to public addresses only (checked now and before
    every send). Each body carries the event's `id` and `type`, the change feed's `cursor`
    and the resource's `version`, so a receiver can order events and drop duplicates:
    delivery is at least once."""
    response.headers["Cache-Control"] = NO_STORE
    endpoint, secret = await service.create(session, caller, body, environment_of(request))
    return WebhookWithSecret(**_public(endpoint).model_dump(), secret=secret)


def _public(endpoint: object) -> WebhookPublic:
    return WebhookPublic.model_validate(endpoint)


@router.get(
    "",
    operation_id="listWebhooks",
    summary="List webhook endpoints",
    response_model=WebhookPage,
    responses=responses(*ERRORS),
)
async def list_webhooks(
    session: SessionDep, caller: Manager, query: Annotated[PageQuery, Query()]
) -> WebhookPage:
    """The clinic's webhook endpoints, oldest first, without their secrets."""
    rows, cursor = await service.list_endpoints(session, caller.clinic_id, query)
    return WebhookPage(items=[_public(e) for e in rows], next_cursor=cursor)


@router.get(
    "/{webhook_id}",
    operation_id="getWebhook",
    summary="Get a webhook endpoint",
    response_model=WebhookPublic,
    responses=responses(*ERRORS, NotFound),
)
async def get_webhook(webhook_id: uuid.UUID, session: SessionDep, caller: Manager) -> WebhookPublic:
    """One of the clinic's webhook endpoints, without its secret."""
    return _public(await service.load(session, caller.clinic_id, webhook_id))


@router.patch(
    "/{webhook_id}",
    operation_id="updateWebhook",
    summary="Update a webhook endpoint",
    response_model=WebhookPublic,
    responses=responses(*ERRORS, NotFound),
)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    request: Request,
    session: SessionDep,
    caller: Manager,
) -> WebhookPublic:
    """Changes its URL, events or description, or disables and enables it. An endpoint
    enabled again hears of what happens from then on (the change feed has the rest)."""
    endpoint = await service.update(session, caller, webhook_id, body, environment_of(request))
    return _public(endpoint)


@router.delete(
    "/{webhook_id}",
    operation_id="deleteWebhook",
    summary="Delete a webhook endpoint",
    status_code=204,
    responses=responses(*ERRORS, NotFound),
)
async def delete_webhook(webhook_id: uuid.UUID, session: SessionDep, caller: Manager) -> Response:
    """Its pending deliveries are dropped with it."""
    await service.remove(session, caller, webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    operation_id="rotateWebhookSecret",
    summary="Rotate a webhook endpoint's signing secret",
    response_model=WebhookWithSecret,
    responses=responses(*ERRORS, NotFound),
)
async def rotate_webhook_secret(
    webhook_id: uuid.UUID, response: Response, session: SessionDep, caller: Manager
) -> WebhookWithSecret:
    """A new secret, shown this once. For 24 hours the previous secret keeps signing
    beside it (`webhook-signature` then holds both signatures), so the receiver can
    switch over without missing an event."""
    response.headers["Cache-Control"] = NO_STORE
    endpoint, secret = await service.rotate_secret(session, caller, webhook_id)
    return WebhookWithSecret(**_public(endpoint).model_dump(), secret=secret)


@router.post(
    "/{webhook_id}/test",
    operation_id="testWebhook",
    summary="Send a test event",
    status_code=202,
    response_model=DeliveryPublic,
    responses=responses(*ERRORS, NotFound),
)
async def test_webhook(
    webhook_id: uuid.UUID, session: SessionDep, caller: Manager
) -> DeliveryPublic:
    """Queues a `webhook.test` event for the endpoint, whatever it subscribes to; the
    worker sends it like any other. Follow it in the deliveries list."""
    delivery = await service.send_test(session, caller, webhook_id)
    return DeliveryPublic.model_validate(service.public_delivery(delivery))


@router.get(
    "/{webhook_id}/deliveries",
    operation_id="listWebhookDeliveries",
    summary="List a webhook endpoint's deliveries",
    response_model=DeliveryPage,
    responses=responses(*ERRORS, NotFound),
)
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    query: Annotated[PageQuery, Query()],
    session: SessionDep,
    caller: Manager,
) -> DeliveryPage:
    """Newest first: each event sent (or to be sent) here, with its attempts so far, the
    last one's status code, latency and error, and when it is tried next."""
    rows, cursor = await service.list_deliveries(
        session, caller.clinic_id, webhook_id, query.cursor, query.limit
    )
    return DeliveryPage(
        items=[DeliveryPublic.model_validate(service.public_delivery(r)) for r in rows],
        next_cursor=cursor,
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry",
    operation_id="retryWebhookDelivery",
    summary="Send a delivery again",
    status_code=202,
    response_model=DeliveryPublic,
    responses=responses(*ERRORS, NotFound, Conflict),
)
async def retry_webhook_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, session: SessionDep, caller: Manager
) -> DeliveryPublic:
    """Queues the delivery to be sent again now, with the same event id, whether it
    failed, is waiting for its next try, or was delivered. 409 while it is being sent."""
    delivery = await service.retry(session, caller, webhook_id, delivery_id)
    return DeliveryPublic.model_validate(service.public_delivery(delivery))
