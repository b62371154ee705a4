"""Every table, imported in one place so Alembic and the app see the same metadata."""

from sqlmodel import SQLModel

from app.adherence.models import AdherenceRecord, AdherenceRecordVersion
from app.audit.models import AuditEvent
from app.auth.models import AccessCode, ApiClient, AuthSession, Clinic, Clinician, RefreshToken
from app.core.idempotency import IdempotentRequest
from app.exercises.models import Exercise
from app.fhir.models import FhirExportChunk, FhirExportFile, FhirExportJob
from app.patients.models import Patient
from app.plans.models import Plan, PlanTemplate, PlanVersion
from app.sync.models import Change, ChangeHorizon
from app.webhooks.models import (
    AdherenceAlertState,
    AlertCursor,
    WebhookDelivery,
    WebhookEndpoint,
)

metadata = SQLModel.metadata

__all__ = [
    "AccessCode",
    "AdherenceAlertState",
    "AdherenceRecord",
    "AdherenceRecordVersion",
    "AlertCursor",
    "ApiClient",
    "AuditEvent",
    "AuthSession",
    "Change",
    "ChangeHorizon",
    "Clinic",
    "Clinician",
    "Exercise",
    "FhirExportChunk",
    "FhirExportFile",
    "FhirExportJob",
    "IdempotentRequest",
    "Patient",
    "Plan",
    "PlanTemplate",
    "PlanVersion",
    "RefreshToken",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
