"""An in-process shared cache for public GET responses, in front of the application.

It keeps what a CDN would: a response to a GET without credentials whose status is 200
and whose ``Cache-Control`` says ``public, max-age=N``, for at most N seconds (and never
longer than the configured ceiling). A hit, or a 304 for a matching ``If-None-Match``,
is answered without routing, validation or database work. Everything else passes through.

Entries are keyed by path and query only, so only answers that vary on nothing else are
kept: requests with credentials or an ``Origin`` (whose answer carries CORS headers for
that origin) pass through, and a response whose ``Vary`` names any header but those is
not kept.
"""

import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.http import etag_matches

MAX_ENTRIES = 4096
MAX_BODY_BYTES = 1024 * 1024
# Requests with these headers are never answered from, nor stored in, the cache.
BYPASS = frozenset({b"authorization", b"cookie", b"origin"})


@dataclass(slots=True)
class Entry:
    expires: float
    headers: list[tuple[bytes, bytes]]
    not_modified_headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: str
    route: object


class PublicResponseCache:
    def __init__(self, app: ASGIApp, *, ceiling_seconds: float) -> None:
        self.app = app
        self.ceiling = ceiling_seconds
        self.entries: dict[tuple[str, bytes], Entry] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or self.ceiling <= 0:
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for name, value in scope["headers"]:
            if name in BYPASS:
                await self.app(scope, receive, send)
                return
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        key = (scope["path"], scope["query_string"])
        entry = self.entries.get(key)
        if entry is not None and entry.expires > time.monotonic():
            scope["route"] = entry.route
            if if_none_match is not None and etag_matches(if_none_match, entry.etag):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 304,
                        "headers": entry.not_modified_headers,
                    }
                )
                await send({"type": "http.response.body", "body": b""})
            else:
                await send(
                    # Outer layers build a new list rather than change this one.
                    {"type": "http.response.start", "status": 200, "headers": entry.headers}
                )
                await send({"type": "http.response.body", "body": entry.body})
            return
        await self.app(scope, receive, self._filling(scope, key, send))

    def _filling(self, scope: Scope, key: tuple[str, bytes], send: Send) -> Send:
        """Pass the response on, and keep it if it is public, complete and small."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                # Snapshot before outer layers add their per-request headers to the message.
                start = {**message, "headers": list(message.get("headers", ()))}
            await send(message)
            if message["type"] == "http.response.start":
                return
            if start is None or message["type"] != "http.response.body":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self._store(scope, key, start, b"".join(chunks))

        return capture

    def _store(self, scope: Scope, key: tuple[str, bytes], start: Message, body: bytes) -> None:
        if start["status"] != 200 or len(body) > MAX_BODY_BYTES:
            return
        headers = start["headers"]
        found = dict(headers)
        max_age = _public_max_age(found.get(b"cache-control", b""))
        etag = found.get(b"etag")
        if max_age is None or etag is None or not _varies_only_on_bypassed(found):
            return
        if len(self.entries) >= MAX_ENTRIES:
            self._evict()
        self.entries[key] = Entry(
            expires=time.monotonic() + min(max_age, self.ceiling),
            headers=headers,
            not_modified_headers=[h for h in headers if h[0] != b"content-length"],
            body=body,
            etag=etag.decode("latin-1"),
            route=scope.get("route"),
        )

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, e in self.entries.items() if e.expires <= now]:
            del self.entries[key]
        while len(self.entries) >= MAX_ENTRIES:
            del self.entries[next(iter(self.entries))]

    def clear(self) -> None:
        self.entries.clear()


def _public_max_age(cache_control: bytes) -> float | None:
    directives = [d.strip() for d in cache_control.decode("latin-1").lower().split(",")]
    if "public" not in directives:
        return None
    for directive in directives:
        if directive.startswith("max-age="):
            try:
                return float(directive.removeprefix("max-age="))
            except ValueError:
                return None
    return None


def _varies_only_on_bypassed(headers: dict[bytes, bytes]) -> bool:
    """Whether the response varies on nothing but headers that bypass the cache."""
    vary = headers.get(b"vary", b"").decode("latin-1").lower()
    names = {name.strip().encode() for name in vary.split(",") if name.strip()}
    return names <= BYPASS
