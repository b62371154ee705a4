"""The caller's clinic, its settings, and the clinicians and API clients its admins manage.

Every query is scoped to the caller's clinic: another clinic's id answers 404.
"""

import uuid
from typing import Any

from sqlalchemy import tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth import accounts
from app.auth.models import ApiClient, Clinic, Clinician, Role
from app.auth.principal import Caller
from app.auth.security import Secrets
from app.clinics.schemas import (
    ApiClientCreate,
    ApiClientUpdate,
    ClinicianCreate,
    ClinicianUpdate,
    ClinicPublic,
    ClinicUpdate,
)
from app.core.errors import Conflict, NotFound
from app.core.pagination import PageQuery, split_page, time_key, time_position
from app.sync.outbox import record_change

# ------------------------------------------------------------------------ clinic settings


async def read_clinic(session: AsyncSession, caller: Caller) -> Clinic:
    return await session.get_one(Clinic, caller.clinic_id)


async def update_clinic(session: AsyncSession, caller: Caller, data: ClinicUpdate) -> Clinic:
    """The adherence overview reads the thresholds at its next request; nothing here has
    to tell it (the tenancy layer knows no adherence)."""
    clinic = await session.get_one(Clinic, caller.clinic_id)
    given = data.model_dump(exclude_unset=True, exclude_none=True)
    changed = {name: value for name, value in given.items() if getattr(clinic, name) != value}
    before = {name: getattr(clinic, name) for name in changed}
    for name, value in changed.items():
        setattr(clinic, name, value)
    session.add(clinic)
    await session.flush()
    if changed:
        # Settings have no version of their own: the change carries them as they now are.
        rendered = ClinicPublic.model_validate(clinic).model_dump(mode="json")
        await record_change(session, clinic.id, "clinic", clinic.id, "update", data=rendered)
    await audit.record(
        session,
        caller,
        "update",
        "clinic",
        clinic.id,
        changes=audit.changes_between(before, changed),
    )
    return clinic


# ----------------------------------------------------------------------------- clinicians


async def load_clinician(
    session: AsyncSession, caller: Caller, clinician_id: uuid.UUID
) -> Clinician:
    clinician = (
        await session.exec(
            select(Clinician).where(
                Clinician.id == clinician_id, Clinician.clinic_id == caller.clinic_id
            )
        )
    ).first()
    if clinician is None:
        raise NotFound(f"No clinician {clinician_id}.")
    return clinician


async def list_clinicians(
    session: AsyncSession, caller: Caller, query: PageQuery
) -> tuple[list[Clinician], str | None]:
    """A page of the clinic's clinicians, oldest first."""
    statement = select(Clinician).where(Clinician.clinic_id == caller.clinic_id)
    if query.cursor is not None:
        position = time_position(query.cursor)
        statement = statement.where(tuple_(col(Clinician.created_at), col(Clinician.id)) > position)
    statement = statement.order_by(col(Clinician.created_at), col(Clinician.id))
    found = await session.exec(statement.limit(query.limit + 1))
    return split_page(list(found.all()), query.limit, time_key)


def _clinician_fields(clinician: Clinician) -> dict[str, Any]:
    """What the admin trail shows of a clinician (never the password hash)."""
    return {"email": clinician.email, "role": clinician.role, "active": clinician.active}


async def create_clinician(
    session: AsyncSession, secrets: Secrets, caller: Caller, data: ClinicianCreate
) -> Clinician:
    clinician = await accounts.create_clinician(
        session, secrets, caller.clinic_id, data.email, data.password, data.role
    )
    made = audit.changes_between({}, _clinician_fields(clinician))
    await audit.record(session, caller, "create", "clinician", clinician.id, changes=made)
    return clinician


async def update_clinician(
    session: AsyncSession, caller: Caller, clinician_id: uuid.UUID, data: ClinicianUpdate
) -> Clinician:
    """A deactivated clinician's tokens fail on their next request (the session check
    reads `active`). An admin cannot demote or deactivate themselves, so a clinic always
    keeps one."""
    clinician = await load_clinician(session, caller, clinician_id)
    if clinician.id == caller.principal.id and (
        data.active is False or data.role == Role.clinician
    ):
        raise Conflict("Admins cannot demote or deactivate themselves.")
    before = _clinician_fields(clinician)
    if data.role is not None:
        clinician.role = data.role
    if data.active is not None:
        clinician.active = data.active
    session.add(clinician)
    await session.flush()
    changes = audit.changes_between(before, _clinician_fields(clinician))
    await audit.record(session, caller, "update", "clinician", clinician.id, changes=changes)
    return clinician


# ---------------------------------------------------------------------------- API clients


async def list_api_clients(
    session: AsyncSession, caller: Caller, query: PageQuery
) -> tuple[list[ApiClient], str | None]:
    """A page of the clinic's API clients that are not revoked, oldest first."""
    statement = select(ApiClient).where(
        ApiClient.clinic_id == caller.clinic_id, col(ApiClient.revoked_at).is_(None)
    )
    if query.cursor is not None:
        position = time_position(query.cursor)
        statement = statement.where(tuple_(col(ApiClient.created_at), col(ApiClient.id)) > position)
    statement = statement.order_by(col(ApiClient.created_at), col(ApiClient.id))
    found = await session.exec(statement.limit(query.limit + 1))
    return split_page(list(found.all()), query.limit, time_key)


def _client_fields(client: ApiClient) -> dict[str, Any]:
    """What the admin trail shows of an API client (never its secret's hash)."""
    return {"name": client.name, "scopes": list(client.scopes)}


async def create_api_client(
    session: AsyncSession, secrets: Secrets, caller: Caller, data: ApiClientCreate
) -> tuple[ApiClient, str]:
    """The new client and its secret, shown this once (and never to the audit trail)."""
    client, secret = await accounts.create_api_client(
        session, secrets, caller.clinic_id, data.name, data.scopes
    )
    made = audit.changes_between({}, _client_fields(client))
    await audit.record(session, caller, "create", "api_client", client.id, changes=made)
    return client, secret


async def update_api_client(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: ApiClientUpdate
) -> ApiClient:
    """Renames it or changes its scopes; its secret stays as it is. New scopes sign its
    current tokens out."""
    client = await accounts.load_api_client(session, caller.clinic_id, client_id)
    before = _client_fields(client)
    if data.name is not None:
        client.name = data.name
    if data.scopes is not None and sorted(set(data.scopes)) != client.scopes:
        client.scopes = sorted(set(data.scopes))
        await accounts.end_client_sessions(session, client.id)
    session.add(client)
    await session.flush()
    changes = audit.changes_between(before, _client_fields(client))
    await audit.record(session, caller, "update", "api_client", client.id, changes=changes)
    return client


async def revoke_api_client(session: AsyncSession, caller: Caller, client_id: uuid.UUID) -> None:
    """Its tokens fail on their next request."""
    await accounts.revoke_api_client(session, caller.clinic_id, client_id)
    await audit.record(session, caller, "delete", "api_client", client_id)
