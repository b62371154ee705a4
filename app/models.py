"""Every table, imported in one place so Alembic and the app see the same metadata."""

from sqlmodel import SQLModel

from app.exercises.models import Exercise

metadata = SQLModel.metadata

__all__ = ["Exercise", "metadata"]
