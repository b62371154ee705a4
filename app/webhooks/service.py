"""Managing a clinic's webhook endpoints and reading their deliveries; every change to an
endpoint is audited in the transaction that makes it."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth.principal import Caller
from app.core.columns import utcnow
from app.core.config import Environment
from app.core.db import execute, table_of
from app.core.errors import Conflict, FieldError, InvalidInput, NotFound
from app.core.pagination import (
    PageQuery,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    split_page,
    time_key,
    time_position,
)
from app.webhooks import fanout, signing, urls
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.schemas import TEST_EVENT, WebhookCreate, WebhookUpdate

ENDPOINTS = table_of(WebhookEndpoint)
DELIVERIES = table_of(WebhookDelivery)
RESOURCE = "webhook_endpoint"
# After a rotation, the previous secret keeps signing beside the new one this long, so
# receivers can switch over without losing a delivery.
ROTATION_OVERLAP = timedelta(hours=24)


async def _checked_url(url: str, environment: Environment) -> str:
    try:
        await urls.check(url, environment)
    except urls.UnsafeURL as error:
        raise InvalidInput(
            [FieldError(location="body", pointer="#/url", detail=str(error))]
        ) from None
    return url


async def _newest_change(session: AsyncSession, clinic_id: uuid.UUID) -> int:
    return int(
        (await execute(session, fanout.NEWEST_CHANGE, {"clinic_id": clinic_id})).scalar_one()
    )


async def create(
    session: AsyncSession, caller: Caller, body: WebhookCreate, environment: Environment
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint, which hears of changes from now on; with its secret."""
    url = await _checked_url(body.url, environment)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        clinic_id=caller.clinic_id,
        url=url,
        description=body.description,
        events=[str(kind) for kind in body.events],
        secret=secret,
        through_change=await _newest_change(session, caller.clinic_id),
    )
    session.add(endpoint)
    await audit.record(session, caller, "create", RESOURCE, endpoint.id)
    return endpoint, secret


async def load(
    session: AsyncSession, clinic_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """The clinic's endpoint, or 404 (another clinic's too)."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.clinic_id != clinic_id:
        raise NotFound("No such webhook endpoint.")
    return endpoint


async def list_endpoints(
    session: AsyncSession, clinic_id: uuid.UUID, query: PageQuery
) -> tuple[list[WebhookEndpoint], str | None]:
    """A page of the clinic's endpoints, oldest first."""
    statement = select(WebhookEndpoint).where(WebhookEndpoint.clinic_id == clinic_id)
    if query.cursor is not None:
        position = time_position(query.cursor)
        statement = statement.where(
            tuple_(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id)) > position
        )
    statement = statement.order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id))
    rows = list((await session.exec(statement.limit(query.limit + 1))).all())
    return split_page(rows, query.limit, time_key)


async def update(
    session: AsyncSession,
    caller: Caller,
    endpoint_id: uuid.UUID,
    body: WebhookUpdate,
    environment: Environment,
) -> WebhookEndpoint:
    endpoint = await load(session, caller.clinic_id, endpoint_id)
    if body.url is not None:
        endpoint.url = await _checked_url(body.url, environment)
    if body.events is not None:
        endpoint.events = [str(kind) for kind in body.events]
    if body.description is not None:
        endpoint.description = body.description
    if body.enabled is not None and body.enabled != endpoint.enabled:
        endpoint.enabled = body.enabled
        endpoint.disabled_reason = None
        endpoint.failing_since = None
        if body.enabled:
            # What happened while it was off is not sent: the feed has it.
            endpoint.through_change = await _newest_change(session, caller.clinic_id)
    endpoint.updated_at = utcnow()
    session.add(endpoint)
    await audit.record(session, caller, "update", RESOURCE, endpoint.id)
    return endpoint


async def remove(session: AsyncSession, caller: Caller, endpoint_id: uuid.UUID) -> None:
    """The endpoint and its deliveries (pending ones are not sent)."""
    endpoint = await load(session, caller.clinic_id, endpoint_id)
    await execute(
        session,
        delete(DELIVERIES).where(DELIVERIES.c.endpoint_id == bindparam("endpoint_id")),
        {"endpoint_id": endpoint.id},
    )
    await session.delete(endpoint)
    await audit.record(session, caller, "delete", RESOURCE, endpoint.id)


async def rotate_secret(
    session: AsyncSession, caller: Caller, endpoint_id: uuid.UUID, now: datetime | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new secret; the one it replaces signs beside it for `ROTATION_OVERLAP`."""
    endpoint = await load(session, caller.clinic_id, endpoint_id)
    now = now or utcnow()
    secret = signing.new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    endpoint.secret = secret
    endpoint.updated_at = now
    session.add(endpoint)
    await audit.record(session, caller, "rotate_secret", RESOURCE, endpoint.id)
    return endpoint, secret


async def send_test(
    session: AsyncSession, caller: Caller, endpoint_id: uuid.UUID
) -> WebhookDelivery:
    """Queue a `webhook.test` event for the endpoint, sent like any other."""
    endpoint = await load(session, caller.clinic_id, endpoint_id)
    now = utcnow()
    event_id = f"evt_{uuid.uuid4().hex}"
    delivery = WebhookDelivery(
        clinic_id=endpoint.clinic_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=TEST_EVENT,
        payload={
            "id": event_id,
            "type": TEST_EVENT,
            "timestamp": now.isoformat(),
            "cursor": None,
            "resource": None,
            "data": {"endpoint_id": str(endpoint.id)},
        },
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    await audit.record(session, caller, "test", RESOURCE, endpoint.id)
    return delivery


async def list_deliveries(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    cursor: str | None,
    limit: int,
) -> tuple[list[WebhookDelivery], str | None]:
    """Newest first, a keyset page on (created_at, id)."""
    endpoint = await load(session, clinic_id, endpoint_id)
    statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if cursor is not None:
        created, last_id = decode_cursor(cursor, 2)
        try:
            created_at, after_id = datetime.fromisoformat(str(created)), uuid.UUID(str(last_id))
        except ValueError:
            raise invalid_cursor() from None
        if created_at.tzinfo is None:
            raise invalid_cursor()
        statement = statement.where(
            or_(
                DELIVERIES.c.created_at < created_at,
                and_(DELIVERIES.c.created_at == created_at, DELIVERIES.c.id < after_id),
            )
        )
    statement = statement.order_by(DELIVERIES.c.created_at.desc(), DELIVERIES.c.id.desc()).limit(
        limit + 1
    )
    rows: list[WebhookDelivery] = list((await session.exec(statement)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor([last.created_at.isoformat(), str(last.id)])


async def retry(
    session: AsyncSession, caller: Caller, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Send the delivery again now (with the same event id), whatever became of it."""
    endpoint = await load(session, caller.clinic_id, endpoint_id)
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound("No such delivery of this endpoint.")
    if delivery.claimed_by is not None:
        raise Conflict("The delivery is being sent right now; look again in a moment.")
    delivery.status = "pending"
    delivery.next_attempt_at = utcnow()
    session.add(delivery)
    await audit.record(session, caller, "retry", RESOURCE, endpoint.id)
    return delivery


def public_delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    """A delivery as `DeliveryPublic` reads it."""
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_attempt_at": delivery.last_attempt_at,
        "response_status_code": delivery.last_status_code,
        "latency_ms": delivery.last_latency_ms,
        "error": delivery.last_error,
        "next_attempt_at": delivery.next_attempt_at,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
    }
