"""On PostgreSQL, one connection per process listens for the clinics whose changes
committed anywhere (every process's writers send ``pg_notify``) and wakes this process's
waiting feed readers. Started by the first reader that waits; reconnects if it is lost."""

import asyncio
import contextlib
import uuid

import structlog

from app.core.driver import notifications
from app.sync.signal import CHANNEL, SIGNAL

log = structlog.get_logger("dorsi.feed")
RECONNECT_SECONDS = 1.0


class ChangeListener:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._task: asyncio.Task[None] | None = None
        self.listening = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dorsi-change-listener")

    async def _run(self) -> None:
        while True:
            try:
                async for payload in notifications(self._database_url, CHANNEL):
                    if not payload:
                        self.listening = True
                        continue
                    try:
                        SIGNAL.notify(uuid.UUID(payload))
                    except ValueError:
                        log.warning("change_notice_unreadable", payload=payload[:100])
            except Exception as error:
                log.warning("change_listener_lost", error=str(error))
            finally:
                self.listening = False
            await asyncio.sleep(RECONNECT_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
