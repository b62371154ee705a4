"""Compressed answers: gzip per Accept-Encoding, an ETag per encoding, the public cache
keeping each encoding apart, streams compressed as they stream, and bad headers harmless."""

import asyncio
import gzip
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import StreamingResponse
from starlette.types import Message

from app.core.cache import PublicResponseCache
from app.core.config import Settings
from app.main import create_app, dispose_engines
from tests import contract
from tests.conftest import World
from tests.plans import GLOBAL_TEMPLATE_ID, new_patient

CATALOG = "/v1/exercises"
SMALL = "/healthz"


class RawBodyTransport(httpx.AsyncBaseTransport):
    """The ASGI transport, keeping each answer's body as it came over the wire (before
    httpx decodes it) in ``response.extensions["raw"]``."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        raw = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(raw),
            extensions={**response.extensions, "raw": raw},
        )


def wire_client(app: FastAPI) -> httpx.AsyncClient:
    """A client whose requests send only the Accept-Encoding a test gives them, and whose
    answers are checked against the contract (decoded) and keep their raw bytes."""
    client = httpx.AsyncClient(
        transport=RawBodyTransport(app),
        base_url="http://dorsi.test",
        event_hooks={"response": [contract.check]},
    )
    del client.headers["accept-encoding"]
    return client


def raw(response: httpx.Response) -> bytes:
    body: bytes = response.extensions["raw"]
    return body


def vary(response: httpx.Response) -> list[str]:
    return [name.strip().lower() for name in response.headers.get("vary", "").split(",")]


@pytest.fixture
async def fresh_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app of its own, so its public cache starts empty."""
    application = create_app(settings)
    yield application
    await dispose_engines(application)


