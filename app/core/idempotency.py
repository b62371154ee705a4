"""`Idempotency-Key` on POST: a retried request gets the first answer again, not a second write.

The first request with a key runs and its answer is kept for a day, under the caller (the
token's subject, so a refreshed token still matches), the path and the key. A retry with
the same body gets that answer back (marked `Idempotent-Replayed: true`); with another
body, 422; while the first is still running, 409. Keys are 1 to 200 characters.
"""

import hashlib
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, LargeBinary, String, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.columns import JSONType, UTCDateTime, utcnow
from app.core.errors import problem_response


class IdempotentRequest(SQLModel, table=True):
    """A POST made with an Idempotency-Key, and (once it finished) its answer."""

    __tablename__ = "idempotent_request"

    key: str = Field(primary_key=True, sa_type=String(64))
    fingerprint: str = Field(sa_type=String(64))
    status: int | None = None
    headers: list[list[str]] | None = Field(default=None, sa_column=Column(JSONType))
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


KEEP_FOR = timedelta(days=1)
# A first request that never finished (its process died) stops blocking retries after this
# (DORSI_IDEMPOTENCY_STALE_SECONDS): longer than any POST takes.
STALE_AFTER = timedelta(minutes=2)
MAX_KEY_LENGTH = 200
MAX_UNSETTLED = 10_000
_table = IdempotentRequest.__table__  # type: ignore[attr-defined]


def applies(method: str, path: str) -> bool:
    """Whether a request may carry an `Idempotency-Key`: a POST, but not a sign-in, whose
    answers are credentials, never kept, so never replayed. The contract's parameter is
    declared by this rule too."""
    return method.upper() == "POST" and not path.startswith("/v1/auth/")


class IdempotencyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        engine: AsyncEngine,
        subject_of: Callable[[str], str | None],
        stale_after: timedelta = STALE_AFTER,
    ) -> None:
        """``subject_of`` names the caller of a bearer token (None if it names no one)."""
        self.app = app
        self.engine = engine
        self.subject_of = subject_of
        self.stale_after = stale_after
        # Claims of this process's requests that it could not settle (the database went
        # away mid-request): released as soon as the database answers again, so that the
        # client's retry runs rather than waiting out `stale_after`. Bounded: past it, the
        # rest wait to go stale.
        self._unsettled: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, b"idempotency-key") if scope["type"] == "http" else None
        if key is None or not applies(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            await _problem(scope, receive, send, 400, "Idempotency-Key is 1 to 200 characters.")
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        scope_key = self._scope_key(scope, key)
        fingerprint = hashlib.sha256(scope["path"].encode() + b"\0" + body).hexdigest()
        found = await self._claim(scope_key, fingerprint)
        if found == "mismatch":
            await _problem(
                scope, receive, send, 422, "This Idempotency-Key was used with another request."
            )
            return
        if found == "running":
            await _problem(
                scope,
                receive,
                send,
                409,
                "A request with this Idempotency-Key is still being processed.",
            )
            return
        if isinstance(found, dict):
            await _replay(found, send)
            return
        await self._run_and_keep(scope, body, send, scope_key)

    def _scope_key(self, scope: Scope, key: str) -> str:
        authorization = _header(scope, b"authorization") or ""
        caller = self.subject_of(authorization.partition(" ")[2]) or (
            hashlib.sha256(authorization.encode()).hexdigest()
        )
        return hashlib.sha256(f"{caller}\0{scope['path']}\0{key}".encode()).hexdigest()

    async def _claim(self, scope_key: str, fingerprint: str) -> str | dict[str, Any] | None:
        """None: this request goes ahead. Else what the earlier one left."""
        now = utcnow()
        if self._unsettled:
            unsettled = sorted(self._unsettled)
            async with self.engine.begin() as connection:
                await connection.execute(
                    delete(_table).where(_table.c.key.in_(unsettled), _table.c.status.is_(None))
                )
            self._unsettled.difference_update(unsettled)
        async with self.engine.begin() as connection:
            await connection.execute(delete(_table).where(_table.c.created_at < now - KEEP_FOR))
            await connection.execute(
                delete(_table).where(
                    _table.c.key == scope_key,
                    _table.c.status.is_(None),
                    _table.c.created_at < now - self.stale_after,
                )
            )
            try:
                async with connection.begin_nested():
                    await connection.execute(
                        insert(_table).values(
                            key=scope_key, fingerprint=fingerprint, created_at=now
                        )
                    )
                return None
            except IntegrityError:
                found = await connection.execute(select(_table).where(_table.c.key == scope_key))
                row = found.one()
        if row.fingerprint != fingerprint:
            return "mismatch"
        if row.status is None:
            return "running"
        return {"status": row.status, "headers": row.headers, "body": row.body}

    async def _run_and_keep(self, scope: Scope, body: bytes, send: Send, scope_key: str) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []
        delivered = False

        async def replay_body() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        finished = False

        async def finish() -> None:
            nonlocal finished
            finished = True
            status = start.get("status")
            # Server errors are not kept, so a retry tries again; nor are answers marked
            # no-store (a new API client's secret, an access code), which hold secrets.
            kept = status is not None and status < 500 and not _no_store(start["headers"])
            try:
                await self._finish(scope_key, start, b"".join(chunks), kept)
            except SQLAlchemyError:
                if len(self._unsettled) < MAX_UNSETTLED:
                    self._unsettled.add(scope_key)
                raise

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(status=message["status"], headers=list(message.get("headers", [])))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Kept before its last byte goes out: a client that retries the
                    # moment it has the answer gets it again, not 409 "still running".
                    # If keeping fails (the database just went away), the answer still
                    # goes out; a retry meets 409 until the claim is stale, as after a
                    # crash.
                    with suppress(SQLAlchemyError):
                        await finish()
            await send(message)

        try:
            await self.app(scope, replay_body, keep)
        finally:
            if not finished:  # no whole answer (an error, the client left)
                await finish()

    async def _finish(self, scope_key: str, start: dict[str, Any], body: bytes, kept: bool) -> None:
        async with self.engine.begin() as connection:
            if not kept:
                await connection.execute(delete(_table).where(_table.c.key == scope_key))
                return
            headers = [
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, value in start["headers"]
                if name not in (b"x-request-id", b"content-length")
            ]
            await connection.execute(
                update(_table)
                .where(_table.c.key == scope_key)
                .values(status=start["status"], headers=headers, body=body)
            )


async def _replay(found: dict[str, Any], send: Send) -> None:
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in found["headers"]]
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": found["status"], "headers": headers})
    await send({"type": "http.response.body", "body": found["body"]})


async def _problem(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    slug = {400: "bad-request", 409: "conflict", 422: "validation"}[status]
    extra: dict[str, Any] = {}
    if status in (400, 422):  # the header is what is wrong
        extra["errors"] = [{"location": "header", "pointer": "#/Idempotency-Key", "detail": detail}]
    response = problem_response(
        status,
        slug=slug,
        detail=detail,
        instance=scope["path"],
        request_id=scope.get("state", {}).get("request_id"),
        **extra,
    )
    await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def _no_store(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"cache-control" and b"no-store" in value for name, value in headers)


async def prune_expired_keys(engine: AsyncEngine, now: datetime) -> int:
    """Delete the answers kept longer than `KEEP_FOR` (run by the worker); how many."""
    async with engine.begin() as connection:
        result: Any = await connection.execute(
            delete(_table).where(_table.c.created_at < now - KEEP_FOR)
        )
    return int(result.rowcount)
