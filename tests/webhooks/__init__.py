"""A local webhook receiver that answers as a test tells it to, and a clock tests move."""

import asyncio
import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import standardwebhooks
from httpx import AsyncClient

from tests.conftest import Actor


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> Any:
        return orjson.loads(self.body)

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1. Each request takes the next behaviour from
    `plan` (then `default`): a status code to answer, ``hang`` (never answer), ``slow``
    (204 after a second) or ``close`` (drop the connection without an answer)."""

    plan: deque[str | int] = field(default_factory=deque)
    default: str | int = 204
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> "Receiver":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for handler in self._handlers:
                handler.cancel()
            for handler in list(self._handlers):
                with contextlib.suppress(asyncio.CancelledError):
                    await handler
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                behaviour = self.plan.popleft() if self.plan else self.default
                async with self._arrived:
                    self.received.append(Received(headers, body))
                    self._arrived.notify_all()
                if behaviour == "hang":
                    await asyncio.sleep(3600)
                if behaviour == "slow":
                    await asyncio.sleep(1)
                    behaviour = 204
                if behaviour == "close":
                    writer.close()
                    return
                writer.write(f"HTTP/1.1 {behaviour} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._handlers.discard(handler)

    async def wait_for(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` requests have arrived in all."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)

    def counts(self) -> Counter[str]:
        return Counter(r.message_id for r in self.received)

    def verified(self, secret: str) -> list[Any]:
        """Every event received, each checked with the independent Standard Webhooks
        library (raises if any signature fails)."""
        hook = standardwebhooks.Webhook(secret)
        return [hook.verify(r.body, r.headers) for r in self.received]


class Clock:
    """The worker's clock, moved by the test rather than by time."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def new_endpoint(
    client: AsyncClient, actor: Actor, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhooks",
        json={"url": url, "events": events or ["patient.*"], "description": "Test receiver"},
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
