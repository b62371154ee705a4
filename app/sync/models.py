"""The outbox: one row per create, update or delete of synced clinic data."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, String
from sqlmodel import Field, SQLModel

from app.core.columns import JSONType, UTCDateTime, utcnow


class Change(SQLModel, table=True):
    """Written in the same transaction as the change it records. Within a clinic, ``id``
    follows commit order (see app.sync.outbox), so a reader never skips one."""

    # AUTOINCREMENT on SQLite: an id is never drawn twice, even once the newest changes
    # were pruned (a plain rowid would reuse it, behind the clinic's retention horizon).
    __table_args__ = (
        Index("ix_change_clinic_id_id", "clinic_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    clinic_id: uuid.UUID = Field(foreign_key="clinic.id")
    resource_type: str = Field(sa_type=String(32))
    resource_id: str = Field(sa_type=String(64))
    operation: str = Field(sa_type=String(8))
    version: int | None = None
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ChangeHorizon(SQLModel, table=True):
    """Per clinic, the newest change id pruned: the feed keeps every later one, and a cursor
    from before it answers 410 (its reader would miss what was pruned)."""

    __tablename__ = "change_horizon"

    clinic_id: uuid.UUID = Field(foreign_key="clinic.id", primary_key=True)
    pruned_through: int = Field(sa_type=BigInteger)
