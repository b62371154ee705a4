"""Dorsi: a home-exercise API for people with foot drop."""
