"""Sign-in: password and client-credentials grants, pairing, refresh rotation, revocation."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from anyio import to_thread
from sqlalchemy import delete, exists, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth.models import (
    AccessCode,
    ActorKind,
    ApiClient,
    AuthSession,
    Clinician,
    RefreshToken,
)
from app.auth.oauth import InvalidBasicClient, InvalidClient, InvalidGrant, InvalidScope
from app.auth.principal import CLINICIAN_SCOPES, PATIENT_SCOPES, Caller, Principal
from app.auth.schemas import TokenResponse
from app.auth.security import Secrets, new_opaque_token, normalize_access_code
from app.core.columns import utcnow
from app.core.db import execute, table_of
from app.core.errors import Unauthorized

INVALID_CREDENTIALS = "The credentials are not valid."


def _grant(
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
        raise InvalidScope(
            f"Scopes not granted to this caller: {' '.join(sorted(wanted - allowed))}."
        )
    return sorted(wanted)


async def _verified(secrets: Secrets, stored_hash: str | None, password: str) -> bool:
    """Argon2 is CPU work by design: it runs on a worker thread, not on the event loop."""
    return await to_thread.run_sync(secrets.verify_password, stored_hash, password)


async def password_grant(
    session: AsyncSession, secrets: Secrets, email: str, password: str, scope: str | None
) -> TokenResponse:
    clinician = (
        await session.exec(select(Clinician).where(Clinician.email == email.strip().lower()))
    ).first()
    valid = await _verified(secrets, clinician.password_hash if clinician else None, password)
    if clinician is None or not valid or not clinician.active:
        raise InvalidGrant(INVALID_CREDENTIALS)
    auth = AuthSession(
        clinic_id=clinician.clinic_id,
        actor_kind=ActorKind.clinician,
        clinician_id=clinician.id,
        scopes=_requested(scope, CLINICIAN_SCOPES),
        expires_at=utcnow() + secrets.access_ttl,
    )
    session.add(auth)
    await session.flush()
    return _grant(secrets, auth, role=clinician.role)


async def client_credentials_grant(
    session: AsyncSession,
    secrets: Secrets,
    client_id: str,
    client_secret: str,
    scope: str | None,
    *,
    basic: bool = False,
) -> TokenResponse:
    """``basic``: the client authenticated with HTTP Basic, so a wrong one is a 401."""
    try:
        client = await session.get(ApiClient, uuid.UUID(client_id))
    except ValueError:
        client = None
    valid = await _verified(secrets, client.secret_hash if client else None, client_secret)
    if client is None or not valid or client.revoked_at is not None:
        raise (InvalidBasicClient if basic else InvalidClient)(INVALID_CREDENTIALS)
    auth = AuthSession(
        clinic_id=client.clinic_id,
        actor_kind=ActorKind.api_client,
        api_client_id=client.id,
        scopes=_requested(scope, frozenset(client.scopes)),
        expires_at=utcnow() + secrets.access_ttl,
    )
    session.add(auth)
    await session.flush()
    return _grant(secrets, auth)


def _new_refresh_token(
    session: AsyncSession, secrets: Secrets, auth: AuthSession, lifetime: timedelta
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


def _device_caller(
    auth: AuthSession, patient_id: uuid.UUID, ip: str | None, request_id: str | None
) -> Caller:
    """A patient's device session, as the audit trail names whoever acts with it."""
    principal = Principal(
        kind=ActorKind.patient,
        id=patient_id,
        clinic_id=auth.clinic_id,
        session_id=auth.id,
        scopes=frozenset(auth.scopes),
        patient_id=patient_id,
    )
    return Caller(principal=principal, ip=ip, request_id=request_id)


