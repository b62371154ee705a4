"""Who is calling: the principal behind a verified access token, and what it may do."""

import uuid
from dataclasses import dataclass
from enum import StrEnum

from app.auth.models import ActorKind, Role


class Scope(StrEnum):
    """What an access token allows. Clinicians hold every clinic scope; API clients the ones
    granted to them; patients only `exercises:read` plus their own data under `/v1/me`."""

    exercises_read = "exercises:read"
    exercises_write = "exercises:write"
    patients_read = "patients:read"
    patients_write = "patients:write"
    plans_read = "plans:read"
    plans_write = "plans:write"
    adherence_read = "adherence:read"
    adherence_write = "adherence:write"
    changes_read = "changes:read"
    webhooks_write = "webhooks:write"


CLINICIAN_SCOPES = frozenset(Scope)
PATIENT_SCOPES = frozenset({Scope.exercises_read})


@dataclass(frozen=True, slots=True)
class Principal:
    kind: ActorKind
    id: uuid.UUID
    clinic_id: uuid.UUID
    session_id: uuid.UUID
    scopes: frozenset[str]
    role: Role | None = None
    patient_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """A signed-in principal with where the request came from, for the audit trail."""

    principal: Principal
    ip: str | None
    request_id: str | None

    @property
    def clinic_id(self) -> uuid.UUID:
        return self.principal.clinic_id
