"""Sign-in: password and client-credentials grants, pairing, refresh rotation, revocation."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.audit import service as audit
from app.auth.models import (
    AccessCode,
    ActorKind,
    ApiClient,
    AuthSession,
    Clinician,
    RefreshToken,
)
from app.auth.principal import CLINICIAN_SCOPES, PATIENT_SCOPES, Caller, Principal
from app.auth.schemas import TokenResponse
from app.auth.security import Secrets, new_opaque_token, normalize_access_code
from app.core.columns import utcnow
from app.core.errors import BadRequest, Unauthorized
from app.patients.models import Patient

INVALID_CREDENTIALS = "The credentials are not valid."


def _grant(
    session: Session,
    secrets: Secrets,
    auth: AuthSession,
    *,
    role: str | None = None,
    refresh_token: str | None = None,
) -> TokenResponse:
    claims = {
        "sub": str(auth.clinician_id or auth.patient_id or auth.api_client_id),
        "sid": str(auth.id),
        "cid": str(auth.clinic_id),
        "kind": auth.actor_kind,
        "scope": " ".join(sorted(auth.scopes)),
    }
    if role:
        claims["role"] = role
    return TokenResponse(
        access_token=secrets.access_token(claims),
        expires_in=int(secrets.access_ttl.total_seconds()),
        scope=claims["scope"],
        refresh_token=refresh_token,
        patient_id=auth.patient_id,
    )


def _requested(scope: str | None, allowed: frozenset[str]) -> list[str]:
    if not scope:
        return sorted(allowed)
    wanted = set(scope.split())
    if not wanted <= allowed:
        raise BadRequest(
            f"Scopes not granted to this caller: {' '.join(sorted(wanted - allowed))}."
        )
    return sorted(wanted)


def password_grant(
    session: Session, secrets: Secrets, email: str, password: str, scope: str | None
) -> TokenResponse:
    clinician = session.exec(
        select(Clinician).where(Clinician.email == email.strip().lower())
    ).first()
    valid = secrets.verify_password(clinician.password_hash if clinician else None, password)
    if clinician is None or not valid or not clinician.active:
        raise Unauthorized(INVALID_CREDENTIALS)
    auth = AuthSession(
        clinic_id=clinician.clinic_id,
        actor_kind=ActorKind.clinician,
        clinician_id=clinician.id,
        scopes=_requested(scope, CLINICIAN_SCOPES),
        expires_at=utcnow() + secrets.access_ttl,
    )
    session.add(auth)
    session.flush()
    return _grant(session, secrets, auth, role=clinician.role)


def client_credentials_grant(
    session: Session, secrets: Secrets, client_id: str, client_secret: str, scope: str | None
) -> TokenResponse:
    try:
        client = session.get(ApiClient, uuid.UUID(client_id))
    except ValueError:
        client = None
    valid = secrets.verify_password(client.secret_hash if client else None, client_secret)
    if client is None or not valid or client.revoked_at is not None:
        raise Unauthorized(INVALID_CREDENTIALS)
    auth = AuthSession(
        clinic_id=client.clinic_id,
        actor_kind=ActorKind.api_client,
        api_client_id=client.id,
        scopes=_requested(scope, frozenset(client.scopes)),
        expires_at=utcnow() + secrets.access_ttl,
    )
    session.add(auth)
    session.flush()
    return _grant(session, secrets, auth)


def _new_refresh_token(
    session: Session, secrets: Secrets, auth: AuthSession, lifetime: timedelta
) -> str:
    token = new_opaque_token()
    session.add(
        RefreshToken(
            session_id=auth.id,
            token_hash=secrets.digest(token),
            expires_at=utcnow() + lifetime,
        )
    )
    return token


def pair(
    session: Session,
    secrets: Secrets,
    code: str,
    device_name: str | None,
    lifetime: timedelta,
    ip: str | None,
    request_id: str | None,
) -> TokenResponse:
    """Trade a single-use access code for a device session and its first tokens."""
    now = utcnow()
    found = session.exec(
        select(AccessCode).where(
            AccessCode.code_hash == secrets.digest(normalize_access_code(code))
        )
    ).first()
    # The conditional update makes the code single-use even when two apps race for it.
    claimed = found is not None and _claim_once(session, AccessCode, found.id, now)
    patient = session.get(Patient, found.patient_id) if found else None
    if not claimed or found is None or found.expires_at <= now or patient is None:
        raise Unauthorized("The access code is not valid: wrong, used, or expired.")
    if patient.deleted_at is not None:
        raise Unauthorized("The access code is not valid: wrong, used, or expired.")
    auth = AuthSession(
        clinic_id=patient.clinic_id,
        actor_kind=ActorKind.patient,
        patient_id=patient.id,
        device_name=device_name,
        scopes=sorted(PATIENT_SCOPES),
        expires_at=now + lifetime,
    )
    session.add(auth)
    session.flush()
    refresh = _new_refresh_token(session, secrets, auth, lifetime)
    principal = Principal(
        kind=ActorKind.patient,
        id=patient.id,
        clinic_id=patient.clinic_id,
        session_id=auth.id,
        scopes=PATIENT_SCOPES,
        patient_id=patient.id,
    )
    caller = Caller(principal=principal, ip=ip, request_id=request_id)
    audit.record(session, caller, "pair", "device", auth.id, patient.id)
    return _grant(session, secrets, auth, refresh_token=refresh)


def _claim_once(
    session: Session, table: type[AccessCode] | type[RefreshToken], row_id: uuid.UUID, now: datetime
) -> bool:
    result = session.execute(
        update(table)
        .where(col(table.id) == row_id, col(table.used_at).is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def refresh(
    session: Session, secrets: Secrets, token: str, lifetime: timedelta
) -> tuple[TokenResponse | None, bool]:
    """Rotate a refresh token. Returns the new tokens, or (None, reuse_detected).

    A refresh token presented twice means it leaked: the whole device session is revoked
    (that revocation must commit even though the request fails).
    """
    now = utcnow()
    found = session.exec(
        select(RefreshToken).where(RefreshToken.token_hash == secrets.digest(token))
    ).first()
    if found is None:
        return None, False
    auth = session.get(AuthSession, found.session_id)
    if auth is None or auth.revoked_at is not None or auth.expires_at <= now:
        return None, False
    if found.expires_at <= now or not _claim_once(session, RefreshToken, found.id, now):
        auth.revoked_at = now
        session.add(auth)
        return None, True
    patient = session.get(Patient, auth.patient_id)
    if patient is None or patient.deleted_at is not None:
        return None, False
    auth.expires_at = now + lifetime
    session.add(auth)
    new_token = _new_refresh_token(session, secrets, auth, lifetime)
    return _grant(session, secrets, auth, refresh_token=new_token), False


def revoke(session: Session, secrets: Secrets, token: str) -> None:
    """End the session behind an access or refresh token; unknown tokens are ignored."""
    claims = secrets.read_access_token(token)
    session_id: uuid.UUID | None = None
    if claims is not None:
        try:
            session_id = uuid.UUID(claims["sid"])
        except (ValueError, TypeError):
            session_id = None
    else:
        found = session.exec(
            select(RefreshToken).where(RefreshToken.token_hash == secrets.digest(token))
        ).first()
        session_id = found.session_id if found else None
    if session_id is not None:
        end_sessions(session, [session_id])


def end_sessions(session: Session, session_ids: list[uuid.UUID]) -> None:
    session.execute(
        update(AuthSession)
        .where(col(AuthSession.id).in_(session_ids), col(AuthSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
