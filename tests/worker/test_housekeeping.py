"""The worker's hourly pruning: idempotency keys past their day, and sign-in state ended
more than a week ago (a session only once its refresh tokens are gone)."""

import uuid
from datetime import timedelta

from fastapi import FastAPI
from sqlmodel import select

from app.auth.models import AuthSession, RateLimitHit, RefreshToken
from app.core.columns import utcnow
from app.core.config import Settings
from app.core.db import transaction
from app.core.idempotency import IdempotentRequest
from app.webhooks import signing
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.worker.runner import Worker
from tests.conftest import World
from tests.webhooks import Clock


async def test_the_delivery_log_is_kept_as_long_as_the_changes(
    app: FastAPI, settings: Settings, world: World
) -> None:
    old = utcnow() - timedelta(days=settings.change_retention_days + 1)
    async with transaction(app.state.engine) as session:
        endpoint = WebhookEndpoint(
            clinic_id=world.clinic1,
            url="http://127.0.0.1:9/hooks",
            events=["plan.*"],
            secret=signing.new_secret(),
            enabled=False,
        )
        session.add(endpoint)
        await session.flush()
        made = {
            status: WebhookDelivery(
                clinic_id=world.clinic1,
                endpoint_id=endpoint.id,
                event_id=f"evt_{status}",
                event_type="plan.updated",
                status=status,
                created_at=old,
            )
            for status in ("delivered", "failed", "pending")
        }
        session.add_all(made.values())
    await Worker(app.state.engine, settings).hourly()
    async with transaction(app.state.engine) as session:
        kept = {s for s, d in made.items() if await session.get(WebhookDelivery, d.id)}
    assert kept == {"pending"}


async def test_expired_keys_and_sign_ins_are_pruned(
    app: FastAPI, settings: Settings, world: World
) -> None:
    now = utcnow()
    long_ago = now - timedelta(days=8)
    old_key, fresh_key = f"old-{uuid.uuid4()}", f"fresh-{uuid.uuid4()}"
    ended, held = uuid.uuid4(), uuid.uuid4()
    async with transaction(app.state.engine) as session:
        for key, made in ((old_key, now - timedelta(days=2)), (fresh_key, now)):
            session.add(IdempotentRequest(key=key, fingerprint="f", created_at=made))
        # Sign-in attempts count for an hour at most (the account ceiling's window).
        attempt = f"sign-in|ip|{uuid.uuid4()}"
        for made in (now - timedelta(hours=2), now):
            session.add(RateLimitHit(key=attempt, at=made))
        for session_id in (ended, held):
            session.add(
                AuthSession(
                    id=session_id,
                    clinic_id=world.clinic1,
                    actor_kind="patient",
                    patient_id=world.patient_a,
                    scopes=[],
                    created_at=long_ago,
                    expires_at=long_ago,
                )
            )
        await session.flush()
        # A refresh token still good keeps its session.
        session.add(
            RefreshToken(
                session_id=held, token_hash=uuid.uuid4().hex, expires_at=now + timedelta(days=1)
            )
        )
    await Worker(app.state.engine, settings, clock=Clock(now)).hourly()
    async with transaction(app.state.engine) as session:
        assert await session.get(IdempotentRequest, old_key) is None
        assert await session.get(IdempotentRequest, fresh_key) is not None
        assert await session.get(AuthSession, ended) is None
        assert await session.get(AuthSession, held) is not None
        kept = await session.exec(select(RateLimitHit.at).where(RateLimitHit.key == attempt))
        assert list(kept) == [now]
