"""Compressed answers (RFC 9110 sections 8.4 and 12.5.3): Accept-Encoding negotiation, ETags
per encoding, and the layer that compresses JSON answers as they are sent.

Dorsi offers gzip. A JSON answer (``application/json``, ``application/problem+json``,
NDJSON, any ``…json`` type) of at least ``minimum_bytes`` is gzip-compressed when the
request's ``Accept-Encoding`` prefers gzip to identity; a streamed answer is compressed
chunk by chunk, each chunk flushed as the route sends it. Every JSON answer, compressed or
not, says ``Vary: Accept-Encoding``.

A compressed answer is another representation, so it has its own strong ETag: the
identity ETag with ``-gzip`` inside the quotes (``"abc"`` → ``"abc-gzip"``). Validators
that come back in ``If-None-Match`` or ``If-Match`` are given to the routes without that
suffix, so a route compares them with the one ETag it knows, and a 304 carries back the
tag the client named: either encoding's ETag revalidates.
"""

import functools
import re
import zlib
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

IDENTITY = "identity"
GZIP = "gzip"
# Offered content codings, most preferred first. Brotli and zstd would need a compiled
# dependency on Python 3.11 for a few percent less than gzip on JSON (see README).
OFFERED = (GZIP,)
# RFC 9110 section 8.4.1.3: a recipient should treat x-gzip as gzip.
ALIASES = {"x-gzip": GZIP}
DEFAULT_MINIMUM_BYTES = 1024
LEVEL = 6

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
_QVALUE = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")
_SUFFIXES = tuple((f'-{coding}"', coding) for coding in OFFERED)
_VALIDATORS = (b"if-none-match", b"if-match")


@functools.lru_cache(maxsize=256)
def negotiate(accept_encoding: str | None) -> str:
    """The content coding to answer with: the offered coding the client weighs highest
    (ties go to Dorsi's preference), or identity when it accepts none of them, weighs
    identity higher, or sends no ``Accept-Encoding`` at all. Malformed elements are
    ignored, never refused."""
    if not accept_encoding:
        return IDENTITY
    weights = _weights(accept_encoding)
    best, best_q = IDENTITY, 0.0
    for coding in OFFERED:
        q = weights.get(coding, weights.get("*", 0.0))
        if q > best_q:
            best, best_q = coding, q
    if best == IDENTITY:
        return IDENTITY
    # Identity is acceptable unless excluded, but only an explicit weight (of identity or
    # of "*") can make it preferred over a coding the client names.
    identity_q = weights.get(IDENTITY, weights.get("*"))
    if identity_q is not None and identity_q > best_q:
        return IDENTITY
    return best


