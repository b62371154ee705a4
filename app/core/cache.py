"""An in-process shared cache for public GET responses, in front of the application.

It keeps what a CDN would: a response to a GET without credentials whose status is 200
and whose ``Cache-Control`` says ``public, max-age=N``, for at most N seconds (and never
longer than the configured ceiling). A hit, or a 304 for a matching ``If-None-Match``,
is answered without routing, validation or database work. Everything else passes through.

Entries are keyed by path, query and the content coding negotiated from the request's
``Accept-Encoding`` (``app.core.compression``), so only answers that vary on nothing else
are kept: requests with credentials or an ``Origin`` (whose answer carries CORS headers
for that origin) pass through, and a response whose ``Vary`` names any header but those
and ``Accept-Encoding`` is not kept. The compression layer sits inside the cache: each
encoding is compressed once and kept as sent, under the coding its requests negotiate, so
a client is only ever served the encoding it would get from the application itself.
"""

import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.compression import IDENTITY, negotiate, not_modified_etag

MAX_ENTRIES = 4096
MAX_BODY_BYTES = 1024 * 1024
# Requests with these headers are never answered from, nor stored in, the cache.
BYPASS = frozenset({b"authorization", b"cookie", b"origin"})
# What a kept answer may vary on: the bypassed headers, and the coding in its key.
KEYED = BYPASS | {b"accept-encoding"}
_BODY_HEADERS = frozenset({b"content-length", b"content-encoding"})


# Path, query string, and the content coding negotiated for the request.
Key = tuple[str, bytes, str]


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
        self.entries: dict[Key, Entry] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or self.ceiling <= 0:
            await self.app(scope, receive, send)
            return
        if_none_match = None
        accept_encoding: list[bytes] = []
        for name, value in scope["headers"]:
            if name in BYPASS:
                await self.app(scope, receive, send)
                return
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"accept-encoding":
                accept_encoding.append(value)
        accepted = b",".join(accept_encoding).decode("latin-1") if accept_encoding else None
        coding = negotiate(accepted)
        key = (scope["path"], scope["query_string"], coding)
        entry = self.entries.get(key)
        if entry is not None and entry.expires > time.monotonic():
            scope["route"] = entry.route
            named = not_modified_etag(if_none_match, entry.etag)
            if named is not None:
                headers = entry.not_modified_headers
                if named != entry.etag:  # the client holds the other encoding's ETag
                    headers = [
                        (b"etag", named.encode("latin-1")) if h[0] == b"etag" else h
                        for h in headers
                    ]
                await send({"type": "http.response.start", "status": 304, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
            else:
                await send(
                    # Outer layers build a new list rather than change this one.
                    {"type": "http.response.start", "status": 200, "headers": entry.headers}
                )
                await send({"type": "http.response.body", "body": entry.body})
            return
        await self.app(scope, receive, self._filling(scope, key, send))

    def _filling(self, scope: Scope, key: Key, send: Send) -> Send:
        """Pass the response on, and keep it if it is public, complete and small."""
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0

        async def capture(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start":
                # Snapshot before outer layers add their per-request headers to the message.
                start = {**message, "headers": list(message.get("headers", ()))}
            await send(message)
            if message["type"] == "http.response.start":
                return
            if start is None or message["type"] != "http.response.body":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > MAX_BODY_BYTES:  # too large to keep: a stream is not held in memory
                start = None
                chunks.clear()
                return
            chunks.append(body)
            if not message.get("more_body", False):
                self._store(scope, key, start, b"".join(chunks))

        return capture

    def _store(self, scope: Scope, key: Key, start: Message, body: bytes) -> None:
        if start["status"] != 200 or len(body) > MAX_BODY_BYTES:
            return
        headers = start["headers"]
        found = dict(headers)
        max_age = _public_max_age(found.get(b"cache-control", b""))
        etag = found.get(b"etag")
        if max_age is None or etag is None or not _varies_only_on_keyed(found):
            return
        # Kept under the coding its request negotiated: the body must be in that coding,
        # or in identity (too small to compress), which any request may be given.
        if found.get(b"content-encoding", IDENTITY.encode()).decode("latin-1") not in (
            IDENTITY,
            key[2],
        ):
            return
        if len(self.entries) >= MAX_ENTRIES:
            self._evict()
        self.entries[key] = Entry(
            expires=time.monotonic() + min(max_age, self.ceiling),
            headers=headers,
            # A 304 carries no body, so nothing that describes one.
            not_modified_headers=[h for h in headers if h[0] not in _BODY_HEADERS],
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


def _varies_only_on_keyed(headers: dict[bytes, bytes]) -> bool:
    """Whether the response varies on nothing but headers that bypass the cache, and the
    content coding its key holds."""
    vary = headers.get(b"vary", b"").decode("latin-1").lower()
    names = {name.strip().encode() for name in vary.split(",") if name.strip()}
    return names <= KEYED
