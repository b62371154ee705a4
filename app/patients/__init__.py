"""Patients: pseudonymous, within one clinic."""