async def pair(
    session: AsyncSession,
    secrets: Secrets,
    code: str,
    device_name: str | None,
    lifetime: timedelta,
    ip: str | None,
    request_id: str | None,
) -> TokenResponse:
    """Trade a single-use access code for a device session and its first tokens.

    The code names its patient and clinic. A deleted patient's unused codes were voided
    with it (`revoke_patient`), so a code that can still be claimed is a live patient's.
    """
    now = utcnow()
    found = (
        await session.exec(
            select(AccessCode).where(
                AccessCode.code_hash == secrets.digest(normalize_access_code(code))
            )
        )
    ).first()
    # The conditional update makes the code single-use even when two apps race for it.
    claimed = found is not None and await _claim_once(session, AccessCode, found.id, now)
    if not claimed or found is None or found.expires_at <= now:
        raise Unauthorized("The access code is not valid: wrong, used, or expired.")
    auth = AuthSession(
        clinic_id=found.clinic_id,
        actor_kind=ActorKind.patient,
        patient_id=found.patient_id,
        device_name=device_name,
        scopes=sorted(PATIENT_SCOPES),
        expires_at=now + lifetime,
    )
    session.add(auth)
    await session.flush()
    refresh = _new_refresh_token(session, secrets, auth, lifetime)
    caller = _device_caller(auth, found.patient_id, ip, request_id)
    await audit.record(session, caller, "pair", "device", auth.id, found.patient_id)
    return _grant(secrets, auth, refresh_token=refresh)


