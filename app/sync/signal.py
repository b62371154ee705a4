"""Waking the change feed's waiting readers when a clinic's changes commit.

One `ChangeSignal` per process (`SIGNAL`): readers wait on their clinic's event holding no
database connection; a commit that recorded changes sets it (the session's
``after_commit``), and on PostgreSQL so does the feed's one ``LISTEN`` connection per
process, for commits made by other processes (`CHANNEL`). Only clinics with a waiting
reader have an event, so the map is as large as the set of waiting clinics.
"""

import asyncio
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

CHANNEL = "dorsi_changes"
_CHANGED = "dorsi.changed_clinics"


class ChangeSignal:
    """Per clinic, an event set (and replaced) each time changes of the clinic commit."""

    def __init__(self) -> None:
        self._events: dict[uuid.UUID, asyncio.Event] = {}
        self._waiters: dict[uuid.UUID, int] = {}

    def notify(self, clinic_id: uuid.UUID) -> None:
        found = self._events.pop(clinic_id, None)
        if found is not None:
            found.set()

    def watch(self, clinic_id: uuid.UUID) -> "Watch":
        """Taken BEFORE reading the feed: a commit after it (even before the wait begins)
        ends the wait at once."""
        return Watch(self, clinic_id)

    def _event(self, clinic_id: uuid.UUID) -> asyncio.Event:
        found = self._events.get(clinic_id)
        if found is None:
            found = self._events[clinic_id] = asyncio.Event()
        return found

    def _enter(self, clinic_id: uuid.UUID) -> None:
        self._waiters[clinic_id] = self._waiters.get(clinic_id, 0) + 1

    def _leave(self, clinic_id: uuid.UUID) -> None:
        left = self._waiters[clinic_id] - 1
        if left:
            self._waiters[clinic_id] = left
        else:
            del self._waiters[clinic_id]
            self._events.pop(clinic_id, None)

    def waiting(self) -> int:
        """Clinics with a waiting reader (for tests and metrics)."""
        return len(self._waiters)


class Watch:
    """A reader's hold on its clinic's signal, from before its read to the end of its wait."""

    def __init__(self, signal: ChangeSignal, clinic_id: uuid.UUID) -> None:
        self._signal, self._clinic_id = signal, clinic_id
        self._event: asyncio.Event | None = None

    def __enter__(self) -> "Watch":
        self._signal._enter(self._clinic_id)
        self._event = self._signal._event(self._clinic_id)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._signal._leave(self._clinic_id)

    async def wait(self, timeout: float) -> bool:
        """True if the clinic's changes committed since the watch began (or its last wait
        that returned True); False when ``timeout`` seconds passed first."""
        assert self._event is not None
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event = self._signal._event(self._clinic_id)
        return True


SIGNAL = ChangeSignal()


def changed_in(session: AsyncSession, clinic_id: uuid.UUID) -> None:
    """Mark the session's transaction as one that records changes of ``clinic_id``."""
    session.sync_session.info.setdefault(_CHANGED, set()).add(clinic_id)


def changed_clinics(session: Session) -> frozenset[uuid.UUID]:
    """The clinics whose changes a (sync) session's transaction records so far, for work
    that must join the same transaction before it commits (webhook deliveries)."""
    return frozenset(session.info.get(_CHANGED, ()))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for clinic_id in session.info.pop(_CHANGED, ()):
        SIGNAL.notify(clinic_id)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session, *_args: Any) -> None:
    session.info.pop(_CHANGED, None)
