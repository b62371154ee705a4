"""Patients within the caller's clinic, their access codes and paired devices.

Every function here reads or writes patient data, so every one records an audit event in
the same transaction.
"""

import uuid
from datetime import timedelta

from sqlalchemy import tuple_
from sqlmodel import Session, col, select

from app.adherence import overview as rollups
from app.audit import service as audit
from app.auth.models import AccessCode, AuthSession
from app.auth.principal import Caller
from app.auth.security import Secrets, new_access_code
from app.auth.service import end_sessions
from app.core.columns import utcnow
from app.core.db import flush_or
from app.core.errors import Conflict, NotFound, PreconditionFailed
from app.core.http import etag_matches_strongly
from app.core.pagination import split_page, time_key, time_position
from app.patients.models import Patient
from app.patients.schemas import (
    AccessCodePublic,
    PatientCreate,
    PatientQuery,
    PatientUpdate,
)


def etag(patient: Patient) -> str:
    return f'"{patient.id}-{patient.version}"'


def load(session: Session, caller: Caller, patient_id: uuid.UUID) -> Patient:
    """The clinic's patient, or 404: another clinic's id looks exactly like a missing one."""
    patient = session.exec(
        select(Patient).where(
            Patient.id == patient_id,
            Patient.clinic_id == caller.clinic_id,
            col(Patient.deleted_at).is_(None),
        )
    ).first()
    if patient is None:
        raise NotFound(f"No patient {patient_id}.")
    return patient


def create(session: Session, caller: Caller, data: PatientCreate) -> Patient:
    patient = Patient(clinic_id=caller.clinic_id, **data.model_dump())
    session.add(patient)
    _flush_unique(session, data.reference)
    rollups.create(session, patient)
    audit.record(session, caller, "create", "patient", patient.id, patient.id)
    return patient


def _flush_unique(session: Session, reference: str) -> None:
    flush_or(session, Conflict(f"The clinic already has a patient with reference {reference!r}."))


def list_page(
    session: Session, caller: Caller, query: PatientQuery
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
    rows, cursor = split_page(
        list(session.exec(statement.limit(query.limit + 1)).all()), query.limit, time_key
    )
    # One event per patient shown, so "who saw patient X" finds lists too.
    audit.record_many(session, caller, "list", "patient", [(row.id, row.id) for row in rows])
    return rows, cursor


def read(session: Session, caller: Caller, patient_id: uuid.UUID) -> Patient:
    patient = load(session, caller, patient_id)
    audit.record(session, caller, "read", "patient", patient.id, patient.id)
    return patient


def update(
    session: Session,
    caller: Caller,
    patient_id: uuid.UUID,
    data: PatientUpdate,
    if_match: str | None,
) -> Patient:
    patient = load(session, caller, patient_id)
    if if_match is not None and not etag_matches_strongly(if_match, etag(patient)):
        raise PreconditionFailed("The patient changed since you read it; read it again.")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if changes:
        for field, value in changes.items():
            setattr(patient, field, value)
        patient.version += 1
        patient.updated_at = utcnow()
        session.add(patient)
        _flush_unique(session, patient.reference)
        if "time_zone" in changes:  # local dates move: the overview's windows too
            rollups.mark_stale(session, patient_ids=[patient.id])
    audit.record(session, caller, "update", "patient", patient.id, patient.id)
    return patient


def delete(session: Session, caller: Caller, patient_id: uuid.UUID) -> None:
    """Soft delete: the record stays for the audit trail; the patient's apps sign out."""
    patient = load(session, caller, patient_id)
    patient.deleted_at = utcnow()
    session.add(patient)
    sessions = session.exec(
        select(AuthSession.id).where(AuthSession.patient_id == patient.id)
    ).all()
    end_sessions(session, list(sessions))
    audit.record(session, caller, "delete", "patient", patient.id, patient.id)


def issue_access_code(
    session: Session, caller: Caller, secrets: Secrets, patient_id: uuid.UUID, ttl: timedelta
) -> AccessCodePublic:
    patient = load(session, caller, patient_id)
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
    audit.record(session, caller, "create", "access_code", row.id, patient.id)
    return AccessCodePublic(code=code, expires_at=expires_at)


def list_devices(session: Session, caller: Caller, patient_id: uuid.UUID) -> list[AuthSession]:
    patient = load(session, caller, patient_id)
    audit.record(session, caller, "list", "device", None, patient.id)
    return list(
        session.exec(
            select(AuthSession)
            .where(AuthSession.patient_id == patient.id)
            .order_by(col(AuthSession.created_at))
        ).all()
    )


def revoke_device(
    session: Session, caller: Caller, patient_id: uuid.UUID, device_id: uuid.UUID
) -> None:
    patient = load(session, caller, patient_id)
    device = session.exec(
        select(AuthSession).where(AuthSession.id == device_id, AuthSession.patient_id == patient.id)
    ).first()
    if device is None:
        raise NotFound(f"No device {device_id} for this patient.")
    end_sessions(session, [device.id])
    audit.record(session, caller, "revoke", "device", device.id, patient.id)
