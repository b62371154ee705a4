"""Development only: a demo clinic with an admin, a clinician and a patient to pair."""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from app.auth import accounts
from app.auth.models import AccessCode, Clinic, Clinician, Role
from app.auth.security import Secrets, new_access_code
from app.core.columns import utcnow
from app.core.db import transaction
from app.patients.models import Patient

DEMO_CLINIC = "Dorsi Demo Clinic"
ADMIN_EMAIL = "admin@demo.dorsi.test"
CLINICIAN_EMAIL = "clinician@demo.dorsi.test"
DEMO_PASSWORD = "demo-password"
PATIENT_REFERENCE = "DEMO-0001"


@dataclass(frozen=True)
class Demo:
    clinic_id: str
    patient_id: str
    access_code: str


async def ensure_demo(engine: AsyncEngine, secrets: Secrets, code_ttl: timedelta) -> Demo:
    """Creates the demo clinic once; every call issues a fresh access code."""
    async with transaction(engine) as session:
        clinic = (await session.exec(select(Clinic).where(Clinic.name == DEMO_CLINIC))).first()
        if clinic is None:
            clinic = await accounts.create_clinic(session, DEMO_CLINIC)
        for email, role in ((ADMIN_EMAIL, Role.admin), (CLINICIAN_EMAIL, Role.clinician)):
            found = (await session.exec(select(Clinician).where(Clinician.email == email))).first()
            if found is None:
                await accounts.create_clinician(
                    session, secrets, clinic.id, email, DEMO_PASSWORD, role
                )
        patient = (
            await session.exec(
                select(Patient).where(
                    Patient.clinic_id == clinic.id, Patient.reference == PATIENT_REFERENCE
                )
            )
        ).first()
        if patient is None:
            patient = Patient(
                clinic_id=clinic.id,
                reference=PATIENT_REFERENCE,
                affected_side="left",
                cause="stroke",
                time_zone="Europe/Lisbon",
            )
            session.add(patient)
            await session.flush()
        elif patient.deleted_at is not None:
            # Someone deleted the demo patient while trying the API: bring it back. (Its
            # apps were signed out and its codes voided then; the code below is new.)
            patient.deleted_at = None
            session.add(patient)
        code = new_access_code()
        session.add(
            AccessCode(
                clinic_id=clinic.id,
                patient_id=patient.id,
                code_hash=secrets.digest(code),
                expires_at=utcnow() + code_ttl,
            )
        )
        return Demo(clinic_id=str(clinic.id), patient_id=str(patient.id), access_code=code)


def instructions(demo: Demo, base_url: str) -> str:
    return f"""
Dorsi is in development mode, with a demo clinic ({demo.clinic_id}).
Try every role from {base_url}/docs:
  * Clinic admin:  Authorize (OAuth2, password flow) as {ADMIN_EMAIL} / {DEMO_PASSWORD}
  * Clinician:     {CLINICIAN_EMAIL} / {DEMO_PASSWORD}
  * Patient app:   POST /v1/auth/pair with {{"code": "{demo.access_code}"}}, then Authorize
                   (PatientToken) with the access_token it answers
  * Clinic system: dorsi create-client --clinic-id {demo.clinic_id} --name EHR \\
                     --scope patients:read --scope adherence:read
                   then Authorize (OAuth2, client credentials) with the id and secret
"""
