"""`GET /v1/me/today` on PostgreSQL: requests that arrive together share one statement.

Every patient app asks for today when it opens, so this is the busiest read there is, and
each answer writes an audit event. Asking the database once per request would cost each a
round trip and a commit of its own; here the requests waiting at a moment go as one
statement (`app.me.today.BATCH_SQL`) over one of the app's `AsyncConnections`, their audit
events committed together before any of them is answered.

The route in `app.me.router` stays the one documented and answers everything this path
passes on: SQLite, a missing, invalid or revoked token, a browser's cross-origin request
(CORS lives in the app), and any failure here. A failure after the statement committed
means that request's audit event may be written twice; it is never missing.
"""

import asyncio
import uuid
from typing import Any

import psycopg
import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.security import Secrets
from app.core.db import AsyncConnections
from app.core.errors import DorsiError
from app.me import today

PATH = "/v1/me/today"
# Batches running at once, each on a connection of the app's `AsyncConnections`.
WORKERS = 2
MAX_BATCH = 100

log = structlog.get_logger(__name__)

Request = tuple[uuid.UUID, str | None, str | None]


class TodayQueue:
    """Answers requests for today in batches, one statement per batch and connection."""

    def __init__(self, connections: AsyncConnections, cache_seconds: float) -> None:
        self.connections = connections
        self.cache_seconds = cache_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[Request, asyncio.Future[bytes | None]]] = []
        self._workers: set[asyncio.Task[None]] = set()

    async def answer(
        self, session_id: uuid.UUID, ip: str | None, request_id: str | None
    ) -> bytes | None:
        """Today's JSON for the patient of a valid session, its audit event written; None
        if the session is unknown, revoked or expired. Raises if the database fails."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # what waits on a loop that is gone is forgotten
            self._loop, self._pending, self._workers = loop, [], set()
        future: asyncio.Future[bytes | None] = loop.create_future()
        self._pending.append(((session_id, ip, request_id), future))
        if len(self._workers) < WORKERS:
            worker = loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return await future

    async def _work(self) -> None:
        batch: list[tuple[Request, asyncio.Future[bytes | None]]] = []
        try:
            async with self.connections.connection() as connection:
                while self._pending:
                    batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                    answers = await self._answer(connection, [request for request, _ in batch])
                    for (_, future), answer in zip(batch, answers, strict=True):
                        if not future.done():
                            future.set_result(answer)
                    batch = []
        except Exception as error:
            # Everyone waiting goes to the route, which has connections of its own.
            log.warning("today_batch_failed", error=repr(error))
            failed, self._pending = batch + self._pending, []
            for _, future in failed:
                if not future.done():
                    future.set_exception(error)

    async def _answer(
        self, connection: psycopg.AsyncConnection[Any], requests: list[Request]
    ) -> list[bytes | None]:
        session_ids, ips, request_ids = (list(column) for column in zip(*requests, strict=True))
        parameters = {
            "session_ids": session_ids,
            "ips": ips,
            "request_ids": request_ids,
            **today.BATCH_PARAMETERS,
        }
        cursor = await connection.execute(today.BATCH_SQL, parameters)
        states = {row[0]: today.batch_state(row) for row in await cursor.fetchall() if row[1]}
        wanted: set[str] = set()
        for state in states.values():
            wanted |= state.exercise_ids()
        exercises, missing = today.cached_exercises(wanted)
        if missing:
            cursor = await connection.execute(today.EXERCISE_SQL, [list(missing)])
            today.keep_exercises(await cursor.fetchall(), self.cache_seconds, exercises)
        return [
            today.render(states[n], exercises) if n in states else None
            for n in range(1, len(requests) + 1)
        ]


class TodayEndpoint:
    """ASGI: answers a patient app's `GET /v1/me/today` from the queue, or passes it on."""

    def __init__(self, app: ASGIApp, *, queue: TodayQueue, secrets: Secrets, route: Any) -> None:
        self.app = app
        self.queue = queue
        self.secrets = secrets
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            body = await self._answer(scope)
            if body is not None:
                scope["route"] = self.route  # for the access log and metrics
                headers = [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> bytes | None:
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = credentials
            elif name == b"origin":
                return None
        try:
            session_id = today.session_id(self.secrets, token)
        except DorsiError:
            return None  # the route answers with the problem
        client = scope.get("client")
        try:
            return await self.queue.answer(
                session_id, client[0] if client else None, scope["state"].get("request_id")
            )
        except Exception:
            return None
