"""Every table, imported in one place so Alembic and the app see the same metadata."""

from sqlmodel import SQLModel

from app.audit.models import AuditEvent
from app.auth.models import AccessCode, ApiClient, AuthSession, Clinic, Clinician, RefreshToken
from app.exercises.models import Exercise
from app.patients.models import Patient

metadata = SQLModel.metadata

__all__ = [
    "AccessCode",
    "ApiClient",
    "AuditEvent",
    "AuthSession",
    "Clinic",
    "Clinician",
    "Exercise",
    "Patient",
    "RefreshToken",
    "metadata",
]