def _weights(accept_encoding: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for element in accept_encoding.split(","):
        coding, *parameters = element.split(";")
        coding = coding.strip().lower()
        if not _TOKEN.match(coding):
            continue
        q: float | None = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.match(value) else None
                break
        if q is None:
            continue
        coding = ALIASES.get(coding, coding)
        weights.setdefault(coding, q)
    return weights


def accept_encoding_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Every ``Accept-Encoding`` line of a request as one list, or None without one."""
    values = [value for name, value in headers if name == b"accept-encoding"]
    if not values:
        return None
    return b",".join(values).decode("latin-1")


def variant_etag(etag: str, coding: str) -> str:
    """The ETag of ``etag``'s representation in ``coding``: ``"abc"`` → ``"abc-gzip"``."""
    if coding == IDENTITY or not etag.endswith('"'):
        return etag
    return f'{etag[:-1]}-{coding}"'


def _split(tag: str) -> tuple[str, str]:
    """An entity tag without its coding suffix, and that coding (identity without one)."""
    for suffix, coding in _SUFFIXES:
        if tag.endswith(suffix):
            return tag[: -len(suffix)] + '"', coding
    return tag, IDENTITY


def identity_validators(value: str) -> str:
    """An ``If-None-Match`` or ``If-Match`` list with every tag's coding suffix removed."""
    if value.strip() == "*":
        return value
    return ", ".join(_split(tag.strip())[0] for tag in value.split(","))


def not_modified_etag(if_none_match: str | None, etag: str) -> str | None:
    """The ETag a 304 answers with when ``If-None-Match`` names ``etag``'s representation
    in any encoding (weak comparison), that is the variant the client named; None when it
    names none of them."""
    if not if_none_match:
        return None
    if if_none_match.strip() == "*":
        return etag
    base, _ = _split(etag)
    weak = base.startswith("W/")
    opaque = base.removeprefix("W/")
    for tag in if_none_match.split(","):
        named, coding = _split(tag.strip().removeprefix("W/"))
        if named == opaque:
            return variant_etag(("W/" if weak else "") + opaque, coding)
    return None


def compresses(media_type: str) -> bool:
    """Whether answers of this media type are compressed (and say `Vary: Accept-Encoding`):
    any JSON. The contract declares their headers by this rule too."""
    return media_type.startswith("application/") and media_type.endswith("json")


def _compressible(headers: list[tuple[bytes, bytes]]) -> bool:
    media_type = ""
    for name, value in headers:
        if name == b"content-encoding":
            return False
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower().decode("latin-1")
    return compresses(media_type)


def _with_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with Accept-Encoding added to ``Vary`` (beside what it already names)."""
    result = list(headers)
    for index, (name, value) in enumerate(result):
        if name == b"vary":
            names = {n.strip().lower() for n in value.split(b",")}
            if b"accept-encoding" not in names and b"*" not in names:
                joined = value + b", Accept-Encoding" if value.strip() else b"Accept-Encoding"
                result[index] = (name, joined)
            return result
    result.append((b"vary", b"Accept-Encoding"))
    return result


def _replace(
    headers: list[tuple[bytes, bytes]], name: bytes, value: bytes | None
) -> list[tuple[bytes, bytes]]:
    """The headers without ``name``, and with ``name: value`` at the end unless None."""
    result = [header for header in headers if header[0] != name]
    if value is not None:
        result.append((name, value))
    return result


def _compressor() -> "zlib._Compress":
    # wbits 31: the gzip container, with a zero timestamp, so the same JSON always
    # compresses to the same bytes in every process (its strong ETag stays true).
    return zlib.compressobj(LEVEL, zlib.DEFLATED, 31)


class CompressionMiddleware:
    """Compresses JSON answers per the request's ``Accept-Encoding``; see the module."""

    def __init__(self, app: ASGIApp, *, minimum_bytes: int = DEFAULT_MINIMUM_BYTES) -> None:
        self.app = app
        self.minimum_bytes = minimum_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        coding = IDENTITY
        if scope["method"] != "HEAD":  # a HEAD answer describes the identity body
            coding = negotiate(accept_encoding_of(scope["headers"]))
        if_none_match = None
        headers = scope["headers"]
        if any(name in _VALIDATORS for name, _ in headers):
            rewritten = []
            for name, value in headers:
                if name in _VALIDATORS:
                    text = value.decode("latin-1")
                    if name == b"if-none-match":
                        if_none_match = text
                    value = identity_validators(text).encode("latin-1")
                rewritten.append((name, value))
            scope = {**scope, "headers": rewritten}
        compressing = _Compressing(send, coding, self.minimum_bytes, if_none_match)
        await self.app(scope, receive, compressing)


class _Compressing:
    """The ``send`` of one answer: holds its start until the first body chunk shows
    whether (and how) to compress, then passes everything on."""

    __slots__ = ("coding", "compressor", "if_none_match", "minimum", "pending", "send")

    def __init__(self, send: Send, coding: str, minimum: int, if_none_match: str | None) -> None:
        self.send = send
        self.coding = coding
        self.minimum = minimum
        self.if_none_match = if_none_match
        self.pending: Message | None = None
        self.compressor: zlib._Compress | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._start(message)
        elif kind == "http.response.body" and self.pending is not None:
            await self._first_body(message)
        elif kind == "http.response.body" and self.compressor is not None:
            await self._next_body(message)
        else:
            await self.send(message)

    async def _start(self, message: Message) -> None:
        headers = list(message.get("headers", ()))
        status = message["status"]
        if status == 304:
            etag = dict(headers).get(b"etag")
            if etag is not None:
                named = not_modified_etag(self.if_none_match, etag.decode("latin-1"))
                if named is not None:
                    headers = _replace(headers, b"etag", named.encode("latin-1"))
                headers = _with_vary(headers)
            await self.send({**message, "headers": headers})
            return
        if status in (204, 206) or status < 200 or not _compressible(headers):
            await self.send(message)
            return
        headers = _with_vary(headers)
        if self.coding == IDENTITY:
            await self.send({**message, "headers": headers})
            return
        self.pending = {**message, "headers": headers}

    async def _first_body(self, message: Message) -> None:
        start, self.pending = self.pending, None
        assert start is not None
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            # A stream: compressed as it comes, its length unknown until it ends.
            self.compressor = _compressor()
            await self.send(self._encoded(start, None))
            await self._next_body(message)
            return
        if len(body) >= self.minimum:
            compressor = _compressor()
            compressed = compressor.compress(body) + compressor.flush()
            if len(compressed) < len(body):
                await self.send(self._encoded(start, len(compressed)))
                await self.send({"type": "http.response.body", "body": compressed})
                return
        await self.send(start)
        await self.send(message)

    async def _next_body(self, message: Message) -> None:
        assert self.compressor is not None
        more = message.get("more_body", False)
        body = self.compressor.compress(message.get("body", b""))
        # Each chunk is flushed as the route sends it, so a client reads every line of a
        # stream as soon as it is written, not when the compressor's buffer fills.
        body += self.compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    def _encoded(self, start: Message, length: int | None) -> Message:
        headers = _replace(start["headers"], b"content-encoding", self.coding.encode())
        headers = _replace(
            headers, b"content-length", None if length is None else str(length).encode()
        )
        etag = dict(headers).get(b"etag")
        if etag is not None:
            tagged = variant_etag(etag.decode("latin-1"), self.coding)
            headers = _replace(headers, b"etag", tagged.encode("latin-1"))
        return {**start, "headers": headers}
