"""The reference: a bare Starlette app that returns the exact bytes and headers Dorsi sent.

It knows one path, keeps each recorded encoding's body in memory, picks the gzip one for a
request whose Accept-Encoding names gzip, and does the same If-None-Match check, so the
ratio against it measures what Dorsi's stack costs on top of serving the bytes.
"""

import base64
import os
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_recorded = orjson.loads(Path(os.environ["BENCH_RESPONSE"]).read_bytes())
# Each encoding Dorsi answered with: its body and headers, as recorded.
VARIANTS: dict[str, tuple[bytes, dict[str, str]]] = {
    coding: (base64.b64decode(variant["body"]), variant["headers"])
    for coding, variant in _recorded["variants"].items()
}


async def answer(request: Request) -> Response:
    coding = "gzip" if "gzip" in request.headers.get("accept-encoding", "") else "identity"
    body, headers = VARIANTS.get(coding, VARIANTS["identity"])
    etag = headers.get("etag")
    if etag is not None and request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, headers=headers)


app = Starlette(routes=[Route(_recorded["path"], answer)])
