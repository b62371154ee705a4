"""HTTP methods (RFC 9110 section 9): HEAD wherever GET is, and what a 405 allows.

FastAPI routes answer only the methods they declare, so HEAD would be a 405 everywhere;
`HeadAsGet` answers it as the GET of the same path, with the same status and headers
and no body (the answer, its ETag and its cache are the GET's). A 405 lists in `Allow`
every method any route of the path answers, not only those of the first route found.
"""

from collections.abc import Iterable

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The order `Allow` lists them in.
_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class HeadAsGet:
    """Answers HEAD as GET without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # Changed in place, and put back, so that the layers outside (the access log, the
        # metrics) see the route that answered and the method that was asked.
        scope["method"] = "GET"
        scope["head"] = True
        try:
            await self.app(scope, receive, without_body)
        finally:
            scope["method"] = "HEAD"


def requested_method(scope: Scope) -> str:
    """The method the client sent (HEAD, where `HeadAsGet` made it a GET)."""
    return "HEAD" if scope.get("head") else str(scope["method"])


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """Every method some route answers at ``path`` (HEAD wherever GET is), in one order."""
    allowed: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            allowed |= route.methods
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed, key=lambda m: _ORDER.index(m) if m in _ORDER else len(_ORDER))


__all__ = ["HeadAsGet", "allowed_methods", "requested_method"]
