"""Clinics, the people and systems that act in them, and how they sign in."""
