"""Patients within the caller's clinic, their access codes and paired devices.

Every function here reads or writes patient data, so every one records an audit event in
the same transaction; every write records its change for clinic sync there too.
"""

import uuid
from datetime import timedelta

from sqlalchemy import tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth import service as auth_service
from app.auth.models import AccessCode, AuthSession
from app.auth.principal import Caller
from app.auth.security import Secrets, new_access_code
from app.core.columns import utcnow
from app.core.db import flush_or
from app.core.errors import Conflict, NotFound
from app.core.http import check_if_match
from app.core.pagination import PageQuery, split_page, time_key, time_position
from app.patients.models import Patient
from app.patients.schemas import (
    AccessCodePublic,
    PatientCreate,
    PatientPublic,
    PatientQuery,
    PatientUpdate,
)
from app.sync.outbox import record_change


def public(patient: Patient) -> PatientPublic:
    """The patient as `GET /v1/patients/{id}` renders it."""
    return PatientPublic.model_validate(patient)


async def _changed(session: AsyncSession, patient: Patient, operation: str) -> None:
    data = None if operation == "delete" else public(patient).model_dump(mode="json")
    await record_change(
        session,
        patient.clinic_id,
        "patient",
        patient.id,
        operation,
        version=patient.version,
        data=data,
    )


def etag(patient: Patient) -> str:
    return f'"{patient.id}-{patient.version}"'


async def load(session: AsyncSession, caller: Caller, patient_id: uuid.UUID) -> Patient:
    """The clinic's patient, or 404: another clinic's id looks exactly like a missing one."""
    patient = (
        await session.exec(
            select(Patient).where(
                Patient.id == patient_id,
                Patient.clinic_id == caller.clinic_id,
                col(Patient.deleted_at).is_(None),
            )
        )
    ).first()
    if patient is None:
        raise NotFound(f"No patient {patient_id}.")
    return patient


async def create(session: AsyncSession, caller: Caller, data: PatientCreate) -> Patient:
    patient = Patient(clinic_id=caller.clinic_id, **data.model_dump())
    session.add(patient)
    await _flush_unique(session, data.reference)
    await _changed(session, patient, "create")
    await audit.record(session, caller, "create", "patient", patient.id, patient.id)
    return patient


async def _flush_unique(session: AsyncSession, reference: str) -> None:
    await flush_or(
        session, Conflict(f"The clinic already has a patient with reference {reference!r}.")
    )


async def list_page(
    session: AsyncSession, caller: Caller, query: PatientQuery
) -> tuple[list[Patient], str | None]:
    statement = select(Patient).where(
        Patient.clinic_id == caller.clinic_id, col(Patient.deleted_at).is_(None)
    )
    if query.reference is not None:
        statement = statement.where(Patient.reference == query.reference)
    if query.cursor is not None:
        position = time_position(query.cursor)
        statement = statement.where(tuple_(col(Patient.created_at), col(Patient.id)) > position)
    statement = statement.order_by(col(Patient.created_at), col(Patient.id))
    found = await session.exec(statement.limit(query.limit + 1))
    rows, cursor = split_page(list(found.all()), query.limit, time_key)
    # One event per patient shown, so "who saw patient X" finds lists too.
    await audit.record_many(session, caller, "list", "patient", [(row.id, row.id) for row in rows])
    return rows, cursor


async def read(session: AsyncSession, caller: Caller, patient_id: uuid.UUID) -> Patient:
    patient = await load(session, caller, patient_id)
    await audit.record(session, caller, "read", "patient", patient.id, patient.id)
    return patient


async def update(
    session: AsyncSession,
    caller: Caller,
    patient_id: uuid.UUID,
    data: PatientUpdate,
    if_match: str | None,
) -> Patient:
    patient = await load(session, caller, patient_id)
    check_if_match(if_match, etag(patient), "patient", required=False)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if changes:
        for field, value in changes.items():
            setattr(patient, field, value)
        patient.version += 1
        patient.updated_at = utcnow()
        session.add(patient)
        await _flush_unique(session, patient.reference)
        await _changed(session, patient, "update")
    await audit.record(session, caller, "update", "patient", patient.id, patient.id)
    return patient


async def delete(
    session: AsyncSession, caller: Caller, patient_id: uuid.UUID, if_match: str | None
) -> None:
    """Soft delete: the record stays for the audit trail; the patient's apps sign out and
    the codes not yet used stop pairing (token checks do not read the patient table)."""
    patient = await load(session, caller, patient_id)
    check_if_match(if_match, etag(patient), "patient", required=False)
    patient.deleted_at = utcnow()
    session.add(patient)
    await auth_service.revoke_patient(session, caller.clinic_id, patient.id)
    await _changed(session, patient, "delete")
    await audit.record(session, caller, "delete", "patient", patient.id, patient.id)


async def issue_access_code(
    session: AsyncSession, caller: Caller, secrets: Secrets, patient_id: uuid.UUID, ttl: timedelta
) -> AccessCodePublic:
    patient = await load(session, caller, patient_id)
    code = new_access_code()
    expires_at = utcnow() + ttl
    row = AccessCode(
        clinic_id=caller.clinic_id,
        patient_id=patient.id,
        code_hash=secrets.digest(code),
        created_by=caller.principal.id,
        expires_at=expires_at,
    )
    session.add(row)
    await audit.record(session, caller, "create", "access_code", row.id, patient.id)
    return AccessCodePublic(code=code, expires_at=expires_at)


async def list_devices(
    session: AsyncSession, caller: Caller, patient_id: uuid.UUID, query: PageQuery
) -> tuple[list[AuthSession], str | None]:
    """A page of the patient's paired apps (sign-in sessions), oldest first."""
    patient = await load(session, caller, patient_id)
    await audit.record(session, caller, "list", "device", None, patient.id)
    statement = select(AuthSession).where(AuthSession.patient_id == patient.id)
    if query.cursor is not None:
        position = time_position(query.cursor)
        statement = statement.where(
            tuple_(col(AuthSession.created_at), col(AuthSession.id)) > position
        )
    statement = statement.order_by(col(AuthSession.created_at), col(AuthSession.id))
    devices = await session.exec(statement.limit(query.limit + 1))
    return split_page(list(devices.all()), query.limit, time_key)


async def revoke_device(
    session: AsyncSession, caller: Caller, patient_id: uuid.UUID, device_id: uuid.UUID
) -> None:
    patient = await load(session, caller, patient_id)
    device = (
        await session.exec(
            select(AuthSession).where(
                AuthSession.id == device_id, AuthSession.patient_id == patient.id
            )
        )
    ).first()
    if device is None:
        raise NotFound(f"No device {device_id} for this patient.")
    await auth_service.end_sessions(session, [device.id])
    await audit.record(session, caller, "revoke", "device", device.id, patient.id)
