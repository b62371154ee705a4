"""Per-request plumbing: request ids, one JSON access-log line, Prometheus metrics, body limit."""

import functools
import itertools
import re
import secrets
import time

import structlog
from prometheus_client import Counter, Gauge, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import database_answer, problem_response
from app.core.logging import log_request

REQUESTS = Counter(
    "dorsi_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "dorsi_http_request_duration_seconds",
    "Time from receiving a request to sending the last byte of its response.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# The database pool, summed over the processes that share /metrics (see app.ops.router).
POOL_IN_USE = Gauge(
    "dorsi_db_pool_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "dorsi_db_pool_waiting",
    "Requests waiting for a database connection from the pool.",
    multiprocess_mode="livesum",
)

log = structlog.get_logger(__name__)

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Ids are a random per-process prefix and a counter: unique across processes, and cheap.
_ID_PREFIX = secrets.token_hex(6)
_id_counter = itertools.count(1)


class RequestContextMiddleware:
    """Gives every request an id, limits its body, and logs and counts it once it is answered."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        status = 500

        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message["headers"] = _with_defaults(message.get("headers", ()), header)
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await self._too_large(scope, receive, send_with_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception as error:
            # Whatever layer failed (a route, the cache, idempotency), the failure is logged
            # here once, with its stack trace and request id, and answered as problem+json
            # unless an inner layer already answered it: 503 for a database failure worth
            # trying again, as the routes answer it, 500 otherwise. Not raised again: the
            # server would log it a second time, without the request id.
            answer = database_answer(error)
            if answer is None:
                log.exception("request_failed", request_id=request_id, path=scope["path"])
            else:
                log.warning(answer.slug.replace("-", "_"), request_id=request_id, error=str(error))
            if not started_response:
                response = problem_response(
                    503 if answer else 500,
                    slug=answer.slug if answer else "internal",
                    detail=answer.detail if answer else "An unexpected error occurred.",
                    instance=scope["path"],
                    request_id=request_id,
                    headers=answer.headers if answer else None,
                )
                await response(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started, request_id)

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return limited_receive

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            slug="payload-too-large",
            detail=f"Request bodies are limited to {self.max_body_bytes} bytes.",
            instance=scope["path"],
            request_id=scope["state"]["request_id"],
        )
        await response(scope, receive, send)

    @staticmethod
    def _record(scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template is None:
            # A mounted app (the docs assets) leaves its mount path as the root path.
            template = scope.get("root_path") if "endpoint" in scope else None
        template = template or "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        _counter(method, template, status).inc()
        _histogram(method, template).observe(elapsed)
        client = scope.get("client")
        log_request(
            {
                "request_id": request_id,
                "method": method,
                "path": scope["path"],
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "client": client[0] if client else None,
            }
        )


@functools.cache
def _counter(method: str, route: str, status: int) -> Counter:
    # Label children are looked up once per distinct route and status, not per request.
    return REQUESTS.labels(method, route, str(status))


@functools.cache
def _histogram(method: str, route: str) -> Histogram:
    return LATENCY.labels(method, route)


# Sent on every response. A route that sets its own Cache-Control or Content-Security-Policy
# (the catalog, the docs pages) keeps it; everything else is health data: never stored.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
]
DEFAULT_HEADERS = {
    b"cache-control": b"no-store",
    b"content-security-policy": b"default-src 'none'; frame-ancestors 'none'",
}


def _with_defaults(
    headers: "list[tuple[bytes, bytes]] | tuple[()]", request_id: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    # On every response, cached ones too: kept to a loop over the few headers there are.
    result = [*headers, request_id, *SECURITY_HEADERS]
    missing = dict(DEFAULT_HEADERS)
    for name, _ in headers:
        missing.pop(name, None)
    result.extend(missing.items())
    return result


class BodyTooLarge(HTTPException):
    """A streamed body went past the limit that its Content-Length did not announce."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request bodies are limited to {limit} bytes.")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
