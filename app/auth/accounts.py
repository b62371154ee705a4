"""Creating clinics, clinicians and API clients (the CLI and the admin routes share these)."""

import secrets as random
import uuid

from sqlmodel import Session, col, select

from app.auth.models import ApiClient, AuthSession, Clinic, Clinician, Role
from app.auth.principal import Scope
from app.auth.security import Secrets
from app.auth.service import end_sessions
from app.core.columns import utcnow
from app.core.db import flush_or
from app.core.errors import Conflict, NotFound


def create_clinic(session: Session, name: str) -> Clinic:
    clinic = Clinic(name=name)
    session.add(clinic)
    session.flush()
    return clinic


def create_clinician(
    session: Session,
    secrets: Secrets,
    clinic_id: uuid.UUID,
    email: str,
    password: str,
    role: Role = Role.clinician,
) -> Clinician:
    clinician = Clinician(
        clinic_id=clinic_id,
        email=email.strip().lower(),
        password_hash=secrets.hash_password(password),
        role=role,
    )
    session.add(clinician)
    flush_or(session, Conflict(f"A clinician with email {email!r} exists already."))
    return clinician


def create_api_client(
    session: Session, secrets: Secrets, clinic_id: uuid.UUID, name: str, scopes: list[Scope]
) -> tuple[ApiClient, str]:
    """The new client and its secret, which is shown this once and stored only hashed."""
    secret = random.token_urlsafe(32)
    client = ApiClient(
        clinic_id=clinic_id,
        name=name,
        secret_hash=secrets.hash_password(secret),
        scopes=sorted(set(scopes)),
    )
    session.add(client)
    session.flush()
    return client, secret


def load_api_client(session: Session, clinic_id: uuid.UUID, client_id: uuid.UUID) -> ApiClient:
    client = session.exec(
        select(ApiClient).where(
            ApiClient.id == client_id,
            ApiClient.clinic_id == clinic_id,
            col(ApiClient.revoked_at).is_(None),
        )
    ).first()
    if client is None:
        raise NotFound(f"No API client {client_id}.")
    return client


def revoke_api_client(session: Session, clinic_id: uuid.UUID, client_id: uuid.UUID) -> None:
    client = load_api_client(session, clinic_id, client_id)
    client.revoked_at = utcnow()
    session.add(client)
    end_client_sessions(session, client.id)


def end_client_sessions(session: Session, client_id: uuid.UUID) -> None:
    ids = session.exec(select(AuthSession.id).where(AuthSession.api_client_id == client_id)).all()
    end_sessions(session, list(ids))