@pytest.fixture
async def wire(fresh_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with wire_client(fresh_app) as client:
        yield client


async def identity_answer(
    wire: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> httpx.Response:
    response = await wire.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert "content-encoding" not in response.headers
    return response


def assert_gzip_of(compressed: httpx.Response, identity: httpx.Response) -> None:
    """The compressed answer is the identity answer, gzip-compressed, with its own ETag."""
    assert compressed.status_code == 200
    assert compressed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw(compressed)) == raw(identity)
    assert int(compressed.headers["content-length"]) == len(raw(compressed))
    assert len(raw(compressed)) * 3 <= len(raw(identity))
    assert compressed.headers["etag"] == identity.headers["etag"][:-1] + '-gzip"'
    assert compressed.headers["cache-control"] == identity.headers["cache-control"]
    assert vary(compressed) == vary(identity)


# Accept-Encoding as clients send it, and the coding Dorsi must answer with. Malformed
# elements are ignored; nothing here is ever refused.
NEGOTIATED = [
    (None, "identity"),
    ("", "identity"),
    ("gzip", "gzip"),
    ("GZip", "gzip"),
    ("x-gzip", "gzip"),
    ("gzip, deflate, br, zstd", "gzip"),
    ("br", "identity"),
    ("br;q=1.0, gzip;q=0.5", "gzip"),
    ("gzip;q=0", "identity"),
    ("gzip;q=0.000", "identity"),
    ("gzip;q=0.001", "gzip"),
    ("gzip;q=0.5, identity", "identity"),
    ("gzip;q=0.5, identity;q=0.2", "gzip"),
    ("gzip, identity;q=0", "gzip"),
    ("identity;q=0", "identity"),
    ("identity;q=0, br", "identity"),
    ("*", "gzip"),
    ("*;q=0", "identity"),
    ("*;q=0.3, identity;q=0.5", "identity"),
    ("deflate, *;q=0.1", "gzip"),
    ("gzip;level=9", "gzip"),
    ("gzip;;q=0.5", "gzip"),
    ("gzip, , ,,", "gzip"),
    ("gzip;q=abc", "identity"),
    ("gzip;q=2", "identity"),
    ("gzip;q=-1", "identity"),
    ("gzip;q=1.0001", "identity"),
    ("gzip;q=", "identity"),
    (";;;,,,=", "identity"),
    ("g zip", "identity"),
    ('"gzip"', "identity"),
    ("gzip;q=0.5;q=0", "gzip"),
    ("\xff\xfe gzip", "identity"),
    ("gzip" * 2000, "identity"),
]


@pytest.mark.parametrize("signed_in", [False, True], ids=["public", "private"])
@pytest.mark.parametrize(("accept", "coding"), NEGOTIATED)
async def test_the_answer_is_encoded_as_accept_encoding_prefers(
    wire: httpx.AsyncClient, world: World, signed_in: bool, accept: str | None, coding: str
) -> None:
    """Anonymous reads come through the public cache (asked twice: filled, then hit),
    signed-in ones from the route."""
    auth = world["clinician1"].headers if signed_in else {}
    identity = await identity_answer(wire, CATALOG, auth)
    # Bytes as sent, even those that are not ASCII.
    headers = [(name.encode(), value.encode()) for name, value in auth.items()]
    if accept is not None:
        headers.append((b"Accept-Encoding", accept.encode("latin-1")))
    for _ in range(2):
        answer = await wire.get(CATALOG, headers=headers)
        assert answer.status_code == 200, answer.text
        assert "accept-encoding" in vary(answer)
        assert "authorization" in vary(answer)
        if coding == "gzip":
            assert_gzip_of(answer, identity)
        else:
            assert "content-encoding" not in answer.headers
            assert raw(answer) == raw(identity)
            assert answer.headers["etag"] == identity.headers["etag"]


async def test_two_accept_encoding_lines_are_read_as_one_list(wire: httpx.AsyncClient) -> None:
    identity = await identity_answer(wire, CATALOG, {})
    answer = await wire.get(
        CATALOG, headers=[("Accept-Encoding", "identity;q=0.1"), ("Accept-Encoding", "gzip")]
    )
    assert_gzip_of(answer, identity)


async def test_small_answers_are_not_compressed_but_still_vary(wire: httpx.AsyncClient) -> None:
    for path, status in ((SMALL, 200), ("/v1/nothing-here", 404)):
        answer = await wire.get(path, headers={"Accept-Encoding": "gzip"})
        assert answer.status_code == status
        assert len(raw(answer)) < Settings.model_fields["compression_min_bytes"].default
        assert "content-encoding" not in answer.headers
        assert answer.json()
        assert "accept-encoding" in vary(answer)


async def test_answers_other_than_json_are_left_as_they_are(wire: httpx.AsyncClient) -> None:
    metrics = await wire.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert metrics.status_code == 200
    assert len(raw(metrics)) >= 1024
    assert "content-encoding" not in metrics.headers
    assert "accept-encoding" not in vary(metrics)


async def test_the_threshold_is_a_setting(settings: Settings) -> None:
    reference = create_app(settings)
    try:
        async with wire_client(reference) as client:
            size = len(raw(await client.get(CATALOG)))
    finally:
        await dispose_engines(reference)
    # At the threshold an answer is compressed, below it not. An answer that gzip would
    # make larger (a tiny one) is sent as it is, whatever the threshold.
    for threshold, compressed in ((0, True), (size, True), (size + 1, False)):
        application = create_app(settings.model_copy(update={"compression_min_bytes": threshold}))
        try:
            async with wire_client(application) as client:
                catalog = await client.get(CATALOG, headers={"Accept-Encoding": "gzip"})
                assert ("content-encoding" in catalog.headers) is compressed, threshold
                assert len(catalog.json()["items"]) > 1
                assert "accept-encoding" in vary(catalog)
                small = await client.get(SMALL, headers={"Accept-Encoding": "gzip"})
                assert "content-encoding" not in small.headers
                assert "accept-encoding" in vary(small)
        finally:
            await dispose_engines(application)


# ETags and conditional requests, on the cached (public) and uncached (private) paths


@pytest.mark.parametrize("signed_in", [False, True], ids=["public", "private"])
@pytest.mark.parametrize("accept", [None, "gzip"], ids=["identity-request", "gzip-request"])
@pytest.mark.parametrize("held", ["identity", "gzip", "weak-gzip", "listed-gzip", "star"])
async def test_either_encodings_etag_revalidates(
    wire: httpx.AsyncClient, world: World, signed_in: bool, accept: str | None, held: str
) -> None:
    auth = world["clinician1"].headers if signed_in else {}
    identity = await identity_answer(wire, CATALOG, auth)
    compressed = await wire.get(CATALOG, headers={**auth, "Accept-Encoding": "gzip"})
    plain_tag, gzip_tag = identity.headers["etag"], compressed.headers["etag"]
    assert plain_tag != gzip_tag
    assert not gzip_tag.startswith("W/")
    sent = {
        "identity": plain_tag,
        "gzip": gzip_tag,
        "weak-gzip": f"W/{gzip_tag}",
        "listed-gzip": f'"stale", {gzip_tag}',
        "star": "*",
    }[held]
    # The 304 names the representation the client holds: the tag it sent back. For "*",
    # one of this URL's tags, and to a client that takes no gzip the identity one.
    expected = {
        "identity": {plain_tag},
        "star": {plain_tag} if accept is None else {plain_tag, gzip_tag},
    }.get(held, {gzip_tag})
    headers = {**auth, "If-None-Match": sent}
    if accept is not None:
        headers["Accept-Encoding"] = accept
    for _ in range(2):  # for the public path: filling the cache, then from it
        answer = await wire.get(CATALOG, headers=headers)
        assert answer.status_code == 304, held
        assert raw(answer) == b""
        assert "content-encoding" not in answer.headers
        assert "content-length" not in answer.headers or answer.headers["content-length"] == "0"
        assert answer.headers["etag"] in expected
        assert answer.headers["cache-control"] == identity.headers["cache-control"]
        assert "accept-encoding" in vary(answer)
        assert "authorization" in vary(answer)


@pytest.mark.parametrize("signed_in", [False, True], ids=["public", "private"])
@pytest.mark.parametrize("accept", [None, "gzip"], ids=["identity-request", "gzip-request"])
async def test_a_stale_etag_in_either_encoding_gets_the_answer(
    wire: httpx.AsyncClient, world: World, signed_in: bool, accept: str | None
) -> None:
    auth = world["clinician1"].headers if signed_in else {}
    identity = await identity_answer(wire, CATALOG, auth)
    headers = {**auth, "If-None-Match": '"stale", "stale-gzip"'}
    if accept is not None:
        headers["Accept-Encoding"] = accept
    answer = await wire.get(CATALOG, headers=headers)
    assert answer.status_code == 200
    assert answer.json() == identity.json()
    assert answer.headers.get("content-encoding") == accept


async def test_a_write_takes_the_etag_of_a_compressed_read(
    client: httpx.AsyncClient, world: World
) -> None:
    """If-Match compares strongly, and a compressed read's ETag names the same version."""
    staff = world["clinician1"].headers
    patient = await new_patient(client, world["clinician1"])
    created = await client.post(
        f"/v1/patients/{patient['id']}/plans",
        json={"template_id": GLOBAL_TEMPLATE_ID},
        headers=staff,
    )
    assert created.status_code == 201, created.text
    path = f"/v1/plans/{created.json()['id']}"
    read = await client.get(path, headers={**staff, "Accept-Encoding": "gzip"})
    assert read.headers["content-encoding"] == "gzip"
    assert read.headers["etag"].endswith('-gzip"')
    weak = await client.patch(
        path, json={"title": "Weak"}, headers={**staff, "If-Match": f"W/{read.headers['etag']}"}
    )
    assert weak.status_code == 412, weak.text
    changed = await client.patch(
        path, json={"title": "Renamed"}, headers={**staff, "If-Match": read.headers["etag"]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"] == "Renamed"
    stale = await client.patch(
        path, json={"title": "Stale"}, headers={**staff, "If-Match": read.headers["etag"]}
    )
    assert stale.status_code == 412, stale.text


@pytest.mark.parametrize("retry", ["gzip", "identity"])
async def test_a_replayed_answer_is_encoded_for_the_retry(
    wire: httpx.AsyncClient, world: World, retry: str
) -> None:
    """Idempotency keeps the answer as the route gave it; each request gets its own
    encoding of it."""
    staff = world["clinician1"]
    patient = await new_patient(wire, staff)
    headers = {**staff.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"template_id": GLOBAL_TEMPLATE_ID}
    path = f"/v1/patients/{patient['id']}/plans"
    first_coding = "identity" if retry == "gzip" else "gzip"
    encodings = {"gzip": {"Accept-Encoding": "gzip"}, "identity": {}}
    first = await wire.post(path, json=body, headers={**headers, **encodings[first_coding]})
    again = await wire.post(path, json=body, headers={**headers, **encodings[retry]})
    assert first.status_code == again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    compressed, identity = (again, first) if retry == "gzip" else (first, again)
    assert compressed.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in identity.headers
    assert gzip.decompress(raw(compressed)) == raw(identity)
    assert compressed.headers["etag"] == identity.headers["etag"][:-1] + '-gzip"'


# The public cache


def public_cache(app: FastAPI) -> PublicResponseCache:
    layer: Any = app.middleware_stack
    while not isinstance(layer, PublicResponseCache):
        layer = layer.app
    return layer


@pytest.mark.parametrize("first", ["gzip", "identity"])
async def test_the_cache_keeps_each_encoding_and_serves_only_what_was_asked(
    wire: httpx.AsyncClient, fresh_app: FastAPI, first: str
) -> None:
    order = [first, "identity" if first == "gzip" else "gzip"]
    answers: dict[str, list[httpx.Response]] = {"gzip": [], "identity": []}
    for _ in range(3):
        for coding in order:
            headers = {"Accept-Encoding": "gzip"} if coding == "gzip" else {}
            answers[coding].append(await wire.get(CATALOG, headers=headers))
    # Without Accept-Encoding, or with one that refuses gzip, never a compressed body.
    for refusing in ({}, {"Accept-Encoding": "gzip;q=0"}, {"Accept-Encoding": "br"}):
        answer = await wire.get(CATALOG, headers=refusing)
        assert "content-encoding" not in answer.headers
        assert raw(answer) == raw(answers["identity"][0])
    for identity in answers["identity"]:
        assert "content-encoding" not in identity.headers
        assert raw(identity) == raw(answers["identity"][0])
        assert identity.headers["etag"] == answers["identity"][0].headers["etag"]
    for compressed in answers["gzip"]:
        assert_gzip_of(compressed, answers["identity"][0])
        assert raw(compressed) == raw(answers["gzip"][0])
    # Compressed once: the cache holds the bytes it sends, under the coding they are in.
    entries = public_cache(fresh_app).entries
    kept = {key[2]: entry for key, entry in entries.items() if key[:2] == (CATALOG, b"")}
    assert set(kept) == {"gzip", "identity"}
    assert kept["gzip"].body == raw(answers["gzip"][0])
    assert kept["identity"].body == raw(answers["identity"][0])


async def test_each_answer_from_the_cache_carries_its_own_request_id(
    wire: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        sent = f"gz-{uuid.uuid4().hex}"
        answer = await wire.get(CATALOG, headers={"Accept-Encoding": "gzip", "X-Request-ID": sent})
        assert answer.headers["content-encoding"] == "gzip"
        assert answer.headers.get_list("x-request-id") == [sent]


async def test_signed_in_answers_are_compressed_but_never_cached(
    wire: httpx.AsyncClient, fresh_app: FastAPI, world: World
) -> None:
    staff = {**world["clinician1"].headers, "Accept-Encoding": "gzip"}
    answer = await wire.get(CATALOG, headers=staff)
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["cache-control"] == "private, no-cache"
    assert public_cache(fresh_app).entries == {}


# Streams


def ndjson_lines(count: int) -> list[bytes]:
    return [
        b'{"line": %d, "exercise": "ankle-dorsiflexion", "note": "%s"}\n' % (n, b"x" * 200)
        for n in range(count)
    ]


@pytest.fixture
async def streaming_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, list[asyncio.Event]]]:
    """The real app plus a route that streams NDJSON lines, each only once the previous one
    reached the client: a layer that held the stream back would never finish it."""
    application = create_app(settings)
    lines = ndjson_lines(5)
    received = [asyncio.Event() for _ in lines]

    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for line, arrived in zip(lines, received, strict=True):
                yield line
                await asyncio.wait_for(arrived.wait(), timeout=5)

        return StreamingResponse(body(), media_type="application/x-ndjson")

    application.add_api_route("/probe/stream", stream, methods=["GET"])
    yield application, received
    await dispose_engines(application)


async def run_asgi(
    app: FastAPI, headers: list[tuple[bytes, bytes]], on_body: Any
) -> tuple[Message, list[bytes]]:
    """Calls the app as a server would; returns the start message and each body chunk."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/probe/stream",
        "raw_path": b"/probe/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"dorsi.test"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("dorsi.test", 80),
        "state": {},
    }
    start: Message = {}
    chunks: list[bytes] = []
    requested, finished = False, asyncio.Event()

    async def receive() -> Message:
        # The request, then nothing until the answer is complete: the client stays.
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            on_body(message)
            if not message.get("more_body", False):
                finished.set()

    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return start, chunks


@pytest.mark.parametrize("accept", [b"gzip", b"br, gzip;q=0.8"])
async def test_a_stream_is_compressed_as_it_streams(
    streaming_app: tuple[FastAPI, list[asyncio.Event]], accept: bytes
) -> None:
    application, received = streaming_app
    lines = ndjson_lines(len(received))
    decoder = zlib.decompressobj(31)
    decoded = b""

    def on_body(message: Message) -> None:
        nonlocal decoded
        decoded += decoder.decompress(message.get("body", b""))
        # Every chunk decodes, on arrival, to whole lines: nothing is held back.
        arrived = decoded.count(b"\n")
        assert decoded == b"".join(lines[:arrived])
        for event in received[:arrived]:
            event.set()

    start, chunks = await run_asgi(application, [(b"accept-encoding", accept)], on_body)
    headers = dict(start["headers"])
    assert headers[b"content-encoding"] == b"gzip"
    assert b"content-length" not in headers
    assert b"accept-encoding" in headers[b"vary"].lower()
    assert decoded == b"".join(lines)
    assert decoder.eof
    assert gzip.decompress(b"".join(chunks)) == b"".join(lines)
    assert sum(map(len, chunks)) < len(b"".join(lines)) / 3


async def test_a_stream_to_a_client_without_gzip_is_sent_as_it_is(
    streaming_app: tuple[FastAPI, list[asyncio.Event]],
) -> None:
    application, received = streaming_app

    def on_body(message: Message) -> None:
        for event in received[: len(chunks_seen) + 1]:
            event.set()
        chunks_seen.append(message.get("body", b""))

    chunks_seen: list[bytes] = []
    start, chunks = await run_asgi(application, [(b"accept-encoding", b"identity")], on_body)
    headers = dict(start["headers"])
    assert b"content-encoding" not in headers
    assert b"accept-encoding" in headers[b"vary"].lower()
    assert b"".join(chunks) == b"".join(ndjson_lines(len(received)))
