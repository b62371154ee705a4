"""Creating clinics, clinicians and API clients (the CLI and the admin routes share these)."""

import secrets as random
import uuid

from anyio import to_thread
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth.models import ApiClient, AuthSession, Clinic, Clinician, Role
from app.auth.principal import Scope
from app.auth.security import Secrets
from app.auth.service import end_sessions
from app.core.columns import utcnow
from app.core.db import flush_or
from app.core.errors import Conflict, NotFound
from app.core.text import email_address


async def create_clinic(session: AsyncSession, name: str) -> Clinic:
    clinic = Clinic(name=name)
    session.add(clinic)
    await session.flush()
    return clinic


async def _hashed(secrets: Secrets, secret: str) -> str:
    """Argon2 is CPU work by design: it runs on a worker thread, not on the event loop."""
    return await to_thread.run_sync(secrets.hash_password, secret)


async def create_clinician(
    session: AsyncSession,
    secrets: Secrets,
    clinic_id: uuid.UUID,
    email: str,
    password: str,
    role: Role = Role.clinician,
) -> Clinician:
    """Raises ValueError for an address that Dorsi's email rule refuses (the API's schema
    has refused it already; the CLI and the demo come here directly)."""
    clinician = Clinician(
        clinic_id=clinic_id,
        email=email_address(email),
        password_hash=await _hashed(secrets, password),
        role=role,
    )
    session.add(clinician)
    await flush_or(session, Conflict(f"A clinician with email {email!r} exists already."))
    return clinician


async def create_api_client(
    session: AsyncSession,
    secrets: Secrets,
    clinic_id: uuid.UUID,
    name: str,
    scopes: list[Scope],
) -> tuple[ApiClient, str]:
    """The new client and its secret, which is shown this once and stored only hashed."""
    secret = random.token_urlsafe(32)
    client = ApiClient(
        clinic_id=clinic_id,
        name=name,
        secret_hash=await _hashed(secrets, secret),
        scopes=sorted(set(scopes)),
    )
    session.add(client)
    await session.flush()
    return client, secret


async def load_api_client(
    session: AsyncSession, clinic_id: uuid.UUID, client_id: uuid.UUID
) -> ApiClient:
    client = (
        await session.exec(
            select(ApiClient).where(
                ApiClient.id == client_id,
                ApiClient.clinic_id == clinic_id,
                col(ApiClient.revoked_at).is_(None),
            )
        )
    ).first()
    if client is None:
        raise NotFound(f"No API client {client_id}.")
    return client


async def revoke_api_client(
    session: AsyncSession, clinic_id: uuid.UUID, client_id: uuid.UUID
) -> None:
    client = await load_api_client(session, clinic_id, client_id)
    client.revoked_at = utcnow()
    session.add(client)
    await end_client_sessions(session, client.id)


async def end_client_sessions(session: AsyncSession, client_id: uuid.UUID) -> None:
    ids = (
        await session.exec(select(AuthSession.id).where(AuthSession.api_client_id == client_id))
    ).all()
    await end_sessions(session, list(ids))
