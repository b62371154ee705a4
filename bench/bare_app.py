"""The reference: a bare Starlette app that returns the exact bytes and headers Dorsi sent.

It knows one path, keeps the body in memory and does the same If-None-Match check, so the
ratio against it measures what Dorsi's stack costs on top of serving the bytes.
"""

import os
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_recorded = orjson.loads(Path(os.environ["BENCH_RESPONSE"]).read_bytes())
BODY: bytes = _recorded["body"].encode()
HEADERS: dict[str, str] = _recorded["headers"]


async def answer(request: Request) -> Response:
    etag = HEADERS.get("etag")
    if etag is not None and request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=HEADERS)
    return Response(BODY, headers=HEADERS, media_type="application/json")


app = Starlette(routes=[Route(_recorded["path"], answer)])
