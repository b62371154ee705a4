"""The code systems, codes and URLs the FHIR facade speaks, each named once.

Only published codes are used: SNOMED CT 229065009 (exercise therapy), LOINC 72514-3 (pain
severity, 0-10 numeric rating), SNOMED CT laterality qualifiers from FHIR R4's
`bodysite-laterality` value set, FHIR's own code systems. What no published code says
(a skip reason, a dose, an assistive device named by the patient) is sent as text or in
Dorsi's own code systems and extensions under `DORSI`, never as an invented code.
"""

from typing import Any

FHIR_VERSION = "4.0.1"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

# Dorsi's own definitions: canonical URLs (not fetched; stable names) for its catalog and
# for what FHIR has no element or published code for.
DORSI = "https://dorsi.dev/fhir"
ACTIVITY_DEFINITION_URL = f"{DORSI}/ActivityDefinition"
PLAN_DEFINITION_URL = f"{DORSI}/PlanDefinition"
SKIP_REASON_SYSTEM = f"{DORSI}/CodeSystem/skip-reason"
EXTENSION = f"{DORSI}/StructureDefinition"
DOSE_EXTENSION = f"{EXTENSION}/exercise-dose"
RESISTANCE_EXTENSION = f"{EXTENSION}/resistance-band"
SETS_DONE_EXTENSION = f"{EXTENSION}/sets-done"
REPS_DONE_EXTENSION = f"{EXTENSION}/reps-done"
HOLD_SECONDS_EXTENSION = f"{EXTENSION}/hold-seconds"
EFFORT_EXTENSION = f"{EXTENSION}/effort-borg-cr10"
# FHIR's core extension for a body site where the element has none (a CarePlan activity).
BODY_SITE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/bodySite"

EXERCISE_THERAPY: dict[str, Any] = {
    "coding": [{"system": SNOMED, "code": "229065009", "display": "Exercise therapy"}]
}
PAIN_CODE = "72514-3"
PAIN_SEVERITY: dict[str, Any] = {
    "coding": [
        {
            "system": LOINC,
            "code": PAIN_CODE,
            "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
        }
    ],
    "text": "Pain (0-10)",
}
SURVEY: dict[str, Any] = {
    "coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]
}

# Laterality (FHIR R4 value set http://hl7.org/fhir/ValueSet/bodysite-laterality).
LATERALITY: dict[str, dict[str, str]] = {
    "left": {"system": SNOMED, "code": "419161000", "display": "Unilateral left"},
    "right": {"system": SNOMED, "code": "419465000", "display": "Unilateral right"},
    "both": {"system": SNOMED, "code": "51440002", "display": "Bilateral"},
}

# A plan's status as a CarePlan's, and as each of its activities'.
CARE_PLAN_STATUS = {
    "draft": "draft",
    "active": "active",
    "paused": "on-hold",
    "completed": "completed",
    "cancelled": "revoked",
}
ACTIVITY_STATUS = {
    "draft": "not-started",
    "active": "in-progress",
    "paused": "on-hold",
    "completed": "completed",
    "cancelled": "cancelled",
}
# A session's status as a Procedure's: a partial session was begun and stopped before
# the whole dose was done, which is FHIR's `stopped`.
PROCEDURE_STATUS = {"completed": "completed", "partial": "stopped", "skipped": "not-done"}

SKIP_REASONS = {
    "pain": "Pain",
    "no_time": "No time",
    "forgot": "Forgot",
    "no_equipment": "No equipment",
    "felt_unwell": "Felt unwell",
    "other": "Other reason",
}
# No published code is used for the devices (see the README): the text says what it was.
DEVICES = {"afo": "Ankle-foot orthosis (AFO)", "fes": "Functional electrical stimulation (FES)"}

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