async def _claim_once(
    session: AsyncSession, table: type[AccessCode], row_id: uuid.UUID, now: datetime
) -> bool:
    result = await session.exec(
        update(table)
        .where(col(table.id) == row_id, col(table.used_at).is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# How far a replay inside the window follows the rotations made since (an app that used
# the successor too): far more than one app makes in a window, given the refresh limit.
SUCCESSORS_FOLLOWED = 8


async def refresh(
    session: AsyncSession,
    secrets: Secrets,
    token: str,
    *,
    lifetime: timedelta,
    reuse_window: timedelta,
    ip: str | None,
    request_id: str | None,
) -> tuple[TokenResponse | None, bool]:
    """Rotate a refresh token. Returns the new tokens, or (None, reuse_detected).

    The first use marks the token used and issues its successor. The same token presented
    again within ``reuse_window`` of that use (an app refreshing from two calls at once,
    or retrying a refresh whose answer it lost) answers the same successor with a new
    access token, and changes nothing. Presented later, the token has leaked: the whole
    device session is revoked and the audit trail records a suspected theft (both must
    commit even though the request fails). A deleted patient's sessions are revoked
    already (`revoke_patient`).

    The token's row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's transactions
    take its write lock as they begin), so concurrent refreshes with one token queue: one
    rotates it, and the others then see it used a moment ago.
    """
    now = utcnow()
    found = (
        await session.exec(
            select(RefreshToken)
            .where(RefreshToken.token_hash == secrets.digest(token))
            .with_for_update()
        )
    ).first()
    if found is None:
        return None, False
    auth = await session.get(AuthSession, found.session_id)
    if (
        auth is None
        or auth.patient_id is None
        or auth.revoked_at is not None
        or auth.expires_at <= now
    ):
        return None, False
    if found.used_at is None:
        if found.expires_at <= now:
            return None, False
        found.used_at = now
        auth.expires_at = now + lifetime
        session.add_all([found, auth])
        successor = secrets.successor_token(token)
        session.add(
            RefreshToken(
                session_id=auth.id,
                token_hash=secrets.digest(successor),
                expires_at=now + lifetime,
            )
        )
        return _grant(secrets, auth, refresh_token=successor), False
    if now - found.used_at < reuse_window:
        current = await _current_successor(session, secrets, token)
        if current is None:
            return None, False
        return _grant(secrets, auth, refresh_token=current), False
    auth.revoked_at = now
    session.add(auth)
    caller = _device_caller(auth, auth.patient_id, ip, request_id)
    await audit.record(session, caller, "suspected_theft", "device", auth.id, auth.patient_id)
    return None, True


async def _current_successor(session: AsyncSession, secrets: Secrets, token: str) -> str | None:
    """The refresh token that stands for the used ``token`` now: its successor, or, if
    the app has used that one as well, the successor's, and so on; never one that the
    app has already spent when a newer one exists. None if ``token`` has no successor
    (it was rotated before successors were derived)."""
    chain: list[str] = []
    for _ in range(SUCCESSORS_FOLLOWED):
        chain.append(secrets.successor_token(chain[-1] if chain else token))
    digests = {secrets.digest(successor): successor for successor in chain}
    rows = await execute(
        session,
        select(RefreshToken.token_hash, RefreshToken.used_at).where(
            col(RefreshToken.token_hash).in_(digests)
        ),
    )
    used = {digests[row.token_hash]: row.used_at is not None for row in rows}
    current: str | None = None
    for successor in chain:
        if successor not in used:
            break
        current = successor
        if not used[successor]:
            break
    return current


async def revoke(
    session: AsyncSession,
    secrets: Secrets,
    token: str,
    ip: str | None = None,
    request_id: str | None = None,
) -> None:
    """End the session behind an access or refresh token; unknown tokens are ignored. The
    audit trail records the sign-out of a live session, as done by the session's holder
    (whoever presents its token holds it)."""
    claims = secrets.read_access_token(token)
    session_id: uuid.UUID | None = None
    if claims is not None:
        try:
            session_id = uuid.UUID(claims["sid"])
        except (ValueError, TypeError):
            session_id = None
    else:
        found = (
            await session.exec(
                select(RefreshToken).where(RefreshToken.token_hash == secrets.digest(token))
            )
        ).first()
        session_id = found.session_id if found else None
    if session_id is None:
        return
    auth = await session.get(AuthSession, session_id)
    if auth is None or auth.revoked_at is not None:
        return
    await end_sessions(session, [session_id])
    caller = _session_caller(auth, ip, request_id)
    device = auth.actor_kind == ActorKind.patient
    await audit.record(
        session, caller, "revoke", "device" if device else "session", auth.id, auth.patient_id
    )


def _session_caller(auth: AuthSession, ip: str | None, request_id: str | None) -> Caller:
    """Whoever signed in with a session, as the audit trail names them."""
    actor = auth.clinician_id or auth.patient_id or auth.api_client_id
    assert actor is not None
    principal = Principal(
        kind=ActorKind(auth.actor_kind),
        id=actor,
        clinic_id=auth.clinic_id,
        session_id=auth.id,
        scopes=frozenset(auth.scopes),
        patient_id=auth.patient_id,
    )
    return Caller(principal=principal, ip=ip, request_id=request_id)


async def end_sessions(session: AsyncSession, session_ids: list[uuid.UUID]) -> None:
    await session.exec(
        update(AuthSession)
        .where(col(AuthSession.id).in_(session_ids), col(AuthSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def revoke_patient(
    session: AsyncSession, clinic_id: uuid.UUID, patient_id: uuid.UUID
) -> None:
    """Sign out every app of a patient who is being deleted, and void the access codes
    not used yet, so that the patient's tokens fail on their next request and no app can
    pair any more.

    The codes go first. On PostgreSQL that update waits for a pairing that has claimed
    one of them to commit; the sessions update, a statement later, then sees (and ends)
    the session that pairing made.
    """
    now = utcnow()
    await session.exec(
        update(AccessCode)
        .where(
            col(AccessCode.clinic_id) == clinic_id,
            col(AccessCode.patient_id) == patient_id,
            col(AccessCode.used_at).is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.exec(
        update(AuthSession)
        .where(
            col(AuthSession.clinic_id) == clinic_id,
            col(AuthSession.patient_id) == patient_id,
            col(AuthSession.revoked_at).is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


# Expired sign-in state is kept this long after it ends, then deleted by the worker: long
# enough for a late refresh to be told why it fails, short enough to keep tables small.
EXPIRED_KEPT_FOR = timedelta(days=7)


async def prune_expired(session: AsyncSession, now: datetime) -> int:
    """Delete refresh tokens, access codes and sessions that ended `EXPIRED_KEPT_FOR` ago
    (a session only once none of its refresh tokens is left); how many rows went."""
    cutoff = now - EXPIRED_KEPT_FOR
    tokens, codes, sessions = (
        table_of(RefreshToken),
        table_of(AccessCode),
        table_of(AuthSession),
    )
    deleted = 0
    for statement in (
        delete(tokens).where(tokens.c.expires_at < cutoff),
        delete(codes).where(codes.c.expires_at < cutoff),
        delete(sessions).where(
            sessions.c.expires_at < cutoff,
            ~exists().where(tokens.c.session_id == sessions.c.id),
        ),
    ):
        result: Any = await execute(session, statement)
        deleted += int(result.rowcount)
    return deleted
