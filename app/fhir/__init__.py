"""The FHIR R4 facade: Dorsi's data, read-only, in the language of clinic systems."""
